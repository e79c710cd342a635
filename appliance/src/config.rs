//! The appliance's TOML configuration, deserialised straight into validated types.
//!
//! Secrets never live here: the HSM PIN is named by a [`PinConfig`] source (a 0600 file, an
//! environment variable or a systemd credential), never written inline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::profile::{Profile, ProfileError};

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (line and column included).
        message: String,
    },
    /// A value is out of its allowed range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A certificate profile is invalid.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// The whole appliance configuration (`appliance.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplianceConfig {
    /// Listeners and TLS.
    pub server: ServerConfig,
    /// The PKCS#11 token holding the CA keys.
    pub hsm: HsmSection,
    /// Where state lives.
    pub database: DatabaseConfig,
    /// The CA hierarchy created by the ceremony, root first (inline, or from `ceremony`).
    #[serde(default, rename = "ca")]
    pub cas: Vec<CaConfig>,
    /// The reviewable ceremony file holding the `[[ca]]` tables instead of this file
    /// (relative to this file's directory; `init --dir` writes `ceremony.toml`).
    #[serde(default)]
    pub ceremony: Option<PathBuf>,
    /// Directory of certificate profile TOML files (relative to this file's directory).
    pub profiles_dir: PathBuf,
    /// Directory where the ceremony writes CA certificates as PEM (relative to this file).
    pub ca_output_dir: PathBuf,
    /// API clients: who a verified client certificate is.
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientConfig>,
    /// Channels (partner platforms) and what each may do.
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    /// OCSP responder and CRL publication (all optional).
    #[serde(default)]
    pub status: StatusConfig,
    /// Identity-verification plugins the operator approved (`[[plugin]]`, optional).
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<PluginConfig>,
    /// Settings of the verification service (`[verification]`, needed once a plugin is listed).
    #[serde(default)]
    pub verification: VerificationSettings,
    /// Audit log checkpoints (`[audit]`, optional).
    #[serde(default)]
    pub audit: AuditSettings,
    /// The token holding the root key, when it is not the `[hsm]` token (`[root_hsm]`,
    /// optional): only the ceremony, `ca revoke` and `root sign-crl` open it, `serve` never.
    #[serde(default)]
    pub root_hsm: Option<RootHsmSection>,
    /// Directory of channel files (`*.toml`, relative to this file); each adds a `[[channel]]`
    /// with its policies and its `[[client]]` entries.
    #[serde(default)]
    pub channels_dir: Option<PathBuf>,
    /// Applications: expiry, renewal window, assurance-level policy OIDs (`[applications]`).
    #[serde(default)]
    pub applications: ApplicationSettings,
    /// One-time codes, captchas and channel-plugin delivery (`[contact]`, optional).
    #[serde(default)]
    pub contact: ContactSettings,
    /// The Prometheus metrics listener (`[metrics]`, optional: absent = no listener).
    #[serde(default)]
    pub metrics: Option<crate::ops::metrics::MetricsConfig>,
    /// Log format (`[log]`, optional).
    #[serde(default)]
    pub log: crate::logging::LogConfig,
    /// The reference enrollment page (`[enroll]`, optional: absent = no `/enroll/`).
    #[serde(default)]
    pub enroll: Option<crate::enroll::EnrollConfig>,
    /// QR login challenges (`[login]`, optional).
    #[serde(default)]
    pub login: crate::relying::LoginSettings,
    /// Relying parties' login callbacks: allowed URLs and signing keys (`[[relying_party]]`).
    #[serde(default, rename = "relying_party")]
    pub relying_parties: Vec<crate::relying::callback::RelyingPartyConfig>,
}

/// The offline root's token, on the `[hsm]` module (`[root_hsm]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootHsmSection {
    /// Label of the token holding the root key.
    pub token_label: String,
    /// Where its user PIN comes from; never the PIN itself.
    pub pin: PinConfig,
}

/// When the audit key signs a checkpoint of the audit log (`[audit]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// After this many new rows (default 1000).
    #[serde(default = "default_checkpoint_rows")]
    pub checkpoint_rows: u32,
    /// At least this often while rows arrive, in minutes (default 10).
    #[serde(default = "default_checkpoint_minutes")]
    pub checkpoint_minutes: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoint_rows: default_checkpoint_rows(),
            checkpoint_minutes: default_checkpoint_minutes(),
        }
    }
}

/// `[applications]`: how applications age and what their certificates say about assurance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApplicationSettings {
    /// An unfinished application expires this long after it was created, seconds (1 s ..= 90 days).
    pub expire_after_secs: u64,
    /// A renewal is allowed from this many days before the certificate's notAfter (0..=3650).
    pub renewal_window_days: u32,
    /// The certificate policy OID written for each assurance level (`L1`, `L2`, `L3`).
    pub assurance_policy_oids: BTreeMap<String, String>,
    /// How often waiting applications are advanced and expired ones closed, seconds (1..=3600).
    pub tick_secs: u32,
    /// Realms: channels sharing accounts (`[[applications.realm]]`).
    #[serde(rename = "realm")]
    pub realms: Vec<crate::account::Realm>,
}

impl Default for ApplicationSettings {
    fn default() -> Self {
        // An example arc, like the profiles' policy OIDs; the operator's CP/CPS names its own.
        let oids = [("L1", "1"), ("L2", "2"), ("L3", "3")]
            .into_iter()
            .map(|(l, n)| (l.to_owned(), format!("1.3.6.1.4.1.61992.1.9.{n}")))
            .collect();
        Self {
            expire_after_secs: 7 * 86_400,
            renewal_window_days: 90,
            assurance_policy_oids: oids,
            tick_secs: 1,
            realms: Vec::new(),
        }
    }
}

fn default_checkpoint_rows() -> u32 {
    1000
}

fn default_checkpoint_minutes() -> u32 {
    10
}

impl ApplicationSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(format!("[applications] {m}")));
        if !(1..=90 * 86_400).contains(&self.expire_after_secs) {
            return bad("expire_after_secs must be 1..=7776000".into());
        }
        if self.renewal_window_days > 3650 {
            return bad("renewal_window_days must be 0..=3650".into());
        }
        if !(1..=3600).contains(&self.tick_secs) {
            return bad("tick_secs must be 1..=3600".into());
        }
        crate::account::validate(&self.realms)
            .map_err(|m| ConfigError::Invalid(format!("[applications] {m}")))?;
        for (level, oid) in &self.assurance_policy_oids {
            if !["L1", "L2", "L3"].contains(&level.as_str()) {
                return bad(format!(
                    "assurance_policy_oids: unknown level {level:?} (L1, L2, L3)"
                ));
            }
            if const_oid::ObjectIdentifier::new(oid).is_err() {
                return bad(format!(
                    "assurance_policy_oids.{level}: {oid:?} is not an OID"
                ));
            }
        }
        Ok(())
    }
}

/// Where a plugin runs (`isolation = "worker" | "in_process"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PluginIsolation {
    /// In a `ca-plugin-worker` process of its own (default; third-party plugins).
    #[default]
    Worker,
    /// Inside the appliance process (first-party plugins only).
    InProcess,
}

/// Where a secret value comes from; exactly one field. The value itself is never in the file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SecretSourceConfig {
    /// An environment variable name.
    pub env: Option<String>,
    /// A file readable only by the service user (mode 0600); surrounding whitespace is trimmed.
    pub file: Option<PathBuf>,
}

/// One approved plugin (`[[plugin]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Name; must equal the plugin manifest's name and is what channels list.
    pub name: String,
    /// Path of the shared library (relative to this file).
    pub path: PathBuf,
    /// Approved SHA-256 of the library, hex.
    pub sha256: String,
    /// Where it runs.
    #[serde(default)]
    pub isolation: PluginIsolation,
    /// The plugin's own config object (no secrets: the plugin writes `{{secret:NAME}}`).
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Secrets the host substitutes into the plugin's HTTP actions, by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSourceConfig>,
    /// Egress allowlist (`host:port`); empty = the manifest's defaults.
    #[serde(default)]
    pub egress_hosts: Vec<String>,
    /// Allow plain `http://` to loopback hosts (demo and test vendors only).
    #[serde(default)]
    pub allow_plain_http: bool,
    /// Deadline of one step call, milliseconds (default 5000).
    #[serde(default = "default_step_deadline_ms")]
    pub step_deadline_ms: u64,
    /// Which of the plugin's HTTP actions spend a limited resource: limit class -> URL paths,
    /// exact or a prefix ending in `*` (`{ sms = ["/sms/v1/send"], payout = ["/v2/pay/*"] }`).
    /// The host counts and refuses them before they reach the vendor.
    #[serde(default)]
    pub limited_actions: BTreeMap<LimitClass, Vec<String>>,
}

fn default_step_deadline_ms() -> u64 {
    5000
}

/// `[verification]`: how verification data is protected and driven.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerificationSettings {
    /// Refused: the clear data-key file of earlier versions (the data keys are now wrapped by
    /// the HSM and kept in the database; `ca-appliance data-key rotate` creates them).
    pub data_key: SecretSourceConfig,
    /// Label of the AES-256 key on the `[hsm]` token that wraps the personal-data keys.
    pub wrapping_key: String,
    /// Days after a verification finished when its applicant data is purged (0..=3650; the
    /// result and its evidence are kept).
    pub retention_days: u32,
    /// How often the retention purge runs, seconds (1..=86400).
    pub purge_every_secs: u32,
    /// How often due timers fire and unperformed actions are retried, seconds (1..=3600).
    pub tick_secs: u32,
    /// Limits per subject (one phone number, ID number, USCC or bank account, whichever
    /// channel asks): `[verification.subject_limits]`.
    pub subject_limits: LimitSet,
}

/// Default label of the HSM key wrapping the personal-data keys.
pub const DEFAULT_WRAPPING_KEY: &str = "verification-data-wrap";

impl Default for VerificationSettings {
    fn default() -> Self {
        Self {
            data_key: SecretSourceConfig::default(),
            wrapping_key: DEFAULT_WRAPPING_KEY.into(),
            retention_days: 30,
            purge_every_secs: 3600,
            tick_secs: 1,
            subject_limits: LimitSet::subject_defaults(),
        }
    }
}

/// What a limit counts: verification starts, or one kind of vendor action that costs money or
/// reaches a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitClass {
    /// Verification starts.
    Starts,
    /// SMS sends (a code to a phone).
    Sms,
    /// Carrier real-name checks.
    Carrier,
    /// Bank element checks.
    Bank,
    /// Face liveness sessions.
    Face,
    /// Payouts (micro-deposits: real money).
    Payout,
}

impl LimitClass {
    /// Every class, in a stable order.
    pub const ALL: [LimitClass; 6] = [
        LimitClass::Starts,
        LimitClass::Sms,
        LimitClass::Carrier,
        LimitClass::Bank,
        LimitClass::Face,
        LimitClass::Payout,
    ];

    /// The class's name in config, the database and error answers.
    pub fn name(self) -> &'static str {
        match self {
            LimitClass::Starts => "starts",
            LimitClass::Sms => "sms",
            LimitClass::Carrier => "carrier",
            LimitClass::Bank => "bank",
            LimitClass::Face => "face",
            LimitClass::Payout => "payout",
        }
    }
}

/// One limit: events per rolling hour and per rolling day, and a least gap between two events
/// (the SMS resend cooldown). An absent count is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Most events in any 3600 s.
    #[serde(default)]
    pub per_hour: Option<u32>,
    /// Most events in any 86400 s.
    #[serde(default)]
    pub per_day: Option<u32>,
    /// Least seconds between two events (0 = none; at most 86400).
    #[serde(default)]
    pub cooldown_secs: u32,
}

/// Limits per class; an absent class is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSet {
    /// Verification starts.
    #[serde(default)]
    pub starts: Option<RateLimit>,
    /// SMS sends.
    #[serde(default)]
    pub sms: Option<RateLimit>,
    /// Carrier checks.
    #[serde(default)]
    pub carrier: Option<RateLimit>,
    /// Bank checks.
    #[serde(default)]
    pub bank: Option<RateLimit>,
    /// Face sessions.
    #[serde(default)]
    pub face: Option<RateLimit>,
    /// Payouts.
    #[serde(default)]
    pub payout: Option<RateLimit>,
}

impl LimitSet {
    /// The limit of one class, if any.
    pub fn get(&self, class: LimitClass) -> Option<&RateLimit> {
        match class {
            LimitClass::Starts => self.starts.as_ref(),
            LimitClass::Sms => self.sms.as_ref(),
            LimitClass::Carrier => self.carrier.as_ref(),
            LimitClass::Bank => self.bank.as_ref(),
            LimitClass::Face => self.face.as_ref(),
            LimitClass::Payout => self.payout.as_ref(),
        }
    }

    /// What protects one person when `[verification.subject_limits]` is absent.
    pub fn subject_defaults() -> Self {
        let l = |h, d| {
            Some(RateLimit {
                per_hour: Some(h),
                per_day: Some(d),
                cooldown_secs: 0,
            })
        };
        LimitSet {
            starts: l(20, 50),
            sms: l(10, 20),
            carrier: l(20, 50),
            bank: l(20, 50),
            face: l(10, 30),
            payout: l(3, 10),
        }
    }

    fn validate(&self, what: &str) -> Result<(), ConfigError> {
        for class in LimitClass::ALL {
            if let Some(l) = self.get(class) {
                if l.cooldown_secs > 86_400 {
                    return Err(ConfigError::Invalid(format!(
                        "{what} {}: cooldown_secs must be at most 86400",
                        class.name()
                    )));
                }
            }
        }
        Ok(())
    }
}

impl SecretSourceConfig {
    fn validate(&self, what: &str) -> Result<(), ConfigError> {
        if self.env.is_some() == self.file.is_some() {
            return Err(ConfigError::Invalid(format!(
                "{what} needs exactly one of env, file"
            )));
        }
        Ok(())
    }
}

/// What the OCSP responder answers for a serial its issuer never issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSerialAnswer {
    /// `unknown` (RFC 6960).
    #[default]
    Unknown,
    /// `revoked`, certificateHold, 1970-01-01, extended-revoke (RFC 6960 2.2, CA/B Forum).
    Revoked,
}

/// `[status]`: OCSP and CRL settings; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// Echo request nonces in freshly signed responses (costs one HSM signature per request).
    pub ocsp_nonce: bool,
    /// Answer for never-issued serials of a known issuer.
    pub unknown_serial: UnknownSerialAnswer,
    /// Validity (nextUpdate - thisUpdate) of OCSP responses, hours (8..=240).
    pub ocsp_validity_hours: u32,
    /// Re-sign a response when less than this many hours of validity remain (>= 8).
    pub ocsp_refresh_hours: u32,
    /// Validity of delegated OCSP responder certificates, days (1..=90).
    pub responder_validity_days: u32,
    /// Renew a responder certificate when fewer than this many days remain.
    pub responder_renew_days: u32,
    /// CRL validity (nextUpdate - thisUpdate), hours (1..=240).
    pub crl_validity_hours: u32,
    /// Full and delta CRLs are regenerated at least this often, minutes.
    pub crl_interval_minutes: u32,
    /// Delay between a revocation and the CRL regeneration it triggers, seconds.
    pub crl_delay_secs: u32,
    /// Where CRLs are written for publication (relative to this file; default `crl`).
    pub crl_dir: PathBuf,
    /// How often the pre-signer looks for new or stale responses, seconds.
    pub presign_interval_secs: u32,
    /// Most CertIDs accepted in one OCSP request (RFC 5019 clients send one); more is
    /// `malformedRequest`.
    pub ocsp_max_cert_ids: u32,
    /// Live OCSP signatures (nonce echoes, SHA-256 CertIDs on first demand, unknown serials,
    /// several CertIDs) at once; below `hsm.pool_size`, so issuance and re-signing always find
    /// an HSM session. 0 disables live signing (such requests get `tryLater`).
    pub ocsp_live_concurrency: u32,
    /// Live OCSP signatures per second on average (burst: one second's worth); over it the
    /// pre-signed answer without the nonce, or `tryLater`.
    pub ocsp_live_per_second: u32,
    /// The root key is offline: `serve` never signs the root CRL (it serves the one
    /// `ca-appliance root sign-crl` wrote) and that CRL is valid `root_crl_validity_days`.
    pub root_offline: bool,
    /// Validity of an offline root's CRL, days (1..=400); sign the next one before it ends.
    pub root_crl_validity_days: u32,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            ocsp_nonce: false,
            unknown_serial: UnknownSerialAnswer::Unknown,
            ocsp_validity_hours: 96,
            ocsp_refresh_hours: 48,
            responder_validity_days: 7,
            responder_renew_days: 3,
            crl_validity_hours: 168,
            crl_interval_minutes: 60,
            crl_delay_secs: 2,
            crl_dir: PathBuf::from("crl"),
            presign_interval_secs: 10,
            ocsp_max_cert_ids: 1,
            ocsp_live_concurrency: 1,
            ocsp_live_per_second: 200,
            root_offline: false,
            root_crl_validity_days: 90,
        }
    }
}

impl StatusConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(format!("[status] {m}")));
        if !(1..=400).contains(&self.root_crl_validity_days) {
            return bad("root_crl_validity_days must be 1..=400");
        }
        if !(8..=240).contains(&self.ocsp_validity_hours) {
            return bad("ocsp_validity_hours must be 8..=240");
        }
        if self.ocsp_refresh_hours < 8 || self.ocsp_refresh_hours >= self.ocsp_validity_hours {
            return bad("ocsp_refresh_hours must be >= 8 and below ocsp_validity_hours");
        }
        if !(1..=90).contains(&self.responder_validity_days)
            || self.responder_renew_days >= self.responder_validity_days
        {
            return bad("responder_validity_days must be 1..=90 and above responder_renew_days");
        }
        if !(1..=240).contains(&self.crl_validity_hours) {
            return bad("crl_validity_hours must be 1..=240");
        }
        if self.crl_interval_minutes == 0
            || self.crl_interval_minutes / 60 >= self.crl_validity_hours
        {
            return bad("crl_interval_minutes must be above 0 and well below crl_validity_hours");
        }
        if !(1..=3600).contains(&self.presign_interval_secs) || self.crl_delay_secs > 3600 {
            return bad("presign_interval_secs must be 1..=3600 and crl_delay_secs <= 3600");
        }
        if !(1..=64).contains(&self.ocsp_max_cert_ids) {
            return bad("ocsp_max_cert_ids must be 1..=64");
        }
        Ok(())
    }
}

/// Listener addresses and TLS material for the mTLS API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// mTLS API listener (operators and channels).
    pub api_addr: SocketAddr,
    /// Plain-HTTP listener for relying parties (CA certificates, OCSP, CRLs).
    pub public_addr: SocketAddr,
    /// Base URL relying parties use to reach the public listener; written into certificates.
    pub public_url: String,
    /// Server certificate chain (PEM) for the API listener.
    pub tls_cert: PathBuf,
    /// Server private key (PEM) for the API listener.
    pub tls_key: PathBuf,
    /// Trust anchor(s) (PEM) that client certificates must chain to.
    pub client_ca: PathBuf,
    /// Optional CRL file(s) (PEM or DER) of the client CA: a listed client certificate is
    /// refused at the handshake. Read at start.
    #[serde(default)]
    pub client_crl: Option<PathBuf>,
    /// Largest request body accepted, in bytes (default 64 KiB).
    #[serde(default = "default_body_limit")]
    pub max_body_bytes: usize,
    /// Concurrent connections per listener (default 4096); lowered at start to fit the
    /// open-files limit. At the cap, a new connection evicts the oldest one with no request in
    /// progress, or is closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client has to complete the TLS handshake on the API listener (default 10).
    #[serde(default = "default_handshake_secs")]
    pub tls_handshake_timeout_secs: u64,
    /// Seconds a client has to send a complete request head, counted from the connection
    /// being ready (new connection) or from the first byte of a keep-alive request (default 10).
    #[serde(default = "default_header_secs")]
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a complete request body, counted from its head (default 30).
    #[serde(default = "default_body_secs")]
    pub body_read_timeout_secs: u64,
    /// Seconds a keep-alive connection may stay idle between requests, or stall while its
    /// response is written (default 60).
    #[serde(default = "default_idle_secs")]
    pub idle_timeout_secs: u64,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT before the remaining
    /// connections are dropped (default 10).
    #[serde(default = "default_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Threads of the public listener, each with its own runtime, accepting from one shared socket
    /// (0, the default: one per available core).
    #[serde(default)]
    pub public_threads: usize,
}

fn default_body_limit() -> usize {
    64 * 1024
}

fn default_max_connections() -> usize {
    4096
}

fn default_handshake_secs() -> u64 {
    10
}

fn default_header_secs() -> u64 {
    10
}

fn default_body_secs() -> u64 {
    30
}

fn default_idle_secs() -> u64 {
    60
}

fn default_grace_secs() -> u64 {
    10
}

/// Where the HSM PIN comes from. Exactly one field must be set.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PinConfig {
    /// A file readable only by the service user (mode 0600).
    pub file: Option<PathBuf>,
    /// An environment variable name.
    pub env: Option<String>,
    /// A systemd credential name (read from `$CREDENTIALS_DIRECTORY`).
    pub systemd_credential: Option<String>,
}

/// The PKCS#11 module and token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmSection {
    /// Path of the PKCS#11 module (`libsofthsm2.so` for the demo).
    pub module: PathBuf,
    /// Label of the token holding the CA keys.
    pub token_label: String,
    /// Where the user PIN comes from; never the PIN itself.
    pub pin: PinConfig,
    /// Logged-in sessions kept open (default 2: one per core).
    #[serde(default = "default_pool")]
    pub pool_size: usize,
    /// SoftHSM2 only: its configuration file, exported as `SOFTHSM2_CONF` before the module loads.
    pub softhsm2_conf: Option<PathBuf>,
    /// The token's SM2 constants (`[hsm.sm2]`); absent when the token offers no SM2.
    pub sm2: Option<Sm2MechanismsConfig>,
}

/// `[hsm.sm2]`: a `preset` (`ca-softtoken`, `ca-softtoken-token-hash`) or all four values of a
/// vendor's PKCS#11 SM2 constants (`key_type`, `keygen_mechanism`, `sign_mechanism` as
/// numbers, e.g. `0x80534D32`; `hashing` = `host` | `token`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sm2MechanismsConfig {
    /// A named preset; excludes the four values below.
    pub preset: Option<String>,
    /// CKA_KEY_TYPE of SM2 keys.
    pub key_type: Option<u64>,
    /// The key-pair generation mechanism.
    pub keygen_mechanism: Option<u64>,
    /// The signing mechanism.
    pub sign_mechanism: Option<u64>,
    /// `host` (the token signs e = SM3(Z || M)) or `token` (it hashes the message itself).
    pub hashing: Option<String>,
    /// The GM/T 0009 signer ID the SM2 CA keys sign with (default `1234567812345678`; another
    /// needs `host` hashing). Relying parties must verify with the same ID.
    pub signer_id: Option<String>,
}

impl HsmSection {
    /// The configured SM2 signer ID, if not the default.
    pub fn sm2_signer_id(&self) -> Option<String> {
        self.sm2.as_ref().and_then(|s| s.signer_id.clone())
    }

    /// The SM2 table `[hsm.sm2]` describes, checked: a preset, or all four values.
    pub fn sm2_mechanisms(&self) -> Result<Option<hsm::Sm2Mechanisms>, ConfigError> {
        let Some(sm2) = &self.sm2 else {
            return Ok(None);
        };
        let invalid = |e: String| ConfigError::Invalid(format!("hsm.sm2: {e}"));
        let table = self.sm2_table(sm2, &invalid)?;
        if let Some(id) = &sm2.signer_id {
            if id.is_empty() || id.len() > 8191 {
                return Err(invalid("signer_id must be 1 to 8191 bytes".into()));
            }
            if id != hsm::DEFAULT_SIGNER_ID && table.hashing == hsm::Sm2Hashing::Token {
                return Err(invalid(
                    "a token that hashes SM2 itself signs with the default signer_id only".into(),
                ));
            }
        }
        Ok(Some(table))
    }

    fn sm2_table(
        &self,
        sm2: &Sm2MechanismsConfig,
        invalid: &dyn Fn(String) -> ConfigError,
    ) -> Result<hsm::Sm2Mechanisms, ConfigError> {
        let explicit = (
            sm2.key_type,
            sm2.keygen_mechanism,
            sm2.sign_mechanism,
            sm2.hashing.as_deref(),
        );
        match (&sm2.preset, explicit) {
            (Some(name), (None, None, None, None)) => {
                hsm::Sm2Mechanisms::preset(name).map_err(|e| invalid(e.to_string()))
            }
            (None, (Some(key_type), Some(keygen_mechanism), Some(sign_mechanism), Some(h))) => {
                let hashing = h
                    .parse()
                    .map_err(|e: hsm::HsmError| invalid(e.to_string()))?;
                Ok(hsm::Sm2Mechanisms {
                    key_type,
                    keygen_mechanism,
                    sign_mechanism,
                    hashing,
                })
            }
            _ => Err(invalid(
                "give either preset or all of key_type, keygen_mechanism, sign_mechanism, hashing"
                    .into(),
            )),
        }
    }
}

fn default_pool() -> usize {
    2
}

/// The database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (embedded default).
    pub url: String,
}

/// One CA of the hierarchy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// Short name used in URLs and profiles (`root`, `personal`, `organisation`).
    pub name: String,
    /// The CA that signs this one; absent for the root.
    pub parent: Option<String>,
    /// Key type generated in the HSM (`ec-p256`, `ec-p384`, `rsa-2048`, `rsa-3072`, `rsa-4096`).
    pub key: String,
    /// Subject DN in RFC 4514 form, e.g. `CN=Demo Root CA,O=Demo,C=CN`.
    pub subject: String,
    /// Validity of the CA certificate in days.
    pub validity_days: u32,
}

/// What role a client certificate grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientRole {
    /// CA operator: every API action.
    Operator,
    /// A channel: only what its [`ChannelConfig`] allows.
    Channel,
    /// Registration-authority officer: reviews applications and reads their materials.
    RaOfficer,
    /// Auditor: reads applications, certificates and the audit log; changes nothing.
    Auditor,
    /// Relying party (a portal, an e-bidding system): login challenges and signature checks.
    RelyingParty,
}

impl ClientRole {
    /// The role's name as written in the config and in audit actors.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::Operator => "operator",
            ClientRole::Channel => "channel",
            ClientRole::RaOfficer => "ra_officer",
            ClientRole::Auditor => "auditor",
            ClientRole::RelyingParty => "relying_party",
        }
    }
}

/// Maps a verified client certificate to a caller, by exactly one of its SHA-256
/// fingerprint, a subjectAltName value, or its single subject common name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The certificate's subject common name (exact; a certificate with several CNs is refused).
    #[serde(default)]
    pub common_name: Option<String>,
    /// SHA-256 of the certificate DER, hex (colons allowed).
    #[serde(default)]
    pub fingerprint_sha256: Option<String>,
    /// A dNSName, rfc822Name or URI subjectAltName value the certificate carries.
    #[serde(default)]
    pub san: Option<String>,
    /// Role granted.
    pub role: ClientRole,
    /// For `role = "channel"`: the channel's name.
    pub channel: Option<String>,
}

/// A partner platform and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Channel name.
    pub name: String,
    /// Profiles it may request.
    pub profiles: Vec<String>,
    /// Verification plugins (by `[[plugin]]` name) it may start verifications with.
    #[serde(default)]
    pub verifications: Vec<String>,
    /// Limits on everything this channel's verifications spend (absent = unlimited).
    #[serde(default)]
    pub limits: LimitSet,
    /// Application policies (from its channel file; an inline `[[channel]]` has none).
    #[serde(skip)]
    pub policies: Vec<crate::application::policy::Policy>,
    /// Channel plugins (by `[[plugin]]` name) that receive this channel's application events.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// The channel plugin that sends this channel's SMS and e-mail (the appliance's codes).
    #[serde(default)]
    pub notifier: Option<String>,
}

/// `[contact]`: one-time codes, captchas and channel-plugin delivery (all optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactSettings {
    /// Seconds a one-time code is accepted (30..=3600, default 300).
    pub code_ttl_secs: u32,
    /// Seconds before another code may be sent for the same step (0..=3600, default 60).
    pub code_resend_secs: u32,
    /// Wrong tries before a code is void (1..=20, default 5).
    pub code_max_attempts: u32,
    /// Seconds a captcha is accepted (10..=3600, default 120).
    pub captcha_ttl_secs: u32,
    /// Attempts at a delivery before it is given up as failed (1..=100, default 10).
    pub delivery_max_attempts: u32,
    /// Delay before the first retry of a delivery, seconds, doubling (1..=3600, default 2).
    pub delivery_retry_secs: u32,
    /// Longest delay between retries, seconds (1..=86400, default 600).
    pub delivery_max_backoff_secs: u32,
}

impl Default for ContactSettings {
    fn default() -> Self {
        ContactSettings {
            code_ttl_secs: 300,
            code_resend_secs: 60,
            code_max_attempts: 5,
            captcha_ttl_secs: 120,
            delivery_max_attempts: 10,
            delivery_retry_secs: 2,
            delivery_max_backoff_secs: 600,
        }
    }
}

impl ContactSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let ranges = [
            ("code_ttl_secs", self.code_ttl_secs, 30, 3600),
            ("code_resend_secs", self.code_resend_secs, 0, 3600),
            ("code_max_attempts", self.code_max_attempts, 1, 20),
            ("captcha_ttl_secs", self.captcha_ttl_secs, 10, 3600),
            ("delivery_max_attempts", self.delivery_max_attempts, 1, 100),
            ("delivery_retry_secs", self.delivery_retry_secs, 1, 3600),
            (
                "delivery_max_backoff_secs",
                self.delivery_max_backoff_secs,
                1,
                86_400,
            ),
        ];
        for (name, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "[contact] {name} must be {lo}..={hi}"
                )));
            }
        }
        Ok(())
    }
}

impl ApplianceConfig {
    /// Reads, parses and validates `path`; relative paths inside become relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: ApplianceConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        if let Some(file) = &config.ceremony {
            if !config.cas.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{}: [[ca]] tables and `ceremony = {:?}` both given; keep the CAs in the \
                     ceremony file only",
                    path.display(),
                    file.display()
                )));
            }
            config.cas = load_ceremony_file(file)?;
        }
        config.load_channel_files()?;
        config.validate()?;
        if let Some(e) = &config.enroll {
            if !config.channels.iter().any(|c| c.name == e.channel) {
                return Err(ConfigError::Invalid(format!(
                    "[enroll] channel {:?} is not a configured channel",
                    e.channel
                )));
            }
        }
        Ok(config)
    }

    /// The same configuration with the CAs of the ceremony file `plan` (`ceremony --plan`),
    /// validated together with the rest.
    pub fn with_ceremony_plan(mut self, plan: &Path) -> Result<Self, ConfigError> {
        self.cas = load_ceremony_file(plan)?;
        self.ceremony = Some(plan.to_owned());
        self.validate()?;
        Ok(self)
    }

    /// Adds the channels of `channels_dir` (and their clients) to the inline ones.
    fn load_channel_files(&mut self) -> Result<(), ConfigError> {
        let Some(dir) = &self.channels_dir else {
            return Ok(());
        };
        let plugins: Vec<String> = self.plugins.iter().map(|p| p.name.clone()).collect();
        let loaded =
            crate::application::channel::load_dir(dir, &|p: &str| plugins.iter().any(|n| n == p))
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for l in loaded {
            if self.channels.iter().any(|c| c.name == l.channel.name) {
                return Err(ConfigError::Invalid(format!(
                    "channel {} is both inline and in {}",
                    l.channel.name,
                    dir.display()
                )));
            }
            // Duplicates across files and inline entries: `validate_clients`.
            self.clients.extend(l.clients);
            self.channels.push(l.channel);
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.server.tls_cert);
        fix(&mut self.server.tls_key);
        fix(&mut self.server.client_ca);
        if let Some(f) = self.server.client_crl.as_mut() {
            fix(f);
        }
        fix(&mut self.profiles_dir);
        fix(&mut self.ca_output_dir);
        if let Some(f) = self.ceremony.as_mut() {
            fix(f);
        }
        fix(&mut self.status.crl_dir);
        if let Some(d) = self.channels_dir.as_mut() {
            fix(d);
        }
        for plugin in &mut self.plugins {
            fix(&mut plugin.path);
            for secret in plugin.secrets.values_mut() {
                if let Some(f) = secret.file.as_mut() {
                    fix(f);
                }
            }
        }
        if let Some(f) = self.verification.data_key.file.as_mut() {
            fix(f);
        }
        for rp in &mut self.relying_parties {
            rp.resolve_paths(base);
        }
        if let Some(f) = self.hsm.pin.file.as_mut() {
            fix(f);
        }
        if let Some(f) = self.root_hsm.as_mut().and_then(|r| r.pin.file.as_mut()) {
            fix(f);
        }
        if let Some(f) = self.hsm.softhsm2_conf.as_mut() {
            fix(f);
        }
        if let Some(rest) = self.database.url.strip_prefix("sqlite://") {
            let p = Path::new(rest);
            if p.is_relative() {
                self.database.url = format!("sqlite://{}", base.join(p).display());
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let pin = &self.hsm.pin;
        let sources = [
            pin.file.is_some(),
            pin.env.is_some(),
            pin.systemd_credential.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(ConfigError::Invalid(
                "[hsm.pin] needs exactly one of file, env, systemd_credential".into(),
            ));
        }
        self.hsm.sm2_mechanisms()?;
        if !(1..=64).contains(&self.hsm.pool_size) {
            return Err(ConfigError::Invalid("hsm.pool_size must be 1..=64".into()));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.server.max_body_bytes) {
            return Err(ConfigError::Invalid(
                "server.max_body_bytes must be 1 KiB..=16 MiB".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return Err(ConfigError::Invalid(
                "server.max_connections must be 1..=1000000".into(),
            ));
        }
        if self.server.public_threads > 256 {
            return Err(ConfigError::Invalid(
                "server.public_threads must be 0..=256 (0: one per core)".into(),
            ));
        }
        let timeouts = [
            (
                "tls_handshake_timeout_secs",
                self.server.tls_handshake_timeout_secs,
            ),
            (
                "header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            ("body_read_timeout_secs", self.server.body_read_timeout_secs),
            ("idle_timeout_secs", self.server.idle_timeout_secs),
            ("shutdown_grace_secs", self.server.shutdown_grace_secs),
        ];
        for (name, secs) in timeouts {
            if !(1..=3600).contains(&secs) {
                return Err(ConfigError::Invalid(format!(
                    "server.{name} must be 1..=3600 seconds"
                )));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, ca) in self.cas.iter().enumerate() {
            if !is_simple_name(&ca.name) {
                return Err(ConfigError::Invalid(format!(
                    "CA name {:?} must be lowercase letters, digits and '-'",
                    ca.name
                )));
            }
            match (&ca.parent, i) {
                (None, 0) => {}
                // A second root is another hierarchy (the SM2 one beside the ECDSA one); it
                // must be a different algorithm family, so one chain never mixes them.
                (None, _) if !ca.key.starts_with("sm2") || self.cas[0].key.starts_with("sm2") => {
                    return Err(ConfigError::Invalid(format!(
                        "CA {} has no parent; only the first [[ca]] and one SM2 root beside it are roots",
                        ca.name
                    )))
                }
                (None, _) => {}
                (Some(p), _) if !names.contains(p.as_str()) => {
                    return Err(ConfigError::Invalid(format!(
                        "CA {}'s parent {p} must be listed before it",
                        ca.name
                    )))
                }
                _ => {}
            }
            ca.key.parse::<hsm::KeyKind>().map_err(|_| {
                ConfigError::Invalid(format!("CA {}: unknown key type {:?}", ca.name, ca.key))
            })?;
            if !names.insert(ca.name.as_str()) {
                return Err(ConfigError::Invalid(format!("CA {} listed twice", ca.name)));
            }
        }
        self.status.validate()?;
        self.applications.validate()?;
        self.login.validate().map_err(ConfigError::Invalid)?;
        let live = self.status.ocsp_live_concurrency as usize;
        if live > 0 && live >= self.hsm.pool_size {
            return Err(ConfigError::Invalid(format!(
                "[status] ocsp_live_concurrency ({live}) must be below hsm.pool_size ({}) so that \
                 live OCSP signing never takes every HSM session (0 disables live signing)",
                self.hsm.pool_size
            )));
        }
        if self.cas.is_empty() {
            return Err(ConfigError::Invalid("at least one [[ca]] is needed".into()));
        }
        crate::config::validate_clients(&self.clients)?;
        crate::relying::callback::validate(&self.relying_parties, &self.clients)?;
        if let Some(root) = &self.root_hsm {
            let p = &root.pin;
            let sources = [
                p.file.is_some(),
                p.env.is_some(),
                p.systemd_credential.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(ConfigError::Invalid(
                    "[root_hsm.pin] needs exactly one of file, env, systemd_credential".into(),
                ));
            }
            if !self.status.root_offline || root.token_label == self.hsm.token_label {
                return Err(ConfigError::Invalid(
                    "[root_hsm] names a token other than [hsm]'s and needs [status] \
                     root_offline = true (serve never opens it)"
                        .into(),
                ));
            }
        }
        if !(1..=1_000_000).contains(&self.audit.checkpoint_rows)
            || !(1..=1440).contains(&self.audit.checkpoint_minutes)
        {
            return Err(ConfigError::Invalid(
                "[audit] checkpoint_rows must be 1..=1000000 and checkpoint_minutes 1..=1440"
                    .into(),
            ));
        }
        for client in &self.clients {
            match (client.role, &client.channel) {
                (ClientRole::Channel, Some(name)) => {
                    if !self.channels.iter().any(|c| &c.name == name) {
                        return Err(ConfigError::Invalid(format!(
                            "client {} names unknown channel {name}",
                            client.label()
                        )));
                    }
                }
                (ClientRole::Channel, None) => {
                    return Err(ConfigError::Invalid(format!(
                        "client {} has role channel but no channel",
                        client.label()
                    )))
                }
                (role, Some(_)) => {
                    return Err(ConfigError::Invalid(format!(
                        "{} client {} must not name a channel",
                        role.as_str(),
                        client.label()
                    )))
                }
                (_, None) => {}
            }
        }
        self.validate_plugins()
    }

    fn validate_plugins(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for p in &self.plugins {
            if !is_simple_name(&p.name) {
                return Err(ConfigError::Invalid(format!(
                    "plugin name {:?} must be lowercase letters, digits and '-'",
                    p.name
                )));
            }
            if !names.insert(p.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "plugin {} listed twice",
                    p.name
                )));
            }
            let sha = p.sha256.trim();
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!(
                    "plugin {}: sha256 must be 64 hex characters",
                    p.name
                )));
            }
            for (name, source) in &p.secrets {
                source.validate(&format!("plugin {} secret {name}", p.name))?;
            }
            for (class, prefixes) in &p.limited_actions {
                if *class == LimitClass::Starts {
                    return Err(ConfigError::Invalid(format!(
                        "plugin {}: limited_actions cannot name starts (every start counts)",
                        p.name
                    )));
                }
                if prefixes.is_empty() || prefixes.iter().any(|x| !x.starts_with('/')) {
                    return Err(ConfigError::Invalid(format!(
                        "plugin {}: limited_actions {} needs URL paths starting with /",
                        p.name,
                        class.name()
                    )));
                }
            }
            if !(10..=60_000).contains(&p.step_deadline_ms) {
                return Err(ConfigError::Invalid(format!(
                    "plugin {}: step_deadline_ms must be 10..=60000",
                    p.name
                )));
            }
        }
        self.verification
            .subject_limits
            .validate("[verification.subject_limits]")?;
        self.contact.validate()?;
        for channel in &self.channels {
            channel
                .limits
                .validate(&format!("channel {} limits", channel.name))?;
            for v in &channel.verifications {
                if !names.contains(v.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "channel {} lists unknown verification plugin {v}",
                        channel.name
                    )));
                }
            }
            for p in channel.plugins.iter().chain(channel.notifier.iter()) {
                if !names.contains(p.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "channel {} names unknown channel plugin {p}",
                        channel.name
                    )));
                }
            }
        }
        if self.verification.data_key.env.is_some() || self.verification.data_key.file.is_some() {
            return Err(ConfigError::Invalid(
                "[verification] data_key: a data key in a clear file or variable is no longer \
                 accepted. The personal-data keys are now wrapped by the HSM and kept in the \
                 database: remove data_key, run `ca-appliance data-key rotate --config FILE` once, \
                 and shred the old key file. Verifications sealed under the old key were dropped \
                 by the 0005 migration."
                    .into(),
            ));
        }
        if self.verification.wrapping_key.is_empty() || self.verification.wrapping_key.len() > 128 {
            return Err(ConfigError::Invalid(
                "[verification] wrapping_key must be a key label of 1 to 128 bytes".into(),
            ));
        }
        if self.verification.retention_days > 3650 {
            return Err(ConfigError::Invalid(
                "[verification] retention_days must be 0..=3650".into(),
            ));
        }
        if !(1..=86_400).contains(&self.verification.purge_every_secs) {
            return Err(ConfigError::Invalid(
                "[verification] purge_every_secs must be 1..=86400".into(),
            ));
        }
        if !(1..=3600).contains(&self.verification.tick_secs) {
            return Err(ConfigError::Invalid(
                "[verification] tick_secs must be 1..=3600".into(),
            ));
        }
        Ok(())
    }

    /// Loads every profile from `profiles_dir` and checks each names a configured CA.
    pub fn load_profiles(&self) -> Result<BTreeMap<String, Profile>, ConfigError> {
        let profiles = crate::profile::load_dir(&self.profiles_dir, &self.server.public_url)?;
        for profile in profiles.values() {
            crate::ca::lint::profile(profile).map_err(|e| {
                ConfigError::Invalid(format!(
                    "profile {} could only produce certificates the lint refuses: {e}",
                    profile.name
                ))
            })?;
            if !self.cas.iter().any(|c| c.name == profile.issuer) {
                return Err(ConfigError::Invalid(format!(
                    "profile {} names unknown issuer CA {}",
                    profile.name, profile.issuer
                )));
            }
        }
        for channel in &self.channels {
            for p in &channel.profiles {
                if !profiles.contains_key(p) {
                    return Err(ConfigError::Invalid(format!(
                        "channel {} allows unknown profile {p}",
                        channel.name
                    )));
                }
            }
        }
        Ok(profiles)
    }

    /// The offline root token's settings (`[root_hsm]`), if configured.
    pub fn root_hsm_config(&self) -> Option<hsm::HsmConfig> {
        let root = self.root_hsm.as_ref()?;
        let pin = &root.pin;
        let source = if let Some(f) = &pin.file {
            hsm::PinSource::File(f.clone())
        } else if let Some(e) = &pin.env {
            hsm::PinSource::Env(e.clone())
        } else {
            hsm::PinSource::SystemdCredential(pin.systemd_credential.clone().unwrap_or_default())
        };
        Some(hsm::HsmConfig {
            module: self.hsm.module.clone(),
            token_label: root.token_label.clone(),
            pin: source,
            pool_size: 1,
            // The root token is reached through the same module: the same vendor constants.
            sm2: self.hsm.sm2_mechanisms().ok().flatten(),
            sm2_signer_id: self.hsm.sm2_signer_id(),
        })
    }

    /// The HSM settings in the form the `hsm` crate takes.
    pub fn hsm_config(&self) -> hsm::HsmConfig {
        let pin = &self.hsm.pin;
        let source = if let Some(f) = &pin.file {
            hsm::PinSource::File(f.clone())
        } else if let Some(e) = &pin.env {
            hsm::PinSource::Env(e.clone())
        } else {
            hsm::PinSource::SystemdCredential(pin.systemd_credential.clone().unwrap_or_default())
        };
        hsm::HsmConfig {
            module: self.hsm.module.clone(),
            token_label: self.hsm.token_label.clone(),
            pin: source,
            pool_size: self.hsm.pool_size,
            sm2: self.hsm.sm2_mechanisms().ok().flatten(),
            sm2_signer_id: self.hsm.sm2_signer_id(),
        }
    }
}

/// A ceremony file: only `[[ca]]` tables (which CAs, key types, subjects, validities).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CeremonyFile {
    #[serde(default)]
    ca: Vec<CaConfig>,
}

/// Reads the `[[ca]]` tables of a ceremony file (checked with the rest of the configuration).
pub fn load_ceremony_file(path: &Path) -> Result<Vec<CaConfig>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: CeremonyFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if file.ca.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{}: no [[ca]] table; the ceremony file lists the CAs to create, root first",
            path.display()
        )));
    }
    Ok(file.ca)
}

/// Lowercase ASCII letters, digits and dashes: safe in URLs, file names and key labels.
pub fn is_simple_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// How a `[[client]]` entry identifies a certificate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientMatch {
    /// SHA-256 of the certificate DER (lowercase hex, no colons).
    Fingerprint(String),
    /// A subjectAltName value (dNSName, rfc822Name or URI).
    San(String),
    /// The single subject common name.
    CommonName(String),
}

impl ClientConfig {
    /// What this entry matches on; `None` unless exactly one of the three fields is set.
    pub fn matcher(&self) -> Option<ClientMatch> {
        match (&self.fingerprint_sha256, &self.san, &self.common_name) {
            (Some(f), None, None) => Some(ClientMatch::Fingerprint(
                f.chars()
                    .filter(|c| *c != ':')
                    .collect::<String>()
                    .to_ascii_lowercase(),
            )),
            (None, Some(s), None) => Some(ClientMatch::San(s.clone())),
            (None, None, Some(c)) => Some(ClientMatch::CommonName(c.clone())),
            _ => None,
        }
    }

    /// A name for messages: whichever identifier the entry uses.
    pub fn label(&self) -> String {
        match self.matcher() {
            Some(ClientMatch::Fingerprint(f)) => format!("fingerprint {f}"),
            Some(ClientMatch::San(s)) => format!("san {s}"),
            Some(ClientMatch::CommonName(c)) => format!("common_name {c}"),
            None => "(unidentified)".into(),
        }
    }
}

/// Each `[[client]]` names exactly one identifier, well formed, and no two name the same one.
pub fn validate_clients(clients: &[ClientConfig]) -> Result<(), ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for client in clients {
        let Some(m) = client.matcher() else {
            return Err(ConfigError::Invalid(
                "each [[client]] needs exactly one of fingerprint_sha256, san, common_name".into(),
            ));
        };
        let ok = match &m {
            ClientMatch::Fingerprint(f) => {
                f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit())
            }
            ClientMatch::San(s) | ClientMatch::CommonName(s) => {
                !s.trim().is_empty() && s.len() <= 255 && !s.chars().any(char::is_control)
            }
        };
        if !ok {
            return Err(ConfigError::Invalid(format!(
                "client {}: malformed identifier (fingerprint_sha256 is 64 hex digits; san and \
                 common_name 1..=255 characters)",
                client.label()
            )));
        }
        if !seen.insert(m) {
            return Err(ConfigError::Invalid(format!(
                "client {} is listed twice",
                client.label()
            )));
        }
    }
    Ok(())
}
