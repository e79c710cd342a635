//! The module's state: slots, tokens, sessions, login, objects, and the operations on them.
//!
//! Everything here is safe Rust returning `CK_RV` errors; `ffi` holds it behind one mutex and
//! only copies arguments in and results out. Signing takes the key out of the session under the
//! lock and computes outside it, so sessions on several threads sign in parallel.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use cryptoki_sys::*;
use rand_core::{OsRng, RngCore};

use crate::keys::{verify, GcmParams, KeyAlg, PrivateKey, SignScheme};
use crate::object::{AttrValue, KeyPairTemplate, Object, SecretKeyTemplate};
use crate::store::{self, Key, StoreError, TokenFile};
use crate::vendor::{CKM_SM2, CKM_SM2_KEY_PAIR_GEN, CKM_SM3_SM2, DEFAULT_SIGNER_ID};

/// PINs are 4..=255 bytes, as SoftHSM2 allows.
pub(crate) const MIN_PIN: usize = 4;
/// Longest PIN accepted.
pub(crate) const MAX_PIN: usize = 255;
/// Largest message buffered by C_SignUpdate / C_VerifyUpdate (the CA hashes large CRLs itself).
const MAX_BUFFERED: usize = 16 * 1024 * 1024;
/// Length of every signature this token makes: r || s on a 256-bit curve.
pub(crate) const SIGNATURE_LEN: usize = 64;

/// Every mechanism, with the key sizes and flags C_GetMechanismInfo reports.
pub(crate) const MECHANISMS: [(CK_MECHANISM_TYPE, CK_FLAGS); 8] = [
    (
        CKM_EC_KEY_PAIR_GEN,
        CKF_GENERATE_KEY_PAIR | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS,
    ),
    (
        CKM_ECDSA,
        CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS,
    ),
    (
        CKM_ECDSA_SHA256,
        CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS,
    ),
    (CKM_SM2_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR),
    (CKM_SM2, CKF_SIGN | CKF_VERIFY),
    (CKM_SM3_SM2, CKF_SIGN | CKF_VERIFY),
    (CKM_AES_KEY_GEN, CKF_GENERATE),
    (CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT),
];

fn store_error(e: StoreError) -> CK_RV {
    match e {
        StoreError::NoStateDir | StoreError::Io | StoreError::Corrupt => CKR_DEVICE_ERROR,
    }
}

/// A key object and where it is kept.
struct Stored {
    /// File stem under `objects/`; empty for session objects.
    name: String,
    /// The session that owns a session object (`CKA_TOKEN` false).
    owner: Option<CK_SESSION_HANDLE>,
    object: Object,
}

struct Token {
    dir: PathBuf,
    file: TokenFile,
    objects: HashMap<CK_OBJECT_HANDLE, Stored>,
    login: Option<CK_USER_TYPE>,
    master: Option<Key>,
    unsealed: HashMap<CK_OBJECT_HANDLE, Arc<PrivateKey>>,
}

/// A token-or-free slot; the last slot is always free (uninitialised token present).
struct Slot {
    token: Option<Token>,
}

/// What a C_SignInit / C_VerifyInit started.
struct Operation {
    scheme: SignScheme,
    key: OpKey,
    data: Vec<u8>,
}

enum OpKey {
    Sign(Arc<PrivateKey>),
    Verify { curve: KeyAlg, point: Vec<u8> },
}

struct Session {
    slot: usize,
    rw: bool,
    found: Option<Vec<CK_OBJECT_HANDLE>>,
    sign: Option<Operation>,
    verify: Option<Operation>,
    crypt: Option<CryptOperation>,
}

/// What a C_EncryptInit / C_DecryptInit started (AES-256-GCM, single part).
struct CryptOperation {
    encrypt: bool,
    key: Arc<PrivateKey>,
    params: GcmParams,
}

/// What C_GetTokenInfo reports.
pub(crate) struct TokenInfo {
    pub label: String,
    pub serial: String,
    pub flags: CK_FLAGS,
    pub sessions: usize,
    pub rw_sessions: usize,
}

/// What C_GetSessionInfo reports.
pub(crate) struct SessionInfo {
    pub slot: CK_SLOT_ID,
    pub state: CK_STATE,
    pub flags: CK_FLAGS,
}

/// A signing (or verifying) job taken out of its session, to run outside the module lock.
pub(crate) struct Job {
    scheme: SignScheme,
    key: OpKey,
    data: Vec<u8>,
}

impl Job {
    /// Sign; the operation has ended either way.
    pub(crate) fn sign(self) -> Result<Vec<u8>, CK_RV> {
        let OpKey::Sign(key) = &self.key else {
            return Err(CKR_OPERATION_NOT_INITIALIZED);
        };
        key.sign(&self.scheme, &self.data)
            .map_err(|_| CKR_DATA_LEN_RANGE)
    }

    /// Verify `signature`.
    pub(crate) fn verify(self, signature: &[u8]) -> Result<(), CK_RV> {
        let OpKey::Verify { curve, point } = &self.key else {
            return Err(CKR_OPERATION_NOT_INITIALIZED);
        };
        if signature.len() != SIGNATURE_LEN {
            return Err(CKR_SIGNATURE_LEN_RANGE);
        }
        verify(*curve, point, &self.scheme, &self.data, signature)
            .map_err(|_| CKR_SIGNATURE_INVALID)
    }
}

/// The whole module: created by C_Initialize, dropped by C_Finalize.
pub(crate) struct Module {
    dir: PathBuf,
    slots: Vec<Slot>,
    sessions: HashMap<CK_SESSION_HANDLE, Session>,
    next_session: CK_SESSION_HANDLE,
    next_object: CK_OBJECT_HANDLE,
}

fn check_pin(pin: &[u8]) -> Result<(), CK_RV> {
    if (MIN_PIN..=MAX_PIN).contains(&pin.len()) {
        Ok(())
    } else {
        Err(CKR_PIN_LEN_RANGE)
    }
}

impl Module {
    /// Load every token under the state directory.
    pub(crate) fn load() -> Result<Module, CK_RV> {
        let dir = store::state_dir().map_err(store_error)?;
        let mut module = Module {
            dir: dir.clone(),
            slots: Vec::new(),
            sessions: HashMap::new(),
            next_session: 1,
            next_object: 1,
        };
        for (path, file) in store::list_tokens(&dir).map_err(store_error)? {
            module.slots.push(Slot {
                token: Some(Token {
                    dir: path,
                    file,
                    objects: HashMap::new(),
                    login: None,
                    master: None,
                    unsealed: HashMap::new(),
                }),
            });
        }
        module.slots.push(Slot { token: None });
        Ok(module)
    }

    /// Every slot id (all have a token present; the last one uninitialised).
    pub(crate) fn slot_ids(&self) -> Vec<CK_SLOT_ID> {
        (0..self.slots.len() as CK_SLOT_ID).collect()
    }

    fn slot(&self, id: CK_SLOT_ID) -> Result<&Slot, CK_RV> {
        self.slots.get(id as usize).ok_or(CKR_SLOT_ID_INVALID)
    }

    /// C_GetTokenInfo's fields.
    pub(crate) fn token_info(&self, id: CK_SLOT_ID) -> Result<TokenInfo, CK_RV> {
        let slot = self.slot(id)?;
        let sessions: Vec<&Session> = self
            .sessions
            .values()
            .filter(|s| s.slot == id as usize)
            .collect();
        let mut flags = CKF_RNG | CKF_LOGIN_REQUIRED;
        let (label, serial) = match &slot.token {
            Some(token) => {
                flags |= CKF_TOKEN_INITIALIZED;
                if token.file.user.is_some() {
                    flags |= CKF_USER_PIN_INITIALIZED;
                }
                (token.file.label.clone(), token.file.serial.clone())
            }
            None => (String::new(), String::new()),
        };
        Ok(TokenInfo {
            label,
            serial,
            flags,
            sessions: sessions.len(),
            rw_sessions: sessions.iter().filter(|s| s.rw).count(),
        })
    }

    /// C_InitToken: a new token on the free slot, or a wiped one after the SO PIN is checked.
    pub(crate) fn init_token(
        &mut self,
        id: CK_SLOT_ID,
        so_pin: &[u8],
        label: &str,
    ) -> Result<(), CK_RV> {
        check_pin(so_pin)?;
        self.slot(id)?;
        if self.sessions.values().any(|s| s.slot == id as usize) {
            return Err(CKR_SESSION_EXISTS);
        }
        let index = id as usize;
        match &mut self.slots[index].token {
            Some(token) => {
                let opened =
                    store::open_master(&token.file.so, so_pin, token.file.kdf, &token.file.serial)
                        .map_err(store_error)?;
                if opened.is_none() {
                    return Err(CKR_PIN_INCORRECT);
                }
                for stored in token.objects.values() {
                    if !stored.name.is_empty() {
                        let _ = std::fs::remove_file(object_path(&token.dir, &stored.name));
                    }
                }
                // Objects not loaded yet are wiped too.
                if let Ok(entries) = std::fs::read_dir(token.dir.join("objects")) {
                    for entry in entries.flatten() {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
                token.objects.clear();
                token.unsealed.clear();
                token.file.label = label.to_owned();
                token.file.user = None;
                store::save_token(&token.dir, &token.file).map_err(store_error)?;
            }
            None => {
                let (dir, file, _master) =
                    store::create_token(&self.dir, label, so_pin).map_err(store_error)?;
                self.slots[index].token = Some(Token {
                    dir,
                    file,
                    objects: HashMap::new(),
                    login: None,
                    master: None,
                    unsealed: HashMap::new(),
                });
                self.slots.push(Slot { token: None });
            }
        }
        Ok(())
    }

    /// C_OpenSession (serial sessions only).
    pub(crate) fn open_session(
        &mut self,
        id: CK_SLOT_ID,
        flags: CK_FLAGS,
    ) -> Result<CK_SESSION_HANDLE, CK_RV> {
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
        }
        let rw = flags & CKF_RW_SESSION != 0;
        let index = id as usize;
        let token = self
            .slot(id)?
            .token
            .as_ref()
            .ok_or(CKR_TOKEN_NOT_RECOGNIZED)?;
        if !rw && token.login == Some(CKU_SO) {
            return Err(CKR_SESSION_READ_WRITE_SO_EXISTS);
        }
        self.refresh(index)?;
        let handle = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            handle,
            Session {
                slot: index,
                rw,
                found: None,
                sign: None,
                verify: None,
                crypt: None,
            },
        );
        Ok(handle)
    }

    /// C_CloseSession: drops its session objects; the last session of a token logs it out.
    pub(crate) fn close_session(&mut self, handle: CK_SESSION_HANDLE) -> Result<(), CK_RV> {
        let session = self
            .sessions
            .remove(&handle)
            .ok_or(CKR_SESSION_HANDLE_INVALID)?;
        let last = !self.sessions.values().any(|s| s.slot == session.slot);
        if let Some(token) = self.slots[session.slot].token.as_mut() {
            token
                .objects
                .retain(|_, stored| stored.owner != Some(handle));
            if last {
                token.logout();
            }
        }
        Ok(())
    }

    /// C_CloseAllSessions.
    pub(crate) fn close_all(&mut self, id: CK_SLOT_ID) -> Result<(), CK_RV> {
        self.slot(id)?;
        let handles: Vec<CK_SESSION_HANDLE> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.slot == id as usize)
            .map(|(h, _)| *h)
            .collect();
        for handle in handles {
            self.close_session(handle)?;
        }
        Ok(())
    }

    fn session(&self, handle: CK_SESSION_HANDLE) -> Result<&Session, CK_RV> {
        self.sessions.get(&handle).ok_or(CKR_SESSION_HANDLE_INVALID)
    }

    fn session_token(&self, handle: CK_SESSION_HANDLE) -> Result<(&Session, &Token), CK_RV> {
        let session = self.session(handle)?;
        let token = self.slots[session.slot]
            .token
            .as_ref()
            .ok_or(CKR_TOKEN_NOT_RECOGNIZED)?;
        Ok((session, token))
    }

    fn token_mut(&mut self, handle: CK_SESSION_HANDLE) -> Result<&mut Token, CK_RV> {
        let slot = self.session(handle)?.slot;
        self.slots[slot]
            .token
            .as_mut()
            .ok_or(CKR_TOKEN_NOT_RECOGNIZED)
    }

    /// C_GetSessionInfo.
    pub(crate) fn session_info(&self, handle: CK_SESSION_HANDLE) -> Result<SessionInfo, CK_RV> {
        let (session, token) = self.session_token(handle)?;
        let state = match (token.login, session.rw) {
            (Some(CKU_SO), _) => CKS_RW_SO_FUNCTIONS,
            (Some(_), true) => CKS_RW_USER_FUNCTIONS,
            (Some(_), false) => CKS_RO_USER_FUNCTIONS,
            (None, true) => CKS_RW_PUBLIC_SESSION,
            (None, false) => CKS_RO_PUBLIC_SESSION,
        };
        let mut flags = CKF_SERIAL_SESSION;
        if session.rw {
            flags |= CKF_RW_SESSION;
        }
        Ok(SessionInfo {
            slot: session.slot as CK_SLOT_ID,
            state,
            flags,
        })
    }

    /// C_Login as SO or user: the PIN must open the sealed master key.
    pub(crate) fn login(
        &mut self,
        handle: CK_SESSION_HANDLE,
        user: CK_USER_TYPE,
        pin: &[u8],
    ) -> Result<(), CK_RV> {
        let slot = self.session(handle)?.slot;
        if user == CKU_SO && self.sessions.values().any(|s| s.slot == slot && !s.rw) {
            return Err(CKR_SESSION_READ_ONLY_EXISTS);
        }
        let token = self.token_mut(handle)?;
        match token.login {
            Some(current) if current == user => return Err(CKR_USER_ALREADY_LOGGED_IN),
            Some(_) => return Err(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
            None => {}
        }
        let seal = match user {
            CKU_SO => token.file.so.clone(),
            CKU_USER => token
                .file
                .user
                .clone()
                .ok_or(CKR_USER_PIN_NOT_INITIALIZED)?,
            _ => return Err(CKR_USER_TYPE_INVALID),
        };
        check_pin(pin).map_err(|_| CKR_PIN_INCORRECT)?;
        let master = store::open_master(&seal, pin, token.file.kdf, &token.file.serial)
            .map_err(store_error)?
            .ok_or(CKR_PIN_INCORRECT)?;
        token.login = Some(user);
        token.master = Some(master);
        Ok(())
    }

    /// C_Logout (for every session of the token).
    pub(crate) fn logout(&mut self, handle: CK_SESSION_HANDLE) -> Result<(), CK_RV> {
        let token = self.token_mut(handle)?;
        if token.login.is_none() {
            return Err(CKR_USER_NOT_LOGGED_IN);
        }
        token.logout();
        Ok(())
    }

    /// C_InitPIN: the SO sets the user PIN.
    pub(crate) fn init_pin(&mut self, handle: CK_SESSION_HANDLE, pin: &[u8]) -> Result<(), CK_RV> {
        check_pin(pin)?;
        if !self.session(handle)?.rw {
            return Err(CKR_SESSION_READ_ONLY);
        }
        let token = self.token_mut(handle)?;
        if token.login != Some(CKU_SO) {
            return Err(CKR_USER_NOT_LOGGED_IN);
        }
        let master = token.master.as_ref().ok_or(CKR_USER_NOT_LOGGED_IN)?;
        token.file.user = Some(
            store::seal_master(master, pin, token.file.kdf, &token.file.serial)
                .map_err(store_error)?,
        );
        store::save_token(&token.dir, &token.file).map_err(store_error)
    }

    /// C_SetPIN: the logged-in user (or SO) changes their own PIN; a public session the user's.
    pub(crate) fn set_pin(
        &mut self,
        handle: CK_SESSION_HANDLE,
        old: &[u8],
        new: &[u8],
    ) -> Result<(), CK_RV> {
        check_pin(new)?;
        if !self.session(handle)?.rw {
            return Err(CKR_SESSION_READ_ONLY);
        }
        let token = self.token_mut(handle)?;
        let so = token.login == Some(CKU_SO);
        let seal = if so {
            token.file.so.clone()
        } else {
            token
                .file
                .user
                .clone()
                .ok_or(CKR_USER_PIN_NOT_INITIALIZED)?
        };
        let master = store::open_master(&seal, old, token.file.kdf, &token.file.serial)
            .map_err(store_error)?
            .ok_or(CKR_PIN_INCORRECT)?;
        let resealed = store::seal_master(&master, new, token.file.kdf, &token.file.serial)
            .map_err(store_error)?;
        if so {
            token.file.so = resealed;
        } else {
            token.file.user = Some(resealed);
        }
        store::save_token(&token.dir, &token.file).map_err(store_error)
    }

    /// Pick up objects other processes wrote or removed since we last looked.
    fn refresh(&mut self, slot: usize) -> Result<(), CK_RV> {
        let Some(token) = self.slots[slot].token.as_mut() else {
            return Ok(());
        };
        let mut on_disk = HashMap::new();
        let entries = std::fs::read_dir(token.dir.join("objects")).map_err(|_| CKR_DEVICE_ERROR)?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                on_disk.insert(stem.to_owned(), path.clone());
            }
        }
        token
            .objects
            .retain(|_, stored| stored.name.is_empty() || on_disk.contains_key(&stored.name));
        let known: Vec<String> = token.objects.values().map(|s| s.name.clone()).collect();
        let mut names: Vec<&String> = on_disk.keys().filter(|n| !known.contains(n)).collect();
        names.sort();
        for name in names {
            let bytes = std::fs::read(&on_disk[name]).map_err(|_| CKR_DEVICE_ERROR)?;
            let object: Object = serde_json::from_slice(&bytes).map_err(|_| CKR_DEVICE_ERROR)?;
            let handle = self.next_object;
            self.next_object += 1;
            token.objects.insert(
                handle,
                Stored {
                    name: name.clone(),
                    owner: None,
                    object,
                },
            );
        }
        let live: Vec<CK_OBJECT_HANDLE> = token.objects.keys().copied().collect();
        token.unsealed.retain(|h, _| live.contains(h));
        Ok(())
    }

    /// The object `object` as this session may see it (private objects need a user login).
    fn visible(
        &self,
        handle: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
    ) -> Result<&Object, CK_RV> {
        let (_, token) = self.session_token(handle)?;
        let stored = token
            .objects
            .get(&object)
            .ok_or(CKR_OBJECT_HANDLE_INVALID)?;
        if stored.object.private && token.login != Some(CKU_USER) {
            return Err(CKR_OBJECT_HANDLE_INVALID);
        }
        Ok(&stored.object)
    }

    /// C_FindObjectsInit.
    pub(crate) fn find_init(
        &mut self,
        handle: CK_SESSION_HANDLE,
        template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    ) -> Result<(), CK_RV> {
        let slot = self.session(handle)?.slot;
        if self.session(handle)?.found.is_some() {
            return Err(CKR_OPERATION_ACTIVE);
        }
        self.refresh(slot)?;
        let (_, token) = self.session_token(handle)?;
        let user = token.login == Some(CKU_USER);
        let mut found: Vec<CK_OBJECT_HANDLE> = token
            .objects
            .iter()
            .filter(|(_, s)| (user || !s.object.private) && s.object.matches(template))
            .map(|(h, _)| *h)
            .collect();
        found.sort_unstable();
        found.reverse(); // popped from the end: lowest handle first
        if let Some(session) = self.sessions.get_mut(&handle) {
            session.found = Some(found);
        }
        Ok(())
    }

    /// C_FindObjects: up to `max` more handles.
    pub(crate) fn find_next(
        &mut self,
        handle: CK_SESSION_HANDLE,
        max: usize,
    ) -> Result<Vec<CK_OBJECT_HANDLE>, CK_RV> {
        let session = self
            .sessions
            .get_mut(&handle)
            .ok_or(CKR_SESSION_HANDLE_INVALID)?;
        let found = session
            .found
            .as_mut()
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        let mut out = Vec::new();
        while out.len() < max {
            match found.pop() {
                Some(h) => out.push(h),
                None => break,
            }
        }
        Ok(out)
    }

    /// C_FindObjectsFinal.
    pub(crate) fn find_final(&mut self, handle: CK_SESSION_HANDLE) -> Result<(), CK_RV> {
        let session = self
            .sessions
            .get_mut(&handle)
            .ok_or(CKR_SESSION_HANDLE_INVALID)?;
        session
            .found
            .take()
            .map(|_| ())
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)
    }

    /// C_GetAttributeValue: one answer per asked type (values, sensitive or invalid).
    pub(crate) fn attributes(
        &self,
        handle: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        kinds: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrValue>, CK_RV> {
        let object = self.visible(handle, object)?;
        Ok(kinds.iter().map(|k| object.attribute(*k)).collect())
    }

    /// C_GenerateKeyPair: (public handle, private handle).
    pub(crate) fn generate_key_pair(
        &mut self,
        handle: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        public: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
        private: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), CK_RV> {
        let template = KeyPairTemplate::parse(public, private)?;
        let curve = template.curve(mechanism)?;
        let rw = self.session(handle)?.rw;
        if template.token && !rw {
            return Err(CKR_SESSION_READ_ONLY);
        }
        let first = self.next_object;
        let token = self.token_mut(handle)?;
        if token.login != Some(CKU_USER) {
            return Err(CKR_USER_NOT_LOGGED_IN);
        }
        let master = token.master.as_ref().ok_or(CKR_USER_NOT_LOGGED_IN)?;
        let key = PrivateKey::generate(curve);
        let point = key.public_point();
        let mut stem = [0u8; 8];
        OsRng.fill_bytes(&mut stem);
        let stem = hex::encode(stem);
        let names = if template.token {
            (format!("{stem}-pub"), format!("{stem}-priv"))
        } else {
            (String::new(), String::new())
        };
        let aad = secret_aad(&token.file.serial, &names.1);
        let secret = store::seal(master, &key.scalar_bytes(), &aad).map_err(store_error)?;
        let public_object = Object {
            class: CKO_PUBLIC_KEY,
            curve,
            label: template.label.clone(),
            id: template.id.clone(),
            token: template.token,
            private: false,
            sign: false,
            verify: template.verify,
            point: point.clone(),
            secret: None,
            encrypt: false,
            decrypt: false,
        };
        let private_object = Object {
            class: CKO_PRIVATE_KEY,
            private: template.private,
            sign: template.sign,
            verify: false,
            secret: Some(secret),
            ..public_object.clone()
        };
        if template.token {
            for (name, object) in [(&names.0, &public_object), (&names.1, &private_object)] {
                let bytes = serde_json::to_vec_pretty(object).map_err(|_| CKR_GENERAL_ERROR)?;
                store::write_atomic(&object_path(&token.dir, name), &bytes).map_err(store_error)?;
            }
        }
        let owner = (!template.token).then_some(handle);
        let (pub_handle, priv_handle) = (first, first + 1);
        token.objects.insert(
            pub_handle,
            Stored {
                name: names.0,
                owner,
                object: public_object,
            },
        );
        token.objects.insert(
            priv_handle,
            Stored {
                name: names.1,
                owner,
                object: private_object,
            },
        );
        token.unsealed.insert(priv_handle, Arc::new(key));
        self.next_object += 2;
        Ok((pub_handle, priv_handle))
    }

    /// C_DestroyObject.
    pub(crate) fn destroy(
        &mut self,
        handle: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
    ) -> Result<(), CK_RV> {
        let is_token_object = self.visible(handle, object)?.token;
        if is_token_object && !self.session(handle)?.rw {
            return Err(CKR_SESSION_READ_ONLY);
        }
        let token = self.token_mut(handle)?;
        if let Some(stored) = token.objects.remove(&object) {
            if !stored.name.is_empty() {
                std::fs::remove_file(object_path(&token.dir, &stored.name))
                    .map_err(|_| CKR_DEVICE_ERROR)?;
            }
        }
        token.unsealed.remove(&object);
        Ok(())
    }

    /// C_SignInit: checks the key and mechanism and unseals the key (cached while logged in).
    pub(crate) fn sign_init(
        &mut self,
        handle: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        parameter: &[u8],
        key: CK_OBJECT_HANDLE,
    ) -> Result<(), CK_RV> {
        if self.session(handle)?.sign.is_some() {
            return Err(CKR_OPERATION_ACTIVE);
        }
        let object = self.visible(handle, key)?.clone();
        if !object.is_private_key() {
            return Err(CKR_KEY_TYPE_INCONSISTENT);
        }
        if !object.sign {
            return Err(CKR_KEY_FUNCTION_NOT_PERMITTED);
        }
        let scheme = scheme_for(object.curve, mechanism, parameter)?;
        let private = self.unsealed(handle, key, &object)?;
        if let Some(session) = self.sessions.get_mut(&handle) {
            session.sign = Some(Operation {
                scheme,
                key: OpKey::Sign(private),
                data: Vec::new(),
            });
        }
        Ok(())
    }

    /// The private or secret key `key` in memory (unsealed on first use while logged in).
    fn unsealed(
        &mut self,
        handle: CK_SESSION_HANDLE,
        key: CK_OBJECT_HANDLE,
        object: &Object,
    ) -> Result<Arc<PrivateKey>, CK_RV> {
        let token = self.token_mut(handle)?;
        if let Some(private) = token.unsealed.get(&key) {
            return Ok(private.clone());
        }
        let master = token.master.as_ref().ok_or(CKR_USER_NOT_LOGGED_IN)?;
        let name = &token.objects[&key].name;
        let sealed = object.secret.as_ref().ok_or(CKR_KEY_HANDLE_INVALID)?;
        let scalar = store::open(master, sealed, &secret_aad(&token.file.serial, name))
            .map_err(store_error)?
            .ok_or(CKR_DEVICE_ERROR)?;
        let private =
            Arc::new(PrivateKey::from_scalar(object.curve, &scalar).ok_or(CKR_DEVICE_ERROR)?);
        token.unsealed.insert(key, private.clone());
        Ok(private)
    }

    /// C_GenerateKey: an AES-256 key (CKM_AES_KEY_GEN) for CKM_AES_GCM.
    pub(crate) fn generate_key(
        &mut self,
        handle: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    ) -> Result<CK_OBJECT_HANDLE, CK_RV> {
        if mechanism != CKM_AES_KEY_GEN {
            return Err(CKR_MECHANISM_INVALID);
        }
        let template = SecretKeyTemplate::parse(template)?;
        if template.token && !self.session(handle)?.rw {
            return Err(CKR_SESSION_READ_ONLY);
        }
        let object_handle = self.next_object;
        let token = self.token_mut(handle)?;
        if token.login != Some(CKU_USER) {
            return Err(CKR_USER_NOT_LOGGED_IN);
        }
        let master = token.master.as_ref().ok_or(CKR_USER_NOT_LOGGED_IN)?;
        let key = PrivateKey::generate(KeyAlg::Aes256);
        let name = if template.token {
            let mut stem = [0u8; 8];
            OsRng.fill_bytes(&mut stem);
            format!("{}-secret", hex::encode(stem))
        } else {
            String::new()
        };
        let aad = secret_aad(&token.file.serial, &name);
        let secret = store::seal(master, &key.scalar_bytes(), &aad).map_err(store_error)?;
        let object = Object {
            class: CKO_SECRET_KEY,
            curve: KeyAlg::Aes256,
            label: template.label,
            id: template.id,
            token: template.token,
            private: true,
            sign: false,
            verify: false,
            point: Vec::new(),
            secret: Some(secret),
            encrypt: template.encrypt,
            decrypt: template.decrypt,
        };
        if template.token {
            let bytes = serde_json::to_vec_pretty(&object).map_err(|_| CKR_GENERAL_ERROR)?;
            store::write_atomic(&object_path(&token.dir, &name), &bytes).map_err(store_error)?;
        }
        let owner = (!template.token).then_some(handle);
        token.objects.insert(
            object_handle,
            Stored {
                name,
                owner,
                object,
            },
        );
        token.unsealed.insert(object_handle, Arc::new(key));
        self.next_object += 1;
        Ok(object_handle)
    }

    /// C_EncryptInit / C_DecryptInit with CKM_AES_GCM (12-byte IV, 128-bit tag).
    pub(crate) fn crypt_init(
        &mut self,
        handle: CK_SESSION_HANDLE,
        encrypt: bool,
        mechanism: CK_MECHANISM_TYPE,
        params: GcmParams,
        key: CK_OBJECT_HANDLE,
    ) -> Result<(), CK_RV> {
        if self.session(handle)?.crypt.is_some() {
            return Err(CKR_OPERATION_ACTIVE);
        }
        if mechanism != CKM_AES_GCM {
            return Err(CKR_MECHANISM_INVALID);
        }
        let object = self.visible(handle, key)?.clone();
        if object.class != CKO_SECRET_KEY {
            return Err(CKR_KEY_TYPE_INCONSISTENT);
        }
        if !(if encrypt {
            object.encrypt
        } else {
            object.decrypt
        }) {
            return Err(CKR_KEY_FUNCTION_NOT_PERMITTED);
        }
        let key = self.unsealed(handle, key, &object)?;
        if let Some(session) = self.sessions.get_mut(&handle) {
            session.crypt = Some(CryptOperation {
                encrypt,
                key,
                params,
            });
        }
        Ok(())
    }

    /// The exact output length of the active C_Encrypt / C_Decrypt for `input_len` bytes.
    pub(crate) fn crypt_len(
        &self,
        handle: CK_SESSION_HANDLE,
        encrypt: bool,
        input_len: usize,
    ) -> Result<usize, CK_RV> {
        let op = self
            .session(handle)?
            .crypt
            .as_ref()
            .filter(|op| op.encrypt == encrypt)
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        if op.encrypt {
            Ok(input_len + 16)
        } else {
            input_len
                .checked_sub(16)
                .ok_or(CKR_ENCRYPTED_DATA_LEN_RANGE)
        }
    }

    /// C_Encrypt / C_Decrypt: ends the operation.
    pub(crate) fn crypt(
        &mut self,
        handle: CK_SESSION_HANDLE,
        encrypt: bool,
        data: &[u8],
    ) -> Result<Vec<u8>, CK_RV> {
        let session = self
            .sessions
            .get_mut(&handle)
            .ok_or(CKR_SESSION_HANDLE_INVALID)?;
        let op = session
            .crypt
            .take()
            .filter(|op| op.encrypt == encrypt)
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        op.key.gcm(encrypt, &op.params, data).map_err(|_| {
            if encrypt {
                CKR_DATA_LEN_RANGE
            } else {
                CKR_ENCRYPTED_DATA_INVALID
            }
        })
    }

    /// Drop an active encrypt/decrypt operation after an argument error.
    pub(crate) fn abort_crypt(&mut self, handle: CK_SESSION_HANDLE) {
        if let Some(session) = self.sessions.get_mut(&handle) {
            session.crypt = None;
        }
    }

    /// C_VerifyInit with a public key object.
    pub(crate) fn verify_init(
        &mut self,
        handle: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        parameter: &[u8],
        key: CK_OBJECT_HANDLE,
    ) -> Result<(), CK_RV> {
        if self.session(handle)?.verify.is_some() {
            return Err(CKR_OPERATION_ACTIVE);
        }
        let object = self.visible(handle, key)?;
        if object.is_private_key() {
            return Err(CKR_KEY_TYPE_INCONSISTENT);
        }
        if !object.verify {
            return Err(CKR_KEY_FUNCTION_NOT_PERMITTED);
        }
        let scheme = scheme_for(object.curve, mechanism, parameter)?;
        let op = Operation {
            scheme,
            key: OpKey::Verify {
                curve: object.curve,
                point: object.point.clone(),
            },
            data: Vec::new(),
        };
        if let Some(session) = self.sessions.get_mut(&handle) {
            session.verify = Some(op);
        }
        Ok(())
    }

    fn operation(
        &mut self,
        handle: CK_SESSION_HANDLE,
        sign: bool,
    ) -> Result<&mut Option<Operation>, CK_RV> {
        let session = self
            .sessions
            .get_mut(&handle)
            .ok_or(CKR_SESSION_HANDLE_INVALID)?;
        let op = if sign {
            &mut session.sign
        } else {
            &mut session.verify
        };
        if op.is_none() {
            return Err(CKR_OPERATION_NOT_INITIALIZED);
        }
        Ok(op)
    }

    /// C_SignUpdate / C_VerifyUpdate: buffer more data (ends the operation on overflow).
    pub(crate) fn update(
        &mut self,
        handle: CK_SESSION_HANDLE,
        sign: bool,
        data: &[u8],
    ) -> Result<(), CK_RV> {
        let slot = self.operation(handle, sign)?;
        let too_long = slot
            .as_ref()
            .is_some_and(|op| op.data.len() + data.len() > MAX_BUFFERED);
        if too_long {
            *slot = None;
            return Err(CKR_DATA_LEN_RANGE);
        }
        if let Some(op) = slot.as_mut() {
            op.data.extend_from_slice(data);
        }
        Ok(())
    }

    /// Whether a sign operation is active (for the C_Sign length query).
    pub(crate) fn signing(&mut self, handle: CK_SESSION_HANDLE) -> Result<(), CK_RV> {
        self.operation(handle, true).map(|_| ())
    }

    /// End the operation and hand its job out, with `more` appended (C_Sign / C_Verify data).
    pub(crate) fn take(
        &mut self,
        handle: CK_SESSION_HANDLE,
        sign: bool,
        more: &[u8],
    ) -> Result<Job, CK_RV> {
        let op = self
            .operation(handle, sign)?
            .take()
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        let mut data = op.data;
        data.extend_from_slice(more);
        Ok(Job {
            scheme: op.scheme,
            key: op.key,
            data,
        })
    }

    /// Drop an active operation (after an error that ends it).
    pub(crate) fn abort(&mut self, handle: CK_SESSION_HANDLE, sign: bool) {
        if let Ok(op) = self.operation(handle, sign) {
            *op = None;
        }
    }

    /// C_GenerateRandom (needs a valid session).
    pub(crate) fn random(&self, handle: CK_SESSION_HANDLE, out: &mut [u8]) -> Result<(), CK_RV> {
        self.session(handle)?;
        OsRng.fill_bytes(out);
        Ok(())
    }
}

impl Token {
    fn logout(&mut self) {
        self.login = None;
        self.master = None;
        self.unsealed.clear();
    }
}

fn object_path(dir: &std::path::Path, name: &str) -> PathBuf {
    dir.join("objects").join(format!("{name}.json"))
}

fn secret_aad(serial: &str, name: &str) -> Vec<u8> {
    format!("ca-softtoken key v1 {serial} {name}").into_bytes()
}

/// The scheme for `mechanism` on a key of `curve`; the SM3withSM2 parameter is the signer ID.
fn scheme_for(
    curve: KeyAlg,
    mechanism: CK_MECHANISM_TYPE,
    parameter: &[u8],
) -> Result<SignScheme, CK_RV> {
    let scheme = match mechanism {
        CKM_ECDSA => SignScheme::EcdsaPrehashed,
        CKM_ECDSA_SHA256 => SignScheme::EcdsaSha256,
        CKM_SM2 => SignScheme::Sm2Prehashed,
        CKM_SM3_SM2 => {
            let signer_id = if parameter.is_empty() {
                DEFAULT_SIGNER_ID.to_owned()
            } else if parameter.len() > 8191 {
                return Err(CKR_MECHANISM_PARAM_INVALID);
            } else {
                String::from_utf8(parameter.to_vec()).map_err(|_| CKR_MECHANISM_PARAM_INVALID)?
            };
            SignScheme::Sm3WithSm2 { signer_id }
        }
        _ => return Err(CKR_MECHANISM_INVALID),
    };
    if !parameter.is_empty() && mechanism != CKM_SM3_SM2 {
        return Err(CKR_MECHANISM_PARAM_INVALID);
    }
    let fits = match curve {
        KeyAlg::P256 => matches!(scheme, SignScheme::EcdsaPrehashed | SignScheme::EcdsaSha256),
        KeyAlg::Sm2 => matches!(
            scheme,
            SignScheme::Sm2Prehashed | SignScheme::Sm3WithSm2 { .. }
        ),
        KeyAlg::Aes256 => false,
    };
    if fits {
        Ok(scheme)
    } else {
        Err(CKR_KEY_TYPE_INCONSISTENT)
    }
}
