//! Certificate download for an L3 account without an application: the code goes to the
//! account's bound phone (its verified phone, checked against the account's keyed phone hash),
//! the phone sends the code with its CSR, and the certificate's subject comes from the
//! attributes a plugin verified for that person (the newest stored verification naming them),
//! with the account's level policy OID. Same code rules and single use as an application's
//! download; the download row holds the account id in place of an application.

use serde_json::{json, Value};

use super::downloads::{code_error, new_download_id, DownloadCompletion};
use super::{channel_of, AppError, ApplicationService, Who};
use crate::ca::issuance::IssuanceRequest;
use crate::contact::CodePurpose;
use crate::relying::Level;
use crate::storage::{unix_now, AccountDetail, DownloadRow};
use crate::verification::seal::Field;

/// The level an account needs for a download without an application.
const NEEDED: Level = Level::L3;
/// Stored verifications looked at for the verified name.
const VERIFICATIONS_LOOKED_AT: i64 = 20;

impl ApplicationService {
    /// The channel's personal account `id` in its realm, at L3.
    async fn downloadable_account(
        &self,
        channel: &str,
        id: &str,
    ) -> Result<AccountDetail, AppError> {
        let (realm, _) = crate::account::realm_of(&self.settings.realms, channel);
        let account = if id.starts_with("acct_") && id.len() <= 80 {
            self.rows.account(id).await?
        } else {
            None
        };
        let account = account
            .filter(|a| a.realm == realm && a.kind == "personal")
            .ok_or_else(|| AppError::AccountNotFound(realm.clone()))?;
        let level = account.level.as_deref().and_then(Level::parse);
        if level.is_none_or(|l| l < NEEDED) {
            return Err(AppError::Rejected("level_too_low".into()));
        }
        Ok(account)
    }

    /// The account's bound phone in clear: the subject's verified phone, if its keyed hash is
    /// the one the account is bound to.
    async fn account_phone(&self, account: &AccountDetail) -> Result<String, AppError> {
        let keys = self.keys();
        let Some((hash, _, sealed)) = self
            .rows
            .phone(std::slice::from_ref(&account.subject_hash))
            .await?
        else {
            return Err(AppError::PhoneNotVerified);
        };
        let phone = keys
            .open(&hash, Field::Applicant, &sealed)
            .map_err(|e| AppError::Sealed(e.to_string()))?;
        let phone =
            String::from_utf8(phone.to_vec()).map_err(|e| AppError::Sealed(e.to_string()))?;
        if !self
            .hashes(&keys, "phone", &phone)
            .contains(&account.phone_hash)
        {
            return Err(AppError::PhoneNotVerified);
        }
        Ok(phone)
    }

    /// The certificate subject from the newest stored verification naming the person.
    async fn account_subject(
        &self,
        account: &AccountDetail,
    ) -> Result<std::collections::BTreeMap<String, String>, AppError> {
        let keys = self.keys();
        let found = self
            .rows
            .newest_verifications(&account.subject_hash, VERIFICATIONS_LOOKED_AT)
            .await?;
        for v in found {
            let Ok(plain) = keys.open(&v.verification_id, Field::Result, &v.sealed_attributes)
            else {
                continue;
            };
            let Ok(attrs) = serde_json::from_slice::<Vec<(String, String)>>(&plain) else {
                continue;
            };
            if let Some((_, name)) = attrs.iter().find(|(f, _)| f == "name") {
                return Ok([("name".to_owned(), name.clone())].into());
            }
        }
        Err(AppError::DownloadNotAvailable(
            "no verified name is stored for this account's person".into(),
        ))
    }

    /// Starts a download for `account` with `profile`: the code goes to the bound phone.
    pub(super) async fn start_account_download(
        &self,
        who: &Who,
        account: &str,
        profile: &str,
    ) -> Result<Value, AppError> {
        let channel = channel_of(who, "download certificates")?;
        if !self.issuer.profiles().contains_key(profile) {
            return Err(AppError::UnknownProfile(profile.to_owned()));
        }
        if !channel.profiles.iter().any(|p| p == profile) {
            return Err(AppError::ProfileNotAllowed {
                channel: channel.name.clone(),
                profile: profile.to_owned(),
            });
        }
        let account = self.downloadable_account(&channel.name, account).await?;
        // Checked now so a person without a verified name gets no code.
        self.account_subject(&account).await?;
        let phone = self.account_phone(&account).await?;
        let codes = self
            .codes
            .clone()
            .ok_or(AppError::Unavailable("one-time codes"))?;
        let sent = codes
            .send(&channel.name, &account.id, CodePurpose::Download, &phone)
            .await
            .map_err(code_error)?;
        let id = new_download_id();
        self.rows
            .put_download(
                &DownloadRow {
                    id: id.clone(),
                    channel: channel.name.clone(),
                    application_id: account.id.clone(),
                    status: "open".into(),
                    expires_at: sent.expires_at,
                    profile: Some(profile.to_owned()),
                },
                unix_now(),
            )
            .await?;
        tracing::info!(download = %id, account = %account.id, "account download code sent");
        Ok(json!({
            "id": id,
            "account": account.id,
            "profile": profile,
            "code_sent_to": identifiers::mask::mask_phone(&phone),
            "expires_at": sent.expires_at,
        }))
    }

    /// Completes an account download (`d` is open and this channel's): the CSR first, then the
    /// code, then issuance from the person's verified attributes at the account's level.
    pub(super) async fn complete_account_download(
        &self,
        who: &Who,
        d: &DownloadRow,
        req: DownloadCompletion,
    ) -> Result<Value, AppError> {
        let channel = channel_of(who, "download certificates")?;
        let profile = d.profile.clone().ok_or_else(|| {
            AppError::DownloadNotAvailable("the download names no profile".into())
        })?;
        let account = self
            .downloadable_account(&channel.name, &d.application_id)
            .await?;
        // A bad CSR costs no attempt and leaves the code usable.
        self.check_csr(&profile, &req.csr)?;
        let codes = self
            .codes
            .clone()
            .ok_or(AppError::Unavailable("one-time codes"))?;
        codes
            .check(&account.id, CodePurpose::Download, req.code.trim())
            .await
            .map_err(code_error)?;
        let subject = self.account_subject(&account).await?;
        if !self.rows.use_download(&d.id, unix_now()).await? {
            return Err(AppError::AlreadyUsed("download"));
        }
        let level = account.level.clone().unwrap_or_default();
        let extra = self
            .assurance_oids
            .get(&level)
            .copied()
            .into_iter()
            .collect();
        let issued = self
            .issuer
            .issue(IssuanceRequest {
                profile: profile.clone(),
                csr_pem: req.csr,
                subject,
                channel: Some(channel.name.clone()),
                actor: format!("channel:{}", channel.name),
                extra_policies: extra,
                application: None,
            })
            .await?;
        self.status.certificate_issued(issued.ca_id, &issued.serial);
        tracing::info!(download = %d.id, account = %account.id, serial = %issued.serial, "account download issued");
        Ok(json!({
            "id": d.id,
            "account": account.id,
            "profile": profile,
            "assurance_level": level,
            "certificate": {
                "serial": issued.serial,
                "pem": crate::ca::pem_rfc7468_encode("CERTIFICATE", &issued.der),
            },
        }))
    }
}
