//! Wrapping keys: AES-256 secret keys generated on the token (sensitive, never extractable) that
//! seal small secrets for storage outside the HSM (the appliance's personal-data key) with
//! CKM_AES_GCM. The secret is in process memory only after [`Hsm::unwrap_secret`].

use cryptoki::error::RvError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroizing;

use crate::error::HsmError;
use crate::hsm::{blocking, Hsm};
use crate::pool::OpError;
use crate::uri::KeyUri;

/// Length of the GCM IV.
pub const WRAP_IV_LEN: usize = 12;
/// Length of the GCM tag appended to the ciphertext.
const TAG_BITS: u64 = 128;
/// Largest secret this module wraps (keys, not documents).
const MAX_SECRET_LEN: usize = 1024;

/// A secret sealed by a wrapping key: the GCM IV and the ciphertext with its 16-byte tag.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedSecret {
    /// The 12-byte GCM IV (random, from the token).
    pub iv: [u8; WRAP_IV_LEN],
    /// Ciphertext followed by the tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for WrappedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedSecret")
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

fn find_secret_key(session: &Session, uri: &KeyUri) -> Result<ObjectHandle, OpError> {
    crate::keys::find(session, ObjectClass::SECRET_KEY, uri)?
        .ok_or_else(|| HsmError::KeyNotFound { uri: uri.clone() }.into())
}

fn gcm_run<T>(
    session: &Session,
    key: ObjectHandle,
    iv: &[u8; WRAP_IV_LEN],
    aad: &[u8],
    op: impl FnOnce(&Session, &Mechanism<'_>, ObjectHandle) -> Result<T, cryptoki::error::Error>,
) -> Result<T, OpError> {
    let mut iv = *iv;
    let params =
        GcmParams::new(&mut iv, aad, TAG_BITS.into()).map_err(|e| HsmError::InvalidArgument {
            what: "GCM parameters",
            reason: e.to_string(),
        })?;
    let mechanism = Mechanism::AesGcm(params);
    Ok(op(session, &mechanism, key)?)
}

impl Hsm {
    /// Generates an AES-256 wrapping key labelled `object_label` on the token (sensitive,
    /// non-extractable, encrypt/decrypt only); refuses if a secret key with this label exists.
    pub async fn generate_wrapping_key(&self, object_label: &str) -> Result<KeyUri, HsmError> {
        let this = self.clone();
        let label = object_label.to_owned();
        blocking(move || this.generate_wrapping_key_blocking(&label)).await
    }

    /// Blocking variant of `generate_wrapping_key`.
    pub fn generate_wrapping_key_blocking(&self, object_label: &str) -> Result<KeyUri, HsmError> {
        self.check_label(object_label)?;
        let uri = self.key_uri(object_label);
        let _one_at_a_time = self.generation_lock();
        self.pool().run(|session| {
            if crate::keys::find(session, ObjectClass::SECRET_KEY, &uri)?.is_some() {
                return Err(HsmError::KeyExists { uri: uri.clone() }.into());
            }
            let id = session.generate_random_vec(16)?;
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(object_label.as_bytes().to_vec()),
                Attribute::Id(id),
            ];
            session.generate_key(&Mechanism::AesKeyGen, &template)?;
            Ok(())
        })?;
        tracing::info!(key = %uri, "generated AES-256 wrapping key on the token");
        Ok(uri)
    }

    /// Whether a wrapping (secret) key with this URI exists on the token.
    pub async fn wrapping_key_exists(&self, key: &KeyUri) -> Result<bool, HsmError> {
        let this = self.clone();
        let key = key.clone();
        blocking(move || {
            if key.token != this.token_label() {
                return Ok(false);
            }
            this.pool().run(|session| {
                Ok(crate::keys::find(session, ObjectClass::SECRET_KEY, &key)?.is_some())
            })
        })
        .await
    }

    /// Seals `secret` under the wrapping key with AES-GCM; `aad` is bound to it (e.g. a key id),
    /// so a wrapped value cannot be replayed under another name.
    pub async fn wrap_secret(
        &self,
        key: &KeyUri,
        secret: &[u8],
        aad: &[u8],
    ) -> Result<WrappedSecret, HsmError> {
        let this = self.clone();
        let key = key.clone();
        let secret = Zeroizing::new(secret.to_vec());
        let aad = aad.to_vec();
        blocking(move || this.wrap_secret_blocking(&key, &secret, &aad)).await
    }

    /// Blocking variant of `wrap_secret`.
    pub fn wrap_secret_blocking(
        &self,
        key: &KeyUri,
        secret: &[u8],
        aad: &[u8],
    ) -> Result<WrappedSecret, HsmError> {
        if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
            return Err(HsmError::InvalidArgument {
                what: "secret to wrap",
                reason: format!("must be 1 to {MAX_SECRET_LEN} bytes"),
            });
        }
        if key.token != self.token_label() {
            return Err(HsmError::KeyNotFound { uri: key.clone() });
        }
        self.pool().run(|session| {
            let handle = find_secret_key(session, key)?;
            let random = session.generate_random_vec(WRAP_IV_LEN as u32)?;
            let mut iv = [0u8; WRAP_IV_LEN];
            iv.copy_from_slice(&random);
            let ciphertext = gcm_run(session, handle, &iv, aad, |s, m, k| s.encrypt(m, k, secret))?;
            Ok(WrappedSecret { iv, ciphertext })
        })
    }

    /// Opens a secret sealed by [`Hsm::wrap_secret`] with the same key and `aad`; a wrong key,
    /// wrong `aad` or tampered ciphertext is `UnwrapFailed`.
    pub async fn unwrap_secret(
        &self,
        key: &KeyUri,
        wrapped: &WrappedSecret,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let this = self.clone();
        let key = key.clone();
        let wrapped = wrapped.clone();
        let aad = aad.to_vec();
        blocking(move || this.unwrap_secret_blocking(&key, &wrapped, &aad)).await
    }

    /// Blocking variant of `unwrap_secret`.
    pub fn unwrap_secret_blocking(
        &self,
        key: &KeyUri,
        wrapped: &WrappedSecret,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        if key.token != self.token_label() {
            return Err(HsmError::KeyNotFound { uri: key.clone() });
        }
        if wrapped.ciphertext.len() <= (TAG_BITS / 8) as usize {
            return Err(HsmError::UnwrapFailed { uri: key.clone() });
        }
        self.pool().run(|session| {
            let handle = find_secret_key(session, key)?;
            match gcm_run(session, handle, &wrapped.iv, aad, |s, m, k| {
                s.decrypt(m, k, &wrapped.ciphertext)
            }) {
                Ok(plain) => Ok(Zeroizing::new(plain)),
                Err(OpError::Ck(cryptoki::error::Error::Pkcs11(
                    RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    // SoftHSM2 reports a failed GCM tag check as a general error.
                    | RvError::GeneralError,
                    _,
                ))) => Err(HsmError::UnwrapFailed { uri: key.clone() }.into()),
                Err(e) => Err(e),
            }
        })
    }
}
