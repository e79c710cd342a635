//! `check-config`: every check the configuration must pass before `serve`, each refusal naming
//! the key, the file and what to do. The schema and value checks are `ApplianceConfig::load`'s;
//! this module adds what only the files on disk can tell (TLS material, the PKCS#11 module, PIN
//! file, plugins, profiles, channels) and collects every refusal instead of stopping at the first.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::config::{ApplianceConfig, ConfigError};

/// One refusal: which key, in which file, what is wrong and what to do about it.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The configuration key (`server.tls_cert`, `[[plugin]] bank-card sha256`, ...).
    pub key: String,
    /// The file the key is written in (or the file it names, when that file is at fault).
    pub file: PathBuf,
    /// What is wrong.
    pub problem: String,
    /// What the operator should do.
    pub fix: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused: {} in {}: {}\n  fix: {}",
            self.key,
            self.file.display(),
            self.problem,
            self.fix
        )
    }
}

/// The refusal for a configuration that does not load at all (read, TOML, value or profile).
pub fn load_refusal(config_path: &Path, e: &ConfigError) -> Refusal {
    let (file, fix) = match e {
        ConfigError::Read { path, .. } => (
            path.clone(),
            "pass the right --config, or create the file (`ca-appliance init --dir`)".to_owned(),
        ),
        ConfigError::Parse { path, .. } => (
            path.clone(),
            "correct the TOML at the line and column shown; unknown keys are refused, so check \
             the spelling against README.md"
                .to_owned(),
        ),
        ConfigError::Invalid(_) => (
            config_path.to_owned(),
            "change the value named above (in this file, or in the ceremony or channel file it \
             names) to what the message asks"
                .to_owned(),
        ),
        ConfigError::Profile(_) => (
            config_path.to_owned(),
            "correct the profile file named above (profiles_dir), or remove it".to_owned(),
        ),
    };
    let problem = match e {
        ConfigError::Parse { message, .. } => message.trim_end().to_owned(),
        other => other.to_string(),
    };
    Refusal {
        key: "configuration".into(),
        file,
        problem,
        fix,
    }
}

/// Every file-level check of a loaded configuration; an empty list means all passed.
pub fn check_files(config: &ApplianceConfig, config_path: &Path) -> Vec<Refusal> {
    let mut out = Vec::new();
    let mut refuse = |key: &str, file: &Path, problem: String, fix: &str| {
        out.push(Refusal {
            key: key.to_owned(),
            file: file.to_owned(),
            problem,
            fix: fix.to_owned(),
        })
    };
    let cfg = config_path;

    // The HSM.
    if !config.hsm.module.is_file() {
        refuse(
            "hsm.module",
            cfg,
            format!("{} is not a file", config.hsm.module.display()),
            "install the HSM vendor's PKCS#11 library and give its path",
        );
    }
    if let Some(pin) = &config.hsm.pin.file {
        check_pin_file("hsm.pin.file", pin, cfg, &mut refuse);
    }
    if let Some(pin) = config.root_hsm.as_ref().and_then(|r| r.pin.file.as_ref()) {
        check_pin_file("root_hsm.pin.file", pin, cfg, &mut refuse);
    }
    if let Some(conf) = &config.hsm.softhsm2_conf {
        if !conf.is_file() {
            refuse(
                "hsm.softhsm2_conf",
                cfg,
                format!("{} is not a file", conf.display()),
                "point it at the SoftHSM2 configuration, or remove the key for another HSM",
            );
        }
    }

    // The database's directory (the package's tmpfiles.d makes /var/lib/ca-appliance).
    if let Some(rest) = config.database.url.strip_prefix("sqlite://") {
        let file = Path::new(rest.split('?').next().unwrap_or(rest));
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                refuse(
                    "database.url",
                    cfg,
                    format!("{} does not exist (the database goes there)", dir.display()),
                    "create it, owned by the service user (the package's tmpfiles.d creates \
                     /var/lib/ca-appliance), or point the URL elsewhere",
                );
            }
        }
    }

    // TLS of the API listener.
    let server = &config.server;
    let chain = match read_pem_certs(&server.tls_cert) {
        Ok(c) => Some(c),
        Err(problem) => {
            refuse(
                "server.tls_cert",
                cfg,
                problem,
                "put the API's TLS server certificate (PEM, leaf first, then intermediates) there",
            );
            None
        }
    };
    let key = match read_file(&server.tls_key).and_then(|bytes| {
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
            format!(
                "{} is not a PEM private key (PKCS#8, SEC1 or PKCS#1): {e}",
                server.tls_key.display()
            )
        })
    }) {
        Ok(k) => Some(k),
        Err(problem) => {
            refuse(
                "server.tls_key",
                cfg,
                problem,
                "put the private key of server.tls_cert there (PEM), readable by the service user only",
            );
            None
        }
    };
    if let (Some(chain), Some(key)) = (chain, key) {
        if let Err(problem) = key_matches(&chain[0], &key) {
            refuse(
                "server.tls_key",
                cfg,
                format!(
                    "{} does not belong to the certificate in {}: {problem}",
                    server.tls_key.display(),
                    server.tls_cert.display()
                ),
                "install the key the certificate was issued for, or the certificate issued for this key",
            );
        }
    }
    if let Err(problem) = read_pem_certs(&server.client_ca) {
        refuse(
            "server.client_ca",
            cfg,
            problem,
            "put the CA certificate(s) that issue operator and channel client certificates there (PEM)",
        );
    }
    if let Some(crl) = &server.client_crl {
        let parsed = read_file(crl).and_then(|bytes| {
            if !bytes.starts_with(b"-----") {
                return Ok(());
            }
            let n = CertificateRevocationListDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{} is not a PEM CRL: {e}", crl.display()))?
                .len();
            if n == 0 {
                return Err(format!("{} holds no X509 CRL block", crl.display()));
            }
            Ok(())
        });
        if let Err(problem) = parsed {
            refuse(
                "server.client_crl",
                cfg,
                problem,
                "put the client CA's current CRL there (PEM or DER), or remove the key",
            );
        }
    }

    // Plugins: file, approved hash, secrets.
    for p in &config.plugins {
        use crate::verification::registry::{check_file, spec_of, PluginSetupError};
        let key = format!("[[plugin]] {}", p.name);
        match check_file(p) {
            Err(PluginSetupError::HashMismatch { actual, .. }) => refuse(
                &format!("{key} sha256"),
                cfg,
                format!(
                    "{} has sha256 {actual}, not the approved {}",
                    p.path.display(),
                    p.sha256.trim()
                ),
                "review the new library (`ca-appliance plugin check PATH`); only then write its sha256 here",
            ),
            Err(e) => refuse(
                &format!("{key} path"),
                cfg,
                e.to_string(),
                "install the plugin library there, or correct the path",
            ),
            Ok(()) => {
                if let Err(e) = spec_of(p) {
                    refuse(
                        &format!("{key} secrets"),
                        cfg,
                        e.to_string(),
                        "create the secret file (mode 0600) or set the variable the secret names",
                    );
                }
            }
        }
    }

    // Relying parties' callback secrets.
    if let Err(e) = crate::relying::callback::CallbackTargets::from_config(&config.relying_parties)
    {
        refuse(
            "[[relying_party]] callback_secret",
            cfg,
            e,
            "create the secret file (mode 0600) or set the variable the secret names",
        );
    }

    // Profiles (each names a configured CA, passes the lint, channels name existing ones).
    if let Err(e) = config.load_profiles() {
        refuse(
            "profiles_dir",
            &config.profiles_dir,
            e.to_string(),
            "correct the profile (or the channel naming it) as the message says",
        );
    }
    out
}

fn check_pin_file<F: FnMut(&str, &Path, String, &str)>(
    key: &str,
    pin: &Path,
    cfg: &Path,
    refuse: &mut F,
) {
    match std::fs::metadata(pin) {
        Err(e) => refuse(
            key,
            cfg,
            format!("cannot read {}: {e}", pin.display()),
            "write the PIN into that file (mode 0600, owned by the service user), or use \
             systemd_credential / env",
        ),
        Ok(m) if m.permissions().mode() & 0o077 != 0 => refuse(
            key,
            cfg,
            format!(
                "{} has mode {:o}; others can read the PIN",
                pin.display(),
                m.permissions().mode() & 0o777
            ),
            &format!("chmod 600 {}", pin.display()),
        ),
        Ok(_) => {}
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no CERTIFICATE block", path.display()));
    }
    for cert in &certs {
        <x509_cert::Certificate as der::Decode>::from_der(cert.as_ref()).map_err(|e| {
            format!(
                "{} holds a certificate that does not parse: {e}",
                path.display()
            )
        })?;
    }
    Ok(certs)
}

/// Whether `key` is the private key of `cert` (their public keys compared).
fn key_matches(cert: &CertificateDer<'_>, key: &PrivateKeyDer<'_>) -> Result<(), String> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| format!("unsupported key: {e}"))?;
    let from_key = signing
        .public_key()
        .ok_or("the key's public half cannot be derived")?;
    let cert = <x509_cert::Certificate as der::Decode>::from_der(cert.as_ref())
        .map_err(|e| e.to_string())?;
    let from_cert = der::Encode::to_der(&cert.tbs_certificate.subject_public_key_info)
        .map_err(|e| e.to_string())?;
    if from_key.as_ref() == from_cert.as_slice() {
        Ok(())
    } else {
        Err("their public keys differ".into())
    }
}
