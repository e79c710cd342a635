//! `init --demo`: a self-contained appliance under one directory.
//!
//! A SoftHSM2 token with its own `softhsm2.conf`, PINs in 0600 files, the SQLite database, the
//! example profiles and channels (`channels/*.toml`, each with its client certificate
//! `tls/channel-<name>.pem`), a demo TLS PKI for the mTLS API, and the ceremony already run.
//! The demo TLS PKI's keys are ordinary files: it stands in for the operator's own transport PKI.
//! The CA keys themselves are generated in the token and never leave it.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;

/// The demo token's label.
pub const TOKEN_LABEL: &str = "ca-appliance-demo";

const PERSONAL_PROFILE: &str = include_str!("../../config/profiles/personal.toml");
const ORGANISATION_PROFILE: &str = include_str!("../../config/profiles/organisation.toml");
const SM2_PERSONAL_PROFILE: &str = include_str!("../../config/profiles/sm2-personal.toml");
const SM2_PERSONAL_ENC_PROFILE: &str = include_str!("../../config/profiles/sm2-personal-enc.toml");

/// The example channels `init --demo` wires (file name, text).
const DEMO_CHANNELS: [(&str, &str); 5] = [
    (
        "sheca-personal",
        include_str!("../../config/channels/sheca-personal.toml"),
    ),
    (
        "bjca-personal",
        include_str!("../../config/channels/bjca-personal.toml"),
    ),
    (
        "bjca-organisation",
        include_str!("../../config/channels/bjca-organisation.toml"),
    ),
    (
        "gx-organisation",
        include_str!("../../config/channels/gx-organisation.toml"),
    ),
    (
        "reference-enroll",
        include_str!("../../config/channels/reference-enroll.toml"),
    ),
];

/// Why the demo could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The directory already holds an appliance.
    #[error("{0} already holds an appliance (appliance.toml exists); choose an empty directory")]
    AlreadyInitialised(PathBuf),
    /// No SoftHSM2 module was found.
    #[error("SoftHSM2 module not found (tried {0}); install softhsm2 or pass --module")]
    NoModule(String),
    /// A file could not be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The demo TLS PKI could not be generated.
    #[error("demo TLS PKI: {0}")]
    Tls(String),
    /// The HSM token could not be created.
    #[error("HSM: {0}")]
    Hsm(#[from] hsm::HsmError),
    /// `--database-url` names no database the appliance can use, or carries a password.
    #[error("--database-url: {0}")]
    DatabaseUrl(String),
    /// `--join DIR1` names no node this one can share with.
    #[error("--join {dir}: {1}", dir = .0.display())]
    Join(PathBuf, String),
}

/// Checks `--database-url` before anything is created: a scheme storage knows and no password
/// (secrets stay out of the configuration: PostgreSQL's client reads PGPASSFILE or PGPASSWORD).
pub fn check_database_url(url: &str) -> Result<(), DemoError> {
    crate::storage::Backend::of_url(url).map_err(|e| DemoError::DatabaseUrl(e.to_string()))?;
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let user_info = authority
        .rsplit_once('@')
        .map(|(u, _)| u)
        .unwrap_or_default();
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    if user_info.contains(':') || query.split('&').any(|p| p.starts_with("password=")) {
        return Err(DemoError::DatabaseUrl(
            "the URL carries a password; leave it out and give it in PGPASSFILE or PGPASSWORD"
                .into(),
        ));
    }
    Ok(())
}

/// Points the demo configuration at `url` (checked by [`check_database_url`]) instead of the
/// embedded SQLite file.
pub fn set_database_url(config_path: &Path, url: &str) -> Result<(), DemoError> {
    check_database_url(url)?;
    let text = std::fs::read_to_string(config_path).map_err(|e| write_err(config_path, e))?;
    let text = text.replacen(
        &format!("url = \"{DEMO_SQLITE_URL}\""),
        &format!("url = {}", toml::Value::String(url.to_owned())),
        1,
    );
    std::fs::write(config_path, text).map_err(|e| write_err(config_path, e))
}

/// `init --demo --join DIR1`: a second node in `dir` sharing DIR1's token, PINs, TLS PKI,
/// profiles, channels, CA certificates and PostgreSQL database (symbolic links to DIR1's
/// entries), with its own listeners, CRL directory and data directory.
pub fn join(
    first: &Path,
    dir: &Path,
    api: SocketAddr,
    public: SocketAddr,
) -> Result<PathBuf, DemoError> {
    let join_err = |what: String| DemoError::Join(first.to_owned(), what);
    let first = std::fs::canonicalize(first).map_err(|e| join_err(e.to_string()))?;
    let text = std::fs::read_to_string(first.join("appliance.toml"))
        .map_err(|e| join_err(format!("appliance.toml: {e}")))?;
    let value: toml::Table = text
        .parse()
        .map_err(|e| join_err(format!("appliance.toml: {e}")))?;
    let get = |section: &str, key: &str| {
        value
            .get(section)
            .and_then(|s| s.get(key))
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| join_err(format!("appliance.toml has no [{section}] {key}")))
    };
    let url = get("database", "url")?;
    if crate::storage::Backend::of_url(&url).ok() != Some(crate::storage::Backend::Postgres) {
        return Err(join_err(
            "its database is not PostgreSQL; a second node shares one (init it with --database-url)"
                .into(),
        ));
    }
    if dir.join("appliance.toml").exists() {
        return Err(DemoError::AlreadyInitialised(dir.to_owned()));
    }
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let entries = std::fs::read_dir(&first).map_err(|e| join_err(e.to_string()))?;
    for entry in entries {
        let name = entry.map_err(|e| join_err(e.to_string()))?.file_name();
        if ["appliance.toml", "crl", "data"].iter().any(|n| name == *n) {
            continue;
        }
        std::os::unix::fs::symlink(first.join(&name), dir.join(&name))
            .map_err(|e| write_err(&dir.join(&name), e))?;
    }
    create_dir(&dir.join("data"))?;
    let mut text = text;
    for (key, new) in [
        ("api_addr", api.to_string()),
        ("public_addr", public.to_string()),
        ("public_url", format!("http://{public}")),
    ] {
        let old = get("server", key)?;
        text = text.replacen(
            &format!("{key} = \"{old}\""),
            &format!("{key} = \"{new}\""),
            1,
        );
    }
    let path = dir.join("appliance.toml");
    write_file(&path, text.as_bytes(), 0o644)?;
    Ok(path)
}

/// The demo's embedded database.
const DEMO_SQLITE_URL: &str = "sqlite://data/appliance.db";

/// Paths and settings decided before the PKCS#11 module is loaded.
#[derive(Debug, Clone)]
pub struct DemoLayout {
    /// The appliance directory.
    pub dir: PathBuf,
    /// The SoftHSM2 module.
    pub module: PathBuf,
    /// The SoftHSM2 configuration file (export as `SOFTHSM2_CONF` before loading the module).
    pub softhsm2_conf: PathBuf,
}

/// Finds the SoftHSM2 module in the usual Debian locations.
pub fn find_softhsm_module() -> Result<PathBuf, DemoError> {
    let candidates = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| DemoError::NoModule(candidates.join(", ")))
}

/// Finds `libca_softtoken.so` (the SM2-capable soft token) beside this binary or where the
/// Debian package installs it.
pub fn find_softtoken_module() -> Result<PathBuf, DemoError> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("libca_softtoken.so")));
    let candidates: Vec<PathBuf> = beside
        .into_iter()
        .chain([PathBuf::from("/usr/lib/ca-appliance/libca_softtoken.so")])
        .collect();
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| {
            DemoError::NoModule(
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
}

/// `init --demo --sm2`: on ca-softtoken, an SM2 root and issuing CA beside the ECDSA ones
/// (whose root becomes P-256, as the soft token has no P-384), and the `sm2-personal` profile,
/// offered by the personal example channels.
pub fn add_sm2(layout: &DemoLayout, config_path: &Path) -> Result<(), DemoError> {
    let config = std::fs::read_to_string(config_path).map_err(|e| write_err(config_path, e))?;
    let mut config = config.replacen("key = \"ec-p384\"", "key = \"ec-p256\"", 1);
    config.push_str(
        r#"
# SM2 (GM/T 0015): the soft token's vendor constants, and an SM2 hierarchy.
[hsm.sm2]
preset = "ca-softtoken"

[[ca]]
name = "sm2-root"
key = "sm2"
subject = "CN=Demo SM2 Root CA,O=Demo CA Operator,C=CN"
validity_days = 7300

[[ca]]
name = "sm2-personal"
parent = "sm2-root"
key = "sm2"
subject = "CN=Demo SM2 Personal Issuing CA,O=Demo CA Operator,C=CN"
validity_days = 3650
"#,
    );
    std::fs::write(config_path, config).map_err(|e| write_err(config_path, e))?;
    write_file(
        &layout.dir.join("profiles/sm2-personal.toml"),
        SM2_PERSONAL_PROFILE.as_bytes(),
        0o644,
    )?;
    write_file(
        &layout.dir.join("profiles/sm2-personal-enc.toml"),
        SM2_PERSONAL_ENC_PROFILE.as_bytes(),
        0o644,
    )?;
    allow_sm2_in_personal_channels(&layout.dir.join("channels"))
}

/// The example personal channels written for the demo also offer `sm2-personal`, so an
/// application can end in an SM2 certificate.
fn allow_sm2_in_personal_channels(dir: &Path) -> Result<(), DemoError> {
    for name in ["bjca-personal", "sheca-personal"] {
        let path = dir.join(format!("{name}.toml"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // not written: a verifier plugin of its policy is not built
        };
        let text = text.replacen(
            "profiles = [\"personal\"]",
            "profiles = [\"personal\", \"sm2-personal\"]",
            1,
        );
        std::fs::write(&path, text).map_err(|e| write_err(&path, e))?;
    }
    Ok(())
}

/// Step 1 (no PKCS#11 yet): create the directory tree and the SoftHSM2 configuration.
pub fn prepare(dir: &Path, module: Option<PathBuf>) -> Result<DemoLayout, DemoError> {
    if dir.join("appliance.toml").exists() {
        return Err(DemoError::AlreadyInitialised(dir.to_owned()));
    }
    let module = match module {
        Some(m) => m,
        None => find_softhsm_module()?,
    };
    for sub in [
        "tokens", "secrets", "tls", "data", "ca", "profiles", "channels",
    ] {
        create_dir(&dir.join(sub))?;
    }
    let dir = std::fs::canonicalize(dir).map_err(|e| write_err(dir, e))?;
    let softhsm2_conf = dir.join("softhsm2.conf");
    write_file(
        &softhsm2_conf,
        format!(
            "# SoftHSM2 token store of this demo appliance\ndirectories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            dir.join("tokens").display()
        )
        .as_bytes(),
        0o600,
    )?;
    Ok(DemoLayout {
        dir,
        module,
        softhsm2_conf,
    })
}

/// The verifier plugins the demo wires to vendor-sim: (name, library stem, config URL key,
/// secret name).
const DEMO_PLUGINS: [(&str, &str, &str, &str); 5] = [
    ("phone-real-name", "phone_real_name", "", ""),
    ("bank-card", "bank_card", "bank_url", "bank_api_key"),
    ("face", "face", "face_url", "face_api_key"),
    (
        "corporate-transfer",
        "corporate_transfer",
        "payout_url",
        "payout_api_key",
    ),
    (
        "org-registry",
        "org_registry",
        "registry_url",
        "registry_api_key",
    ),
];

/// Which vendor-sim endpoints spend a limited resource, per demo plugin (`limited_actions`).
fn demo_limited_actions(plugin: &str) -> &'static str {
    match plugin {
        "phone-real-name" => "{ carrier = [\"/carrier/v1/verify\"], sms = [\"/sms/v1/send\"] }",
        "bank-card" => "{ bank = [\"/bank/v1/auth/init\"] }",
        "face" => "{ face = [\"/face/v1/sessions\"] }",
        "corporate-transfer" => "{ payout = [\"/payout/v1/transfers\"] }",
        _ => "{}",
    }
}

/// File (under the demo directory) holding the vendor-sim API key the demo plugins use.
pub const VENDOR_SIM_KEY_FILE: &str = "secrets/vendor-sim-api-key";

/// The `[[plugin]]` tables and the channel's `verifications` list for the plugin libraries found
/// in `plugin_dir` (next to the `ca-appliance` binary), all pointed at vendor-sim on `vendor_sim`.
/// Plugins run in a worker when `ca-plugin-worker` is there too, else in-process (they are
/// first-party). Hashes are computed now: what the operator approves.
fn demo_plugins(plugin_dir: &Path, vendor_sim: SocketAddr) -> (Vec<String>, String) {
    let worker = plugin_dir.join("ca-plugin-worker").is_file();
    let isolation = if worker { "worker" } else { "in_process" };
    let base = format!("http://{vendor_sim}");
    let key = format!("{{ file = \"{VENDOR_SIM_KEY_FILE}\" }}");
    let mut names = Vec::new();
    let mut text = String::new();
    for (name, stem, url_key, secret) in DEMO_PLUGINS {
        let path = plugin_dir.join(format!("libplugin_{stem}.so"));
        let Ok(sha) = plugin_host::sha256_file(&path) else {
            continue;
        };
        let (config, secrets) = if name == "phone-real-name" {
            (
                format!("{{ carrier_url = \"{base}\", sms_url = \"{base}\" }}"),
                format!("{{ carrier_api_key = {key}, sms_api_key = {key} }}"),
            )
        } else {
            (
                format!("{{ {url_key} = \"{base}\" }}"),
                format!("{{ {secret} = {key} }}"),
            )
        };
        text.push_str(&format!(
            "\n[[plugin]]\nname = \"{name}\"\npath = \"{}\"\nsha256 = \"{sha}\"\nisolation = \"{isolation}\"\nconfig = {config}\nsecrets = {secrets}\negress_hosts = [\"{vendor_sim}\"]\nallow_plain_http = true\nlimited_actions = {}\n",
            path.display(),
            demo_limited_actions(name)
        ));
        names.push(name.to_owned());
    }
    (names, text)
}

/// File (under the demo directory) holding the secret that signs the demo partner webhook
/// (vendor-sim checks it with `--partner-secret-file`).
pub const PARTNER_WEBHOOK_SECRET_FILE: &str = "secrets/partner-webhook-secret";

/// The channel plugins the demo wires to vendor-sim, as `[[plugin]]` tables: `channel-notify`
/// (SMS and e-mail through vendor-sim's gateways) and `channel-webhook` (signed callbacks to
/// vendor-sim's partner sink `/partner/demo`). Returns the `[[channel]]` lines that name them
/// (`plugins`, `notifier`) and the tables; either library missing leaves it out.
fn demo_channel_plugins(plugin_dir: &Path, vendor_sim: SocketAddr) -> (String, String) {
    let worker = plugin_dir.join("ca-plugin-worker").is_file();
    let isolation = if worker { "worker" } else { "in_process" };
    let base = format!("http://{vendor_sim}");
    let key = format!("{{ file = \"{VENDOR_SIM_KEY_FILE}\" }}");
    let mut channel = String::new();
    let mut text = String::new();
    let mut table = |name: &str, stem: &str, config: String, secrets: String| -> bool {
        let path = plugin_dir.join(format!("libplugin_{stem}.so"));
        let Ok(sha) = plugin_host::sha256_file(&path) else {
            return false;
        };
        text.push_str(&format!(
            "\n[[plugin]]\nname = \"{name}\"\npath = \"{}\"\nsha256 = \"{sha}\"\nisolation = \"{isolation}\"\nconfig = {config}\nsecrets = {secrets}\negress_hosts = [\"{vendor_sim}\"]\nallow_plain_http = true\n",
            path.display()
        ));
        true
    };
    if table(
        "channel-notify",
        "channel_notify",
        format!("{{ sms_url = \"{base}\", mail_url = \"{base}\", mail_from = \"ca@demo.example\", notify_events = [\"issued\", \"rejected\", \"expired\"] }}"),
        format!("{{ sms_api_key = {key}, mail_api_key = {key} }}"),
    ) {
        channel.push_str("notifier = \"channel-notify\"\n");
    }
    if table(
        "channel-webhook",
        "channel_webhook",
        format!("{{ url = \"{base}/partner/demo\" }}"),
        format!("{{ webhook_secret = {{ file = \"{PARTNER_WEBHOOK_SECRET_FILE}\" }} }}"),
    ) {
        channel.push_str("plugins = [\"channel-webhook\"]\n");
    }
    (channel, text)
}

/// Step 2 (after `SOFTHSM2_CONF` is exported): token, PINs, TLS PKI, profiles and config.
/// The demo channel may use the verifier plugins found next to the binary, pointed at a
/// vendor-sim on `vendor_sim`. Returns the path of the written `appliance.toml`.
pub fn write_demo(
    layout: &DemoLayout,
    api_addr: SocketAddr,
    public_addr: SocketAddr,
    vendor_sim: SocketAddr,
) -> Result<PathBuf, DemoError> {
    let dir = &layout.dir;
    let so_pin = random_pin();
    let user_pin = random_pin();
    hsm::init_token(&layout.module, TOKEN_LABEL, &so_pin, &user_pin)?;
    write_file(&dir.join("secrets/hsm-so.pin"), so_pin.as_bytes(), 0o600)?;
    write_file(
        &dir.join("secrets/hsm-user.pin"),
        user_pin.as_bytes(),
        0o600,
    )?;

    write_tls_pki(&dir.join("tls")).map_err(|e| DemoError::Tls(e.to_string()))?;
    write_file(
        &dir.join("profiles/personal.toml"),
        PERSONAL_PROFILE.as_bytes(),
        0o644,
    )?;
    write_file(
        &dir.join("profiles/organisation.toml"),
        ORGANISATION_PROFILE.as_bytes(),
        0o644,
    )?;
    write_file(
        &dir.join(VENDOR_SIM_KEY_FILE),
        random_pin().as_bytes(),
        0o600,
    )?;
    let plugin_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned))
        .unwrap_or_default();
    let (names, plugins) = demo_plugins(&plugin_dir, vendor_sim);
    write_file(
        &dir.join(PARTNER_WEBHOOK_SECRET_FILE),
        random_pin().as_bytes(),
        0o600,
    )?;
    let (channel_lines, channel_plugins) = demo_channel_plugins(&plugin_dir, vendor_sim);
    let mut known = names.clone();
    for p in ["channel-notify", "channel-webhook"] {
        if channel_lines.contains(p) {
            known.push(p.to_owned());
        }
    }
    write_demo_channels(&dir.join("channels"), &known)?;
    let mut config = demo_config(&layout.module, api_addr, public_addr);
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    config.push_str(&format!("verifications = [{}]\n", list.join(", ")));
    config.push_str(&channel_lines);
    config.push_str(
        "\n# Personal data of verifications is sealed at rest with data keys wrapped by this HSM key\n# (`init --demo` made the first one; `ca-appliance data-key rotate` makes the next).\n[verification]\nwrapping_key = \"verification-data-wrap\"\nretention_days = 30\n",
    );
    config.push_str(&plugins);
    config.push_str(&channel_plugins);
    if dir.join("channels/reference-enroll.toml").exists() {
        config.push_str("\n# The reference enrollment page at /enroll/ on the public listener.\n[enroll]\nchannel = \"reference-enroll\"\n");
    }
    let path = dir.join("appliance.toml");
    write_file(&path, config.as_bytes(), 0o644)?;
    Ok(path)
}

fn demo_config(module: &Path, api: SocketAddr, public: SocketAddr) -> String {
    format!(
        r#"# Demo appliance written by `ca-appliance init --demo`. Paths are relative to this file.
# The HSM PIN is not here: it is read from the 0600 file named in [hsm.pin].
profiles_dir = "profiles"
ca_output_dir = "ca"
channels_dir = "channels"

[server]
api_addr = "{api}"
public_addr = "{public}"
public_url = "http://{public}"
tls_cert = "tls/server.pem"
tls_key = "tls/server.key"
client_ca = "tls/ca.pem"

[hsm]
module = "{module}"
token_label = "{TOKEN_LABEL}"
softhsm2_conf = "softhsm2.conf"
pool_size = 2

[hsm.pin]
file = "secrets/hsm-user.pin"

[database]
url = "{DEMO_SQLITE_URL}"

[[ca]]
name = "root"
key = "ec-p384"
subject = "CN=Demo Root CA,O=Demo CA Operator,C=CN"
validity_days = 7300

[[ca]]
name = "personal"
parent = "root"
key = "ec-p256"
subject = "CN=Demo Personal Issuing CA,O=Demo CA Operator,C=CN"
validity_days = 3650

[[ca]]
name = "organisation"
parent = "root"
key = "ec-p256"
subject = "CN=Demo Organisation Issuing CA,O=Demo CA Operator,C=CN"
validity_days = 3650

[[client]]
common_name = "operator"
role = "operator"

[[client]]
common_name = "channel-demo"
role = "channel"
channel = "demo"

[[client]]
common_name = "ra-officer"
role = "ra_officer"

[[client]]
common_name = "ra-officer-2"
role = "ra_officer"

[[client]]
common_name = "auditor"
role = "auditor"

[[client]]
common_name = "relying-party"
role = "relying_party"

[[channel]]
name = "demo"
profiles = ["personal", "organisation"]
"#,
        module = module.display()
    )
}

fn write_tls_pki(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose, SanType,
    };
    let now = time::OffsetDateTime::now_utc();
    let name = |cn: &str| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Demo CA Operator");
        dn.push(DnType::CommonName, cn);
        dn
    };
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("Demo Appliance TLS CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - time::Duration::days(1);
    ca_params.not_after = now + time::Duration::days(3 * 365);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write_file(&dir.join("ca.pem"), ca_cert.pem().as_bytes(), 0o644)?;
    write_file(
        &dir.join("ca.key"),
        ca_key.serialize_pem().as_bytes(),
        0o600,
    )?;

    let leaf = |file: &str, cn: &str, server: bool| -> Result<(), Box<dyn std::error::Error>> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn);
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(2 * 365);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if server {
            params.subject_alt_names = vec![
                SanType::DnsName("localhost".try_into()?),
                SanType::IpAddress("127.0.0.1".parse()?),
                SanType::IpAddress("::1".parse()?),
            ];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        write_file(
            &dir.join(format!("{file}.pem")),
            cert.pem().as_bytes(),
            0o644,
        )?;
        write_file(
            &dir.join(format!("{file}.key")),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        Ok(())
    };
    leaf("server", "localhost", true)?;
    leaf("operator", "operator", false)?;
    leaf("channel-demo", "channel-demo", false)?;
    for staff in ["ra-officer", "ra-officer-2", "auditor", "relying-party"] {
        leaf(staff, staff, false)?;
    }
    for (name, _) in DEMO_CHANNELS {
        let stem = format!("channel-{name}");
        leaf(&stem, &stem, false)?;
    }
    Ok(())
}

/// Writes the example channel files whose methods are all among the demo's plugins; the
/// `notifier` line stays only when that channel plugin is configured too.
fn write_demo_channels(dir: &Path, plugins: &[String]) -> Result<(), DemoError> {
    let known = |p: &str| plugins.iter().any(|n| n == p);
    for (name, text) in DEMO_CHANNELS {
        let text: String = text
            .lines()
            .filter(|l| {
                let notifier = l.trim_start().strip_prefix("notifier = \"");
                notifier.is_none_or(|rest| known(rest.trim_end_matches('"')))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        if crate::application::channel::parse(&text, &known).is_err() {
            continue; // a verifier plugin of its policy is not built
        }
        write_file(&dir.join(format!("{name}.toml")), text.as_bytes(), 0o644)?;
    }
    Ok(())
}

fn random_pin() -> String {
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn create_dir(path: &Path) -> Result<(), DemoError> {
    std::fs::create_dir_all(path).map_err(|e| write_err(path, e))
}

fn write_err(path: &Path, e: std::io::Error) -> DemoError {
    DemoError::Write {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Writes a file created with `mode` (so a secret is never briefly world-readable).
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), DemoError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| write_err(path, e))?;
    f.write_all(contents).map_err(|e| write_err(path, e))?;
    f.sync_all().map_err(|e| write_err(path, e))
}
