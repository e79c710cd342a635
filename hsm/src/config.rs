//! How to reach the CA's token: module, token label, PIN source, pool size.

use std::path::PathBuf;

use crate::pin::PinSource;
use crate::sm2::Sm2Mechanisms;

/// Sessions per token when the configuration says 0: one per core of the reference machine.
pub const DEFAULT_POOL_SIZE: usize = 2;

/// Everything `Hsm::open` needs; the PIN itself is only referenced, never stored here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmConfig {
    /// Path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so.
    pub module: PathBuf,
    /// Label of the token holding the CA keys.
    pub token_label: String,
    /// Where the user PIN is read from.
    pub pin: PinSource,
    /// Number of logged-in sessions kept open (0 means `DEFAULT_POOL_SIZE`).
    pub pool_size: usize,
    /// The token's SM2 constants (vendor-defined); `None` if it offers no SM2.
    pub sm2: Option<Sm2Mechanisms>,
    /// The GM/T 0009 signer ID SM2 keys sign with (`None`: the default `1234567812345678`).
    pub sm2_signer_id: Option<String>,
}
