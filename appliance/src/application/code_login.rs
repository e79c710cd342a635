//! Phone-code login to a personal account of the channel's realm: the channel gives the phone,
//! a code goes to it if exactly one account holds it at the required level, and the code opens
//! the account (its id, realm and level). A phone bound to the accounts of several ID numbers
//! cannot log in by code (the Beijing rule, `phone_bound_to_several_ids`). A phone bound to no
//! account gets the same answer as a bound one, and no SMS: its code can only be wrong.

use serde_json::{json, Value};

use super::downloads::code_error;
use super::{channel_of, AppError, ApplicationService, Who};
use crate::contact::CodePurpose;
use crate::relying::Level;
use crate::storage::{unix_now, AuditEntry, CodeLoginRow};

/// How long a login whose phone has no account stays answerable (no code was sent).
const UNBOUND_TTL_SECS: i64 = 300;

/// `POST /api/v1/code-logins`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeLoginRequest {
    /// The phone the account is bound to.
    pub phone: String,
    /// The least level of the account (`L3` by default, as the Beijing platform requires).
    #[serde(default)]
    pub min_level: Option<String>,
}

/// `POST /api/v1/code-logins/{id}/complete`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeLoginCompletion {
    /// The code the phone received.
    pub code: String,
}

fn new_login_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("cl_{}", hex::encode(b))
}

impl ApplicationService {
    /// Starts a code login: finds the phone's account in the channel's realm and sends it a code.
    pub async fn start_code_login(
        &self,
        who: &Who,
        req: CodeLoginRequest,
    ) -> Result<Value, AppError> {
        let channel = channel_of(who, "log accounts in")?;
        let need = match req.min_level.as_deref() {
            None => Level::L3,
            Some(l) => Level::parse(l).ok_or_else(|| {
                AppError::FieldNotExpected(format!("min_level {l:?} is not L1, L2 or L3"))
            })?,
        };
        let phone = identifiers::mobile::Mobile::parse(req.phone.trim())
            .map_err(|_| AppError::Subject(super::SubjectError::Phone))?
            .as_str()
            .to_owned();
        let (realm, _) = crate::account::realm_of(&self.settings.realms, &channel.name);
        let keys = self.keys();
        let hashes = self.hashes(&keys, "phone", &phone);
        let accounts = self
            .rows
            .accounts_by_phone(&realm, "personal", &hashes)
            .await?;
        let mut subjects: Vec<&str> = accounts.iter().map(|a| a.subject_hash.as_str()).collect();
        subjects.sort_unstable();
        subjects.dedup();
        if subjects.len() > 1 {
            return Err(AppError::PhoneSharedByIds(realm));
        }
        let account = accounts.first();
        if let Some(a) = account {
            let level = a.level.as_deref().and_then(Level::parse);
            if level.is_none_or(|l| l < need) {
                return Err(AppError::Rejected("level_too_low".into()));
            }
        }
        let now = unix_now();
        let expires_at = match account {
            Some(a) => {
                let codes = self
                    .codes
                    .clone()
                    .ok_or(AppError::Unavailable("one-time codes"))?;
                codes
                    .send(&channel.name, &a.id, CodePurpose::CodeLogin, &phone)
                    .await
                    .map_err(code_error)?
                    .expires_at
            }
            None => now + UNBOUND_TTL_SECS,
        };
        let id = new_login_id();
        self.rows
            .put_code_login(
                &CodeLoginRow {
                    id: id.clone(),
                    channel: channel.name.clone(),
                    realm,
                    account_id: account.map(|a| a.id.clone()),
                    status: "open".into(),
                    expires_at,
                },
                now,
            )
            .await?;
        Ok(json!({
            "id": id,
            "code_sent_to": identifiers::mask::mask_phone(&phone),
            "expires_at": expires_at,
        }))
    }

    /// Completes a code login: the code opens the account (id, realm, level).
    pub async fn complete_code_login(
        &self,
        who: &Who,
        id: &str,
        req: CodeLoginCompletion,
    ) -> Result<Value, AppError> {
        let channel = channel_of(who, "log accounts in")?;
        let not_found = || AppError::NotFound(id.chars().take(40).collect());
        if !id.starts_with("cl_") || id.len() > 80 {
            return Err(not_found());
        }
        let login = self
            .rows
            .code_login(id)
            .await?
            .filter(|l| l.channel == channel.name)
            .ok_or_else(not_found)?;
        if login.status != "open" {
            return Err(AppError::AlreadyUsed("code login"));
        }
        if unix_now() > login.expires_at {
            return Err(AppError::OtpExpired);
        }
        let Some(account) = login.account_id.clone() else {
            return Err(AppError::OtpWrong { attempts_left: 0 });
        };
        let codes = self
            .codes
            .clone()
            .ok_or(AppError::Unavailable("one-time codes"))?;
        codes
            .check(&account, CodePurpose::CodeLogin, req.code.trim())
            .await
            .map_err(code_error)?;
        let level = self.rows.account_level(&account).await?;
        let audit = AuditEntry {
            actor: format!("channel:{}", channel.name),
            action: "account.code_login".into(),
            target: account.clone(),
            detail: json!({ "login": id, "realm": login.realm, "level": level }),
        };
        if !self.rows.use_code_login(id, unix_now(), &audit).await? {
            return Err(AppError::AlreadyUsed("code login"));
        }
        tracing::info!(login = %id, realm = %login.realm, "code login accepted");
        Ok(json!({
            "id": id,
            "account": account,
            "kind": "personal",
            "realm": login.realm,
            "level": level,
        }))
    }
}
