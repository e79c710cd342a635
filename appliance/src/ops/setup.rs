//! `init --dir DIR` without `--demo`: the production set-up for a real token. Writes the
//! configuration (module, token label, where the PIN comes from: never the PIN), the example
//! profiles, an empty TLS directory and `ceremony.toml` (the `[[ca]]` tables: the ceremony plan
//! the operator reviews with `ceremony --dry-run` before approving it), and touches nothing
//! irreversible: the HSM is not opened.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const PERSONAL_PROFILE: &str = include_str!("../../../config/profiles/personal.toml");
const ORGANISATION_PROFILE: &str = include_str!("../../../config/profiles/organisation.toml");

/// Where the production HSM PIN comes from (exactly one).
#[derive(Debug, Clone)]
pub enum PinFrom {
    /// A systemd credential (`LoadCredentialEncrypted=NAME:...`).
    Credential(String),
    /// An environment variable.
    Env(String),
    /// A 0600 file readable by the service user.
    File(PathBuf),
}

/// The production set-up's inputs.
#[derive(Debug, Clone)]
pub struct Production {
    /// The PKCS#11 module of the HSM.
    pub module: PathBuf,
    /// The token label.
    pub token_label: String,
    /// Where the PIN comes from.
    pub pin: PinFrom,
    /// Base URL relying parties reach the public listener at.
    pub public_url: String,
    /// mTLS API listener.
    pub api_addr: SocketAddr,
    /// Public listener.
    pub public_addr: SocketAddr,
    /// Metrics listener.
    pub metrics_addr: SocketAddr,
    /// Where state lives (database, CA certificates, CRLs).
    pub state_dir: PathBuf,
}

/// Why the set-up was refused.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The directory already holds an appliance.
    #[error("{0} already holds appliance.toml; nothing written")]
    Exists(PathBuf),
    /// A value cannot go into the configuration.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The ceremony file `init --dir` writes: which CAs, key types, subjects and validities.
const CEREMONY_FILE: &str = r#"# The key ceremony plan, written by `ca-appliance init --dir`. Nothing here has happened yet.
# Review and edit it (names, key types generated in the HSM, subjects, validities; root first),
# then: `ca-appliance ceremony --config appliance.toml --dry-run` prints the plan and its digest;
# `ca-appliance ceremony --config appliance.toml --approve DIGEST` carries out exactly that plan
# (a file edited after the review gives another digest and is refused) and prints the keys it
# generated (labels) and the certificates it signed (serials, SHA-256 fingerprints).
# Key types: ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096.

[[ca]]
name = "root"
key = "ec-p384"
subject = "CN=Root CA,O=CA Operator,C=CN"
validity_days = 7300

[[ca]]
name = "personal"
parent = "root"
key = "ec-p256"
subject = "CN=Personal Issuing CA,O=CA Operator,C=CN"
validity_days = 3650

[[ca]]
name = "organisation"
parent = "root"
key = "ec-p256"
subject = "CN=Organisation Issuing CA,O=CA Operator,C=CN"
validity_days = 3650
"#;

/// Writes `dir/appliance.toml`, `dir/ceremony.toml`, `dir/profiles/*.toml` and `dir/tls/`;
/// returns the config path.
pub fn write(dir: &Path, p: &Production) -> Result<PathBuf, SetupError> {
    let config = dir.join("appliance.toml");
    if config.exists() {
        return Err(SetupError::Exists(dir.to_owned()));
    }
    for (what, value) in [
        ("token label", p.token_label.as_str()),
        ("public URL", p.public_url.as_str()),
    ] {
        if value.is_empty() || value.contains(['"', '\\', '\n']) {
            return Err(SetupError::Invalid(format!(
                "the {what} must be non-empty, without quotes, backslashes or newlines"
            )));
        }
    }
    if !p.public_url.starts_with("http://") && !p.public_url.starts_with("https://") {
        return Err(SetupError::Invalid(
            "--public-url must start with http:// or https:// (relying parties fetch OCSP and CRLs there)".into(),
        ));
    }
    let pin = match &p.pin {
        PinFrom::Credential(n) => format!("systemd_credential = \"{}\"", quoted(n)?),
        PinFrom::Env(v) => format!("env = \"{}\"", quoted(v)?),
        PinFrom::File(f) => format!(
            "file = \"{}\"  # mode 0600, owned by the service user",
            quoted(&f.display().to_string())?
        ),
    };
    for sub in ["profiles", "tls"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| write_err(&dir.join(sub), e))?;
    }
    write_new(&dir.join("profiles/personal.toml"), PERSONAL_PROFILE)?;
    write_new(
        &dir.join("profiles/organisation.toml"),
        ORGANISATION_PROFILE,
    )?;
    let state = quoted(&p.state_dir.display().to_string())?;
    let text = format!(
        r#"# Written by `ca-appliance init --dir` (production). Review it, then:
#   1. put the API's TLS server certificate and key in tls/server.pem, tls/server.key and the CA
#      of operator and channel client certificates in tls/client-ca.pem;
#   2. `ca-appliance check-config --config THIS_FILE` (explains any refusal);
#   3. review ceremony.toml, the ceremony plan (names, key types generated in the HSM, subjects,
#      validities), and `ca-appliance ceremony --config THIS_FILE --dry-run`. Nothing has
#      touched the HSM yet;
#   4. `ca-appliance ceremony --config THIS_FILE --approve DIGEST` (the digest the dry run
#      printed) as the service user creates the keys and certificates and prints what it did.
# The HSM PIN is never in this file.
profiles_dir = "profiles"
ca_output_dir = "{state}/ca"
ceremony = "ceremony.toml"

[server]
api_addr = "{api}"
public_addr = "{public}"
public_url = "{url}"
tls_cert = "tls/server.pem"
tls_key = "tls/server.key"
client_ca = "tls/client-ca.pem"

[hsm]
module = "{module}"
token_label = "{label}"
pool_size = 4

[hsm.pin]
{pin}

[database]
url = "sqlite://{state}/appliance.db"

# Map client certificates (by subject CN) to operators and channels:
# [[client]]
# common_name = "ops-console"
# role = "operator"

[status]
crl_dir = "{state}/crl"

[metrics]
addr = "{metrics}"

[log]
format = "auto"
"#,
        api = p.api_addr,
        public = p.public_addr,
        url = p.public_url,
        metrics = p.metrics_addr,
        module = quoted(&p.module.display().to_string())?,
        label = p.token_label,
    );
    write_new(&dir.join("ceremony.toml"), CEREMONY_FILE)?;
    write_new(&config, &text)?;
    Ok(config)
}

fn quoted(s: &str) -> Result<String, SetupError> {
    if s.contains(['"', '\\', '\n']) {
        return Err(SetupError::Invalid(format!(
            "{s:?} cannot contain quotes, backslashes or newlines"
        )));
    }
    Ok(s.to_owned())
}

fn write_err(path: &Path, e: std::io::Error) -> SetupError {
    SetupError::Write {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn write_new(path: &Path, text: &str) -> Result<(), SetupError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| write_err(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| write_err(path, e))
}
