//! The in-process key-management service: pairs made in memory (the private scalar wiped once
//! enveloped and sealed), escrow sealed with AES-256-GCM under the HSM key labelled
//! [`ESCROW_KEY_LABEL`] (made on first use; used for nothing else), rows in `storage::escrow`.

use der::{Decode, Encode};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sm2::elliptic_curve::sec1::ToEncodedPoint;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use zeroize::Zeroizing;

use super::envelope;
use super::{GeneratedPair, KeyManagement, KeyMgmtError, RecoveryRequest};
use crate::storage::{unix_now, AuditEntry, EscrowRow, EscrowRows, RecoveryRow, Storage};

/// The escrow-only AES key's label on the token.
pub const ESCROW_KEY_LABEL: &str = "escrow-key";

/// Key management in the appliance process, over its HSM and database.
pub struct LocalKeyManagement {
    hsm: hsm::Hsm,
    rows: EscrowRows,
}

impl LocalKeyManagement {
    /// Over the appliance's token and database.
    pub fn new(hsm: hsm::Hsm, storage: &Storage) -> Self {
        Self {
            hsm,
            rows: storage.escrow(),
        }
    }

    /// The escrow key, made on the token if it is not there yet.
    async fn escrow_key(&self) -> Result<hsm::KeyUri, KeyMgmtError> {
        let uri = self.hsm.key_uri(ESCROW_KEY_LABEL);
        if !self.hsm.wrapping_key_exists(&uri).await? {
            match self.hsm.generate_wrapping_key(ESCROW_KEY_LABEL).await {
                Ok(_) | Err(hsm::HsmError::KeyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(uri)
    }

    async fn generate_pair(
        &self,
        signing_serial: &str,
        signing_key: &SubjectPublicKeyInfoOwned,
        actor: &str,
    ) -> Result<GeneratedPair, KeyMgmtError> {
        let recipient = sm2_point(signing_key)?;
        if let Some(row) = self.rows.for_signing(signing_serial).await? {
            if row.encryption_serial.is_some() {
                return Err(KeyMgmtError::AlreadyIssued(signing_serial.to_owned()));
            }
        }
        let key = self.escrow_key().await?;
        let secret = sm2::SecretKey::random(&mut rand::rngs::OsRng);
        let scalar: Zeroizing<[u8; 32]> = Zeroizing::new(secret.to_bytes().into());
        let point = secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let envelope = envelope::seal(&scalar, &point, &recipient)?;
        let id = random_id("esc");
        let sealed = self
            .hsm
            .wrap_secret(&key, scalar.as_ref(), id.as_bytes())
            .await?;
        drop(scalar);
        drop(secret);
        let public_key = sm2_spki(&point)?;
        let row = EscrowRow {
            id: id.clone(),
            signing_serial: signing_serial.to_owned(),
            encryption_serial: None,
            public_key: public_key
                .to_der()
                .map_err(|e| KeyMgmtError::NotSm2(e.to_string()))?,
            wrapping_key: key.to_string(),
            iv: sealed.iv.to_vec(),
            sealed: sealed.ciphertext,
            created_at: unix_now(),
        };
        let audit = AuditEntry {
            actor: actor.to_owned(),
            action: "escrow.generate".into(),
            target: id.clone(),
            detail: serde_json::json!({ "signing_serial": signing_serial, "escrow_key": key.to_string() }),
        };
        if !self.rows.insert(&row, &audit).await? {
            return Err(KeyMgmtError::AlreadyIssued(signing_serial.to_owned()));
        }
        Ok(GeneratedPair {
            escrow_id: id,
            public_key,
            envelope,
        })
    }

    async fn request(&self, request: RecoveryRequest) -> Result<String, KeyMgmtError> {
        sm2_point(&request.deliver_to)?;
        let escrow =
            self.rows.get(&request.escrow_id).await?.ok_or_else(|| {
                KeyMgmtError::NotFound(format!("escrowed key {}", request.escrow_id))
            })?;
        let id = random_id("rec");
        let row = RecoveryRow {
            id: id.clone(),
            escrow_id: escrow.id.clone(),
            requested_by: request.officer.clone(),
            reason: request.reason,
            deliver_to: request
                .deliver_to
                .to_der()
                .map_err(|e| KeyMgmtError::NotSm2(e.to_string()))?,
            requested_at: unix_now(),
            approved_by: None,
        };
        let audit = AuditEntry {
            actor: request.officer,
            action: "escrow.recovery_request".into(),
            target: id.clone(),
            detail: serde_json::json!({
                "escrow_id": escrow.id,
                "signing_serial": escrow.signing_serial,
                "encryption_serial": escrow.encryption_serial,
            }),
        };
        self.rows.request(&row, &audit).await?;
        Ok(id)
    }

    async fn approve(&self, recovery_id: &str, officer: &str) -> Result<Vec<u8>, KeyMgmtError> {
        let recovery = self
            .rows
            .recovery(recovery_id)
            .await?
            .ok_or_else(|| KeyMgmtError::NotFound(format!("recovery {recovery_id}")))?;
        if recovery.approved_by.is_some() {
            return Err(KeyMgmtError::AlreadyApproved(recovery_id.to_owned()));
        }
        if recovery.requested_by == officer {
            return Err(KeyMgmtError::SameOfficer(officer.to_owned()));
        }
        let escrow = self.rows.get(&recovery.escrow_id).await?.ok_or_else(|| {
            KeyMgmtError::NotFound(format!("escrowed key {}", recovery.escrow_id))
        })?;
        let key: hsm::KeyUri = escrow
            .wrapping_key
            .parse()
            .map_err(|_| KeyMgmtError::NotFound(format!("escrow key {}", escrow.wrapping_key)))?;
        let iv: [u8; hsm::WRAP_IV_LEN] = escrow
            .iv
            .as_slice()
            .try_into()
            .map_err(|_| KeyMgmtError::NotFound(format!("the sealed key of {}", escrow.id)))?;
        let sealed = hsm::WrappedSecret {
            iv,
            ciphertext: escrow.sealed.clone(),
        };
        let this = self.hsm.clone();
        let aad = escrow.id.clone();
        let scalar = tokio::task::spawn_blocking(move || {
            this.unwrap_secret_blocking(&key, &sealed, aad.as_bytes())
        })
        .await
        .map_err(|e| KeyMgmtError::NotFound(format!("unsealing task: {e}")))??;
        let scalar: Zeroizing<[u8; 32]> = Zeroizing::new(
            scalar
                .as_slice()
                .try_into()
                .map_err(|_| KeyMgmtError::NotFound(format!("the sealed key of {}", escrow.id)))?,
        );
        let public = SubjectPublicKeyInfoOwned::from_der(&escrow.public_key)
            .map_err(|e| KeyMgmtError::NotSm2(e.to_string()))?;
        let deliver_to = SubjectPublicKeyInfoOwned::from_der(&recovery.deliver_to)
            .map_err(|e| KeyMgmtError::NotSm2(e.to_string()))?;
        let envelope = envelope::seal(&scalar, &sm2_point(&public)?, &sm2_point(&deliver_to)?)?;
        let audit = AuditEntry {
            actor: officer.to_owned(),
            action: "escrow.recovery_approve".into(),
            target: recovery_id.to_owned(),
            detail: serde_json::json!({
                "escrow_id": escrow.id,
                "requested_by": recovery.requested_by,
                "encryption_serial": escrow.encryption_serial,
            }),
        };
        // The approval commits only if still open and by another officer (races included).
        if !self
            .rows
            .approve(recovery_id, officer, unix_now(), &audit)
            .await?
        {
            return Err(KeyMgmtError::AlreadyApproved(recovery_id.to_owned()));
        }
        Ok(envelope)
    }
}

/// `prefix_` and 16 random bytes in hex.
fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    format!("{prefix}_{}", hex::encode(b))
}

/// The uncompressed point of an SM2 SubjectPublicKeyInfo (refusing other keys).
fn sm2_point(spki: &SubjectPublicKeyInfoOwned) -> Result<Vec<u8>, KeyMgmtError> {
    match crate::ca::tbs::key_kind_of(spki) {
        Ok(hsm::KeyKind::Sm2) => {}
        Ok(other) => return Err(KeyMgmtError::NotSm2(format!("a {other} key"))),
        Err(e) => return Err(KeyMgmtError::NotSm2(e.to_string())),
    }
    crate::ca::sm2::point(spki).map_err(|e| KeyMgmtError::NotSm2(e.to_string()))
}

/// id-ecPublicKey on sm2p256v1 with the point `point`.
fn sm2_spki(point: &[u8]) -> Result<SubjectPublicKeyInfoOwned, KeyMgmtError> {
    let bad = |e: der::Error| KeyMgmtError::NotSm2(e.to_string());
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_EC_PUBLIC_KEY,
            parameters: Some(der::Any::encode_from(&crate::ca::sm2::SM2_CURVE).map_err(bad)?),
        },
        subject_public_key: der::asn1::BitString::from_bytes(point).map_err(bad)?,
    })
}

impl KeyManagement for LocalKeyManagement {
    fn generate<'a>(
        &'a self,
        signing_serial: &'a str,
        signing_key: &'a SubjectPublicKeyInfoOwned,
        actor: &'a str,
    ) -> BoxFuture<'a, Result<GeneratedPair, KeyMgmtError>> {
        self.generate_pair(signing_serial, signing_key, actor)
            .boxed()
    }

    fn certified<'a>(
        &'a self,
        escrow_id: &'a str,
        serial: &'a str,
    ) -> BoxFuture<'a, Result<(), KeyMgmtError>> {
        async move { Ok(self.rows.set_certificate(escrow_id, serial).await?) }.boxed()
    }

    fn request_recovery(
        &self,
        request: RecoveryRequest,
    ) -> BoxFuture<'_, Result<String, KeyMgmtError>> {
        self.request(request).boxed()
    }

    fn approve_recovery<'a>(
        &'a self,
        recovery_id: &'a str,
        officer: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, KeyMgmtError>> {
        self.approve(recovery_id, officer).boxed()
    }
}
