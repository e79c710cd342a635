//! Shared fixture: one SoftHSM2 token directory and conf per test process, tokens by label.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a different subset

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use hsm::{Hsm, HsmConfig, PinSource};

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const USER_PIN: &str = "user-pin-1234";
pub const SO_PIN: &str = "so-pin-5678";

struct Fixture {
    dir: PathBuf,
    tokens: Mutex<HashSet<String>>,
}

/// Create the token dir + softhsm2.conf and point SOFTHSM2_CONF at it, once per process,
/// before anything C_Initialize's the module.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("hsm-test-")
            .tempdir()
            .unwrap()
            .keep();
        let tokens = dir.join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        std::env::set_var("SOFTHSM2_CONF", &conf);
        Fixture {
            dir,
            tokens: Mutex::new(HashSet::new()),
        }
    })
}

/// The fixture's scratch directory (PIN files, openssl inputs).
pub fn scratch() -> &'static Path {
    &fixture().dir
}

/// Write `pin` to a fresh file with `mode`.
pub fn pin_file(name: &str, pin: &str, mode: u32) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, format!("{pin}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Initialise a token labelled `label` (once) and return a config whose PIN file is 0600.
pub fn token(label: &str) -> HsmConfig {
    let fixture = fixture();
    {
        let mut tokens = fixture.tokens.lock().unwrap();
        if tokens.insert(label.to_owned()) {
            hsm::init_token(Path::new(MODULE), label, SO_PIN, USER_PIN).unwrap();
        }
    }
    HsmConfig {
        module: PathBuf::from(MODULE),
        token_label: label.to_owned(),
        pin: PinSource::File(pin_file(&format!("{label}.pin"), USER_PIN, 0o600)),
        pool_size: 2,
        sm2: None,
        sm2_signer_id: None,
    }
}

/// A fresh token opened through the public API.
pub async fn open(label: &str) -> Hsm {
    Hsm::open(&token(label)).await.unwrap()
}
