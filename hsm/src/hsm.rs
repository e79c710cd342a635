//! `Hsm`: a cloneable, logged-in handle to the CA token that generates keys and signs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState};
use cryptoki::types::AuthPin;

use crate::algorithm::{KeyKind, SignatureAlgorithm};
use crate::config::{HsmConfig, DEFAULT_POOL_SIZE};
use crate::error::HsmError;
use crate::keys;
use crate::pkcs11::context;
use crate::pool::{OpError, Pool};
use crate::signature;
use crate::sm2::{sm2_digest, sm2_point, Sm2Hashing, Sm2Mechanisms, DEFAULT_SIGNER_ID};
use crate::token::find_slot;
use crate::uri::KeyUri;

/// Length of the random CKA_ID shared by both halves of a generated key pair.
const KEY_ID_LEN: u32 = 16;
/// CKA_LABEL has no fixed limit, but keep object labels sane for URIs and logs.
const MAX_OBJECT_LABEL_BYTES: usize = 128;

/// A cloneable handle to a logged-in token: a pool of sessions, blocking work off the async runtime.
#[derive(Clone)]
pub struct Hsm {
    inner: Arc<Inner>,
}

struct Inner {
    token_label: String,
    pool: Pool,
    /// Private key handle and kind per URI; token object handles outlive sessions.
    keys: Mutex<HashMap<KeyUri, CachedKey>>,
    /// Serialises generation so "refuse if the label exists" cannot race.
    generating: Mutex<()>,
    /// The token's SM2 constants, if it offers SM2.
    sm2: Option<Sm2Mechanisms>,
    /// The signer ID `sign` uses for SM3withSM2.
    sm2_signer_id: String,
    /// SM2 public points per URI (they enter Z when the host hashes).
    sm2_points: Mutex<HashMap<KeyUri, Vec<u8>>>,
}

#[derive(Clone, Copy)]
struct CachedKey {
    private: ObjectHandle,
    kind: KeyKind,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("token_label", &self.inner.token_label)
            .finish_non_exhaustive()
    }
}

/// Run blocking PKCS#11 work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, HsmError> + Send + 'static,
) -> Result<T, HsmError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| HsmError::Worker(e.to_string()))?
}

fn is_stale_handle(e: &OpError) -> bool {
    matches!(
        e,
        OpError::Ck(CkError::Pkcs11(
            RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid,
            _
        ))
    )
}

impl Hsm {
    /// Loads the module, finds the token by label, reads the PIN and logs the session pool in.
    pub async fn open(config: &HsmConfig) -> Result<Hsm, HsmError> {
        let config = config.clone();
        blocking(move || Hsm::open_blocking(&config)).await
    }

    /// Blocking variant of `open`, for sync callers not on a runtime thread.
    pub fn open_blocking(config: &HsmConfig) -> Result<Hsm, HsmError> {
        let sm2_signer_id = config
            .sm2_signer_id
            .clone()
            .unwrap_or_else(|| DEFAULT_SIGNER_ID.to_owned());
        if sm2_signer_id.is_empty() || sm2_signer_id.len() > 8191 {
            return Err(HsmError::InvalidArgument {
                what: "SM2 signer ID",
                reason: "must be 1 to 8191 bytes".into(),
            });
        }
        if sm2_signer_id != DEFAULT_SIGNER_ID
            && config.sm2.is_some_and(|t| t.hashing == Sm2Hashing::Token)
        {
            return Err(HsmError::InvalidArgument {
                what: "SM2 signer ID",
                reason: "a token that hashes SM2 itself signs with the default signer ID only"
                    .into(),
            });
        }
        let pin = config.pin.read()?;
        let ctx = context(&config.module)?;
        let slot = find_slot(&ctx, &config.token_label)?;
        let size = if config.pool_size == 0 {
            DEFAULT_POOL_SIZE
        } else {
            config.pool_size
        };
        let pool = Pool::open(ctx, slot, AuthPin::new(pin.as_str().to_owned()), size)?;
        tracing::info!(token = %config.token_label, sessions = size, "HSM token logged in");
        Ok(Hsm {
            inner: Arc::new(Inner {
                token_label: config.token_label.clone(),
                pool,
                keys: Mutex::new(HashMap::new()),
                generating: Mutex::new(()),
                sm2: config.sm2,
                sm2_signer_id,
                sm2_points: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The GM/T 0009 signer ID `sign` uses for SM3withSM2 (configured, or the default).
    pub fn sm2_signer_id(&self) -> &str {
        &self.inner.sm2_signer_id
    }

    /// Label of the token this handle is logged in to.
    pub fn token_label(&self) -> &str {
        &self.inner.token_label
    }

    /// The URI a key labelled `object_label` has on this token.
    pub fn key_uri(&self, object_label: &str) -> KeyUri {
        KeyUri::new(self.inner.token_label.clone(), object_label)
    }

    /// Generate a key pair on the token; refuses if a key with this label exists (`KeyExists`).
    pub async fn generate_key_pair(
        &self,
        object_label: &str,
        kind: KeyKind,
    ) -> Result<KeyUri, HsmError> {
        let this = self.clone();
        let label = object_label.to_owned();
        blocking(move || this.generate_key_pair_blocking(&label, kind)).await
    }

    /// Blocking variant of `generate_key_pair`.
    pub fn generate_key_pair_blocking(
        &self,
        object_label: &str,
        kind: KeyKind,
    ) -> Result<KeyUri, HsmError> {
        self.check_label(object_label)?;
        let uri = self.key_uri(object_label);
        let _one_at_a_time = self.generation_lock();
        let _span =
            tracing::info_span!("hsm.generate", key = %object_label, kind = %kind).entered();
        let this_sm2 = self.inner.sm2;
        let (private, kind) = self.inner.pool.run(|session| {
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                if keys::find(session, class, &uri)?.is_some() {
                    return Err(HsmError::KeyExists { uri: uri.clone() }.into());
                }
            }
            let id = session.generate_random_vec(KEY_ID_LEN)?;
            let (mechanism, public, private) =
                keys::templates(kind, object_label, &id, this_sm2.as_ref())?;
            let (_, private) = session.generate_key_pair(&mechanism, &public, &private)?;
            Ok((private, kind))
        })?;
        self.cache()
            .insert(uri.clone(), CachedKey { private, kind });
        tracing::info!(key = %uri, %kind, "generated key pair on the token");
        Ok(uri)
    }

    /// Readiness probe: looks the private key up on the token afresh (no cache), on a pooled
    /// session that must still be logged in; `KeyNotFound` or unavailable when the token is gone.
    pub async fn probe_key(&self, key: &KeyUri) -> Result<(), HsmError> {
        let this = self.clone();
        let key = key.clone();
        blocking(move || {
            this.check_token(&key)?;
            this.inner
                .pool
                .run(|session| this.find_private(session, &key).map(|_| ()))
        })
        .await
    }

    /// Whether a private key with this URI exists on the token.
    pub async fn key_exists(&self, key: &KeyUri) -> Result<bool, HsmError> {
        let this = self.clone();
        let key = key.clone();
        blocking(move || match this.lookup(&key) {
            Ok(_) => Ok(true),
            Err(HsmError::KeyNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }

    /// SubjectPublicKeyInfo DER of the key's public half.
    pub async fn public_key_der(&self, key: &KeyUri) -> Result<Vec<u8>, HsmError> {
        let this = self.clone();
        let key = key.clone();
        blocking(move || this.public_key_der_blocking(&key)).await
    }

    /// Blocking variant of `public_key_der`.
    pub fn public_key_der_blocking(&self, key: &KeyUri) -> Result<Vec<u8>, HsmError> {
        self.check_token(key)?;
        self.inner.pool.run(|session| {
            let public = keys::find(session, ObjectClass::PUBLIC_KEY, key)?
                .ok_or_else(|| HsmError::KeyNotFound { uri: key.clone() })?;
            keys::spki_der(session, public, key, self.inner.sm2.as_ref())
        })
    }

    /// The kind (curve or modulus size) of the key.
    pub async fn key_kind(&self, key: &KeyUri) -> Result<KeyKind, HsmError> {
        let this = self.clone();
        let key = key.clone();
        blocking(move || this.lookup(&key).map(|cached| cached.kind)).await
    }

    /// Sign `data` (e.g. a TBSCertificate); returns the signature exactly as X.509 carries it
    /// (ECDSA: DER Ecdsa-Sig-Value, converted from PKCS#11's r||s; RSA: raw).
    pub async fn sign(
        &self,
        key: &KeyUri,
        alg: SignatureAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        if alg.is_sm2() {
            return self.sign_sm2(key, self.sm2_signer_id(), data).await;
        }
        let digest = alg.digest(data);
        self.sign_digest(key, alg, &digest).await
    }

    /// SM3withSM2 over `data` with the GM/T 0009 signer ID `signer_id`: the host computes
    /// e = SM3(Z || M) or the token does, as the token's SM2 table says (a token that hashes
    /// takes only the default signer ID).
    pub async fn sign_sm2(
        &self,
        key: &KeyUri,
        signer_id: &str,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let this = self.clone();
        let key = key.clone();
        let signer_id = signer_id.to_owned();
        let data = data.to_vec();
        blocking(move || this.sign_sm2_blocking(&key, &signer_id, &data)).await
    }

    /// Blocking variant of `sign_sm2`.
    pub fn sign_sm2_blocking(
        &self,
        key: &KeyUri,
        signer_id: &str,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let table = self.inner.sm2.ok_or_else(keys::no_sm2_table)?;
        match table.hashing {
            Sm2Hashing::Host => {
                let point = self.sm2_public_point(key)?;
                let e = sm2_digest(&point, signer_id.as_bytes(), data)?;
                self.sign_digest_blocking(key, SignatureAlgorithm::Sm2Sm3, &e)
            }
            Sm2Hashing::Token => {
                if signer_id != DEFAULT_SIGNER_ID {
                    return Err(HsmError::InvalidArgument {
                        what: "SM2 signer ID",
                        reason: "this token hashes SM2 itself and takes only the default signer ID; configure host hashing".into(),
                    });
                }
                let _span =
                    tracing::debug_span!("hsm.sign", key = %key.object, alg = "sm2-sm3").entered();
                let started = std::time::Instant::now();
                let result = keys::vendor_mechanism(table.sign_mechanism).and_then(|mechanism| {
                    self.sign_raw(key, SignatureAlgorithm::Sm2Sm3, &mechanism, data)
                });
                crate::metrics::sign_finished(started.elapsed(), &result);
                result
            }
        }
    }

    /// The uncompressed public point of an SM2 key (cached).
    fn sm2_public_point(&self, key: &KeyUri) -> Result<Vec<u8>, HsmError> {
        let cached = self
            .inner
            .sm2_points
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key)
            .cloned();
        if let Some(point) = cached {
            return Ok(point);
        }
        let point = sm2_point(&self.public_key_der_blocking(key)?)?;
        self.inner
            .sm2_points
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key.clone(), point.clone());
        Ok(point)
    }

    /// Same, over a digest computed by the caller (huge CRLs are hashed as they stream; never push MBs through PKCS#11).
    /// RSA PKCS#1 v1.5: DigestInfo-wrap + CKM_RSA_PKCS; PSS: CKM_RSA_PKCS_PSS with params; ECDSA: CKM_ECDSA.
    pub async fn sign_digest(
        &self,
        key: &KeyUri,
        alg: SignatureAlgorithm,
        digest: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let this = self.clone();
        let key = key.clone();
        let digest = digest.to_vec();
        blocking(move || this.sign_digest_blocking(&key, alg, &digest)).await
    }

    /// Blocking variant for benchmarks and sync callers not on a runtime thread.
    pub fn sign_blocking(
        &self,
        key: &KeyUri,
        alg: SignatureAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        if alg.is_sm2() {
            return self.sign_sm2_blocking(key, self.sm2_signer_id(), data);
        }
        self.sign_digest_blocking(key, alg, &alg.digest(data))
    }

    /// Blocking variant of `sign_digest`.
    pub fn sign_digest_blocking(
        &self,
        key: &KeyUri,
        alg: SignatureAlgorithm,
        digest: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let _span = tracing::debug_span!("hsm.sign", key = %key.object, alg = %alg).entered();
        let started = std::time::Instant::now();
        let result = self.sign_digest_inner(key, alg, digest);
        crate::metrics::sign_finished(started.elapsed(), &result);
        result
    }

    fn sign_digest_inner(
        &self,
        key: &KeyUri,
        alg: SignatureAlgorithm,
        digest: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let (mechanism, input) = if alg.is_sm2() {
            let table = self.inner.sm2.ok_or_else(keys::no_sm2_table)?;
            if table.hashing == Sm2Hashing::Token {
                return Err(HsmError::InvalidArgument {
                    what: "SM2 signing",
                    reason: "this token computes e = SM3(Z || M) itself: sign the data (sign_sm2), not a digest".into(),
                });
            }
            if digest.len() != 32 {
                return Err(HsmError::DigestLength {
                    alg,
                    expected: 32,
                    actual: digest.len(),
                });
            }
            (
                keys::vendor_mechanism(table.sign_mechanism)?,
                digest.to_vec(),
            )
        } else {
            signature::prepare(alg, digest)?
        };
        self.sign_raw(key, alg, &mechanism, &input)
    }

    /// C_Sign `input` with `mechanism` under the key, checking the key allows `alg`.
    fn sign_raw(
        &self,
        key: &KeyUri,
        alg: SignatureAlgorithm,
        mechanism: &cryptoki::mechanism::Mechanism<'_>,
        input: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let cached = self.lookup(key)?;
        if !cached.kind.allows(alg) {
            return Err(HsmError::UnsupportedAlgorithm {
                key_kind: cached.kind,
                alg,
            });
        }
        let mut handle = cached.private;
        let raw = self.inner.pool.run(|session| {
            match session.sign(mechanism, handle, input) {
                Ok(raw) => Ok(raw),
                Err(e) => {
                    let e = OpError::Ck(e);
                    if !is_stale_handle(&e) {
                        return Err(e);
                    }
                    // The key was deleted and maybe recreated: find it again once.
                    self.cache().remove(key);
                    handle = self.find_private(session, key)?.private;
                    Ok(session.sign(mechanism, handle, input)?)
                }
            }
        })?;
        signature::finish(alg, raw)
    }

    /// Refuses an empty or overlong object label.
    pub(crate) fn check_label(&self, object_label: &str) -> Result<(), HsmError> {
        if object_label.is_empty() || object_label.len() > MAX_OBJECT_LABEL_BYTES {
            return Err(HsmError::InvalidArgument {
                what: "key label",
                reason: format!("must be 1 to {MAX_OBJECT_LABEL_BYTES} bytes"),
            });
        }
        Ok(())
    }

    /// Serialises key generation so "refuse if the label exists" cannot race.
    pub(crate) fn generation_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .generating
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The session pool.
    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<KeyUri, CachedKey>> {
        // Insert/remove of Copy values only: a poisoned map is still consistent.
        self.inner
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_token(&self, key: &KeyUri) -> Result<(), HsmError> {
        if key.token != self.inner.token_label {
            return Err(HsmError::KeyNotFound { uri: key.clone() });
        }
        Ok(())
    }

    /// The cached private key handle and kind, looking the key up on the token on a miss.
    fn lookup(&self, key: &KeyUri) -> Result<CachedKey, HsmError> {
        self.check_token(key)?;
        if let Some(cached) = self.cache().get(key) {
            return Ok(*cached);
        }
        self.inner
            .pool
            .run(|session| self.find_private(session, key))
    }

    fn find_private(&self, session: &Session, key: &KeyUri) -> Result<CachedKey, OpError> {
        let Some(private) = keys::find(session, ObjectClass::PRIVATE_KEY, key)? else {
            // Private objects are invisible to a session that lost its login: that is a session
            // failure (reopen, log in, retry once), not a missing key.
            let state = session.get_session_info()?.session_state();
            if matches!(state, SessionState::RoPublic | SessionState::RwPublic) {
                return Err(OpError::Ck(CkError::Pkcs11(
                    RvError::UserNotLoggedIn,
                    Function::FindObjects,
                )));
            }
            return Err(HsmError::KeyNotFound { uri: key.clone() }.into());
        };
        let kind = keys::kind_of(session, private, key, self.inner.sm2.as_ref())?;
        let cached = CachedKey { private, kind };
        self.cache().insert(key.clone(), cached);
        Ok(cached)
    }
}
