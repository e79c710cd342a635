//! Certificate profiles: what a certificate issued under a name may contain.
//!
//! A profile is a TOML file under `config/profiles/`. It is parsed into typed, validated values
//! once at start-up, so issuance never meets an unknown key usage or a malformed OID.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use const_oid::ObjectIdentifier;
use serde::Deserialize;
use x509_cert::ext::pkix::KeyUsages;

/// Errors loading a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The directory or a file could not be read.
    #[error("cannot read profile {path}: {reason}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A profile file is not valid.
    #[error("profile {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One attribute of the subject DN template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubjectAttribute {
    attr: String,
    value: String,
    #[serde(default)]
    optional: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUrls {
    ocsp: Option<String>,
    ca_issuers: Option<String>,
    crl: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    issuer: String,
    key_types: Vec<String>,
    validity_days: u32,
    key_usage: Vec<String>,
    #[serde(default)]
    extended_key_usage: Vec<String>,
    #[serde(default)]
    policy_oids: Vec<String>,
    subject: Vec<RawSubjectAttribute>,
    #[serde(default)]
    email_san: bool,
    #[serde(default)]
    allow_certificate_hold: bool,
    /// Partition the CRL of this profile's certificates into this many shards (0: one CRL).
    #[serde(default)]
    crl_shards: u16,
    /// The least assurance level (`L1`..`L3`) an application must reach for this profile.
    #[serde(default)]
    min_level: Option<String>,
    /// A dual-certificate signing profile (GM/T 0034): the profile of its encryption half.
    #[serde(default)]
    encryption_profile: Option<String>,
    urls: RawUrls,
}

/// A DN attribute type a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnAttribute {
    /// commonName (2.5.4.3), at most 64 characters.
    CommonName,
    /// organizationName (2.5.4.10), at most 64.
    Organization,
    /// organizationalUnitName (2.5.4.11), at most 64.
    OrganizationalUnit,
    /// countryName (2.5.4.6), exactly two letters, PrintableString.
    Country,
    /// localityName (2.5.4.7), at most 128.
    Locality,
    /// stateOrProvinceName (2.5.4.8), at most 128.
    State,
    /// serialNumber (2.5.4.5), at most 64, PrintableString.
    SerialNumber,
    /// organizationIdentifier (2.5.4.97), at most 64 (e.g. a USCC).
    OrganizationIdentifier,
}

impl DnAttribute {
    /// The attribute's OID.
    pub fn oid(self) -> ObjectIdentifier {
        use const_oid::db::rfc4519;
        match self {
            Self::CommonName => rfc4519::CN,
            Self::Organization => rfc4519::O,
            Self::OrganizationalUnit => rfc4519::OU,
            Self::Country => rfc4519::C,
            Self::Locality => rfc4519::L,
            Self::State => rfc4519::ST,
            Self::SerialNumber => rfc4519::SERIAL_NUMBER,
            Self::OrganizationIdentifier => ObjectIdentifier::new_unwrap("2.5.4.97"),
        }
    }

    /// The attribute type of `oid`, if a template may use it.
    pub fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        [
            Self::CommonName,
            Self::Organization,
            Self::OrganizationalUnit,
            Self::Country,
            Self::Locality,
            Self::State,
            Self::SerialNumber,
            Self::OrganizationIdentifier,
        ]
        .into_iter()
        .find(|a| a.oid() == oid)
    }

    /// RFC 5280 upper bound on the value's length in characters.
    pub fn max_len(self) -> usize {
        match self {
            Self::Country => 2,
            Self::Locality | Self::State => 128,
            _ => 64,
        }
    }

    /// Whether the value is encoded as PrintableString (else UTF8String).
    pub fn printable(self) -> bool {
        matches!(self, Self::Country | Self::SerialNumber)
    }
}

impl FromStr for DnAttribute {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "CN" => Self::CommonName,
            "O" => Self::Organization,
            "OU" => Self::OrganizationalUnit,
            "C" => Self::Country,
            "L" => Self::Locality,
            "ST" => Self::State,
            "serialNumber" => Self::SerialNumber,
            "organizationIdentifier" => Self::OrganizationIdentifier,
            other => return Err(format!("unknown DN attribute {other:?}")),
        })
    }
}

/// A subject DN attribute built from a template such as `"{name}"`.
#[derive(Debug, Clone)]
pub struct SubjectTemplate {
    /// The attribute type.
    pub attr: DnAttribute,
    /// Literal text with `{field}` placeholders filled from the verified subject attributes.
    pub value: String,
    /// Leave the attribute out when a placeholder has no value (instead of refusing).
    pub optional: bool,
}

/// A validated certificate profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Profile name, as requested by callers.
    pub name: String,
    /// Name of the issuing CA.
    pub issuer: String,
    /// Subject key types accepted from CSRs.
    pub key_types: Vec<hsm::KeyKind>,
    /// Certificate lifetime in days.
    pub validity_days: u32,
    /// keyUsage bits (the extension is always critical).
    pub key_usage: x509_cert::ext::pkix::KeyUsage,
    /// extendedKeyUsage OIDs (non-critical; omitted when empty).
    pub extended_key_usage: Vec<ObjectIdentifier>,
    /// certificatePolicies OIDs.
    pub policy_oids: Vec<ObjectIdentifier>,
    /// Subject DN, most significant attribute first.
    pub subject: Vec<SubjectTemplate>,
    /// Put the subject's `email` into a subjectAltName rfc822Name.
    pub email_san: bool,
    /// May certificates of this profile be put on hold (forbidden by the CA/B Forum BR).
    pub allow_certificate_hold: bool,
    /// AIA OCSP URL.
    pub ocsp_url: Option<String>,
    /// AIA caIssuers URL.
    pub ca_issuers_url: Option<String>,
    /// CRL distribution point URL.
    pub crl_url: Option<String>,
    /// Number of CRL shards (partitioned CRLs); 0: the CA's one CRL.
    pub crl_shards: u16,
    /// The least assurance level an application must reach (`level_too_low` otherwise).
    pub min_level: Option<crate::relying::Level>,
    /// Dual certificates (GM/T 0034): the profile the encryption certificate beside a
    /// certificate of this one is issued under (its key pair made by `keymgmt`).
    pub encryption_profile: Option<String>,
}

/// Most CRL shards a profile may have.
pub const MAX_CRL_SHARDS: u16 = 256;

impl Profile {
    /// The CRL shard a certificate with serial content octets `serial` belongs to, chosen at
    /// issuance from the serial (uniform: serials are random), `None` when not sharded.
    pub fn crl_shard(&self, serial: &[u8]) -> Option<u16> {
        crl_shard_of(serial, self.crl_shards)
    }
}

/// Shard of `serial` among `shards` (its last two octets modulo `shards`); `None` below 2.
pub fn crl_shard_of(serial: &[u8], shards: u16) -> Option<u16> {
    if shards < 2 {
        return None;
    }
    let tail = match serial {
        [.., a, b] => u16::from_be_bytes([*a, *b]),
        [b] => u16::from(*b),
        [] => 0,
    };
    Some(tail % shards)
}

/// The file name of shard `shard` of `profile`'s CRL under the CA generation `stem`.
pub fn crl_shard_file(stem: &str, profile: &str, shard: u16) -> String {
    format!("{stem}-{profile}-shard{shard}.crl")
}

/// The shard CRL URL: `crl_url` (the CA generation's CRL URL) with its file replaced by
/// [`crl_shard_file`]. Certificates carry it as their CRL distribution point, and the shard
/// CRL names it in its issuingDistributionPoint (the two must be byte-identical).
pub fn crl_shard_url(crl_url: &str, stem: &str, profile: &str, shard: u16) -> String {
    let base = crl_url.rsplit_once('/').map_or(crl_url, |(b, _)| b);
    format!("{base}/{}", crl_shard_file(stem, profile, shard))
}

/// Loads every `*.toml` in `dir`, substituting `{public_url}` in URLs.
pub fn load_dir(dir: &Path, public_url: &str) -> Result<BTreeMap<String, Profile>, ProfileError> {
    let read_err = |reason: String| ProfileError::Read {
        path: dir.to_owned(),
        reason,
    };
    let mut out = BTreeMap::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| read_err(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).map_err(|e| ProfileError::Read {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let profile = parse(&text, public_url).map_err(|reason| ProfileError::Invalid {
            path: path.clone(),
            reason,
        })?;
        if out.contains_key(&profile.name) {
            return Err(ProfileError::Invalid {
                path,
                reason: format!("profile name {} used twice", profile.name),
            });
        }
        out.insert(profile.name.clone(), profile);
    }
    check_dual(&out).map_err(|reason| ProfileError::Invalid {
        path: dir.to_owned(),
        reason,
    })?;
    Ok(out)
}

/// A dual profile names an SM2 encryption profile that only enciphers.
fn check_dual(profiles: &BTreeMap<String, Profile>) -> Result<(), String> {
    for p in profiles.values() {
        let Some(name) = &p.encryption_profile else {
            continue;
        };
        let enc = profiles.get(name).ok_or_else(|| {
            format!(
                "profile {}: encryption_profile {name:?} is not a profile",
                p.name
            )
        })?;
        let signs = enc.key_usage.0.contains(KeyUsages::DigitalSignature)
            || enc.key_usage.0.contains(KeyUsages::NonRepudiation);
        if enc.key_types != [hsm::KeyKind::Sm2] || signs || enc.encryption_profile.is_some() {
            return Err(format!(
                "profile {}: encryption_profile {name:?} must take SM2 keys only and encipher, not sign",
                p.name
            ));
        }
    }
    Ok(())
}

/// Parses and validates one profile document.
pub fn parse(text: &str, public_url: &str) -> Result<Profile, String> {
    let raw: RawProfile = toml::from_str(text).map_err(|e| e.to_string())?;
    if !crate::config::is_simple_name(&raw.name) {
        return Err(format!(
            "name {:?} must be lowercase letters, digits, '-'",
            raw.name
        ));
    }
    if raw.validity_days == 0 || raw.validity_days > 3650 {
        return Err("validity_days must be 1..=3650".into());
    }
    let key_types = raw
        .key_types
        .iter()
        .map(|k| {
            k.parse::<hsm::KeyKind>()
                .map_err(|_| format!("unknown key type {k:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if key_types.is_empty() {
        return Err("key_types must not be empty".into());
    }
    let mut usage = flagset::FlagSet::<KeyUsages>::default();
    for ku in &raw.key_usage {
        usage |= key_usage_bit(ku)?;
    }
    if usage.is_empty() {
        return Err("key_usage must not be empty".into());
    }
    if usage.contains(KeyUsages::KeyCertSign) || usage.contains(KeyUsages::CRLSign) {
        return Err("end-entity profiles may not have keyCertSign or cRLSign".into());
    }
    let extended_key_usage = raw
        .extended_key_usage
        .iter()
        .map(|e| eku_oid(e))
        .collect::<Result<Vec<_>, _>>()?;
    let policy_oids = raw
        .policy_oids
        .iter()
        .map(|o| ObjectIdentifier::new(o).map_err(|e| format!("policy OID {o:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let subject = raw
        .subject
        .iter()
        .map(|a| {
            Ok(SubjectTemplate {
                attr: a.attr.parse()?,
                value: a.value.clone(),
                optional: a.optional,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if subject.is_empty() {
        return Err("subject template must not be empty".into());
    }
    if raw.crl_shards > MAX_CRL_SHARDS {
        return Err(format!("crl_shards must be at most {MAX_CRL_SHARDS}"));
    }
    if raw.crl_shards >= 2 {
        let under_crl = format!("{}/crl/", public_url.trim_end_matches('/'));
        let ok = raw.urls.crl.as_ref().is_some_and(|u| {
            u.replace("{public_url}", public_url.trim_end_matches('/'))
                .starts_with(&under_crl)
        });
        if !ok {
            return Err(
                "crl_shards needs urls.crl under {public_url}/crl/ (the shards are published there)"
                    .into(),
            );
        }
    }
    let url = |u: &Option<String>| -> Result<Option<String>, String> {
        match u {
            None => Ok(None),
            Some(u) => {
                let u = u.replace("{public_url}", public_url.trim_end_matches('/'));
                if !(u.starts_with("http://") || u.starts_with("https://")) || !u.is_ascii() {
                    return Err(format!("URL {u:?} must be an ASCII http(s) URL"));
                }
                Ok(Some(u))
            }
        }
    };
    let min_level = match raw.min_level.as_deref() {
        None => None,
        Some(l) => Some(
            crate::relying::Level::parse(l)
                .ok_or_else(|| format!("min_level {l:?} is not L1, L2 or L3"))?,
        ),
    };
    Ok(Profile {
        min_level,
        encryption_profile: raw.encryption_profile,
        name: raw.name,
        issuer: raw.issuer,
        key_types,
        validity_days: raw.validity_days,
        key_usage: x509_cert::ext::pkix::KeyUsage(usage),
        extended_key_usage,
        policy_oids,
        subject,
        email_san: raw.email_san,
        allow_certificate_hold: raw.allow_certificate_hold,
        ocsp_url: url(&raw.urls.ocsp)?,
        ca_issuers_url: url(&raw.urls.ca_issuers)?,
        crl_url: url(&raw.urls.crl)?,
        crl_shards: if raw.crl_shards < 2 {
            0
        } else {
            raw.crl_shards
        },
    })
}

fn key_usage_bit(name: &str) -> Result<KeyUsages, String> {
    Ok(match name {
        "digitalSignature" => KeyUsages::DigitalSignature,
        "nonRepudiation" | "contentCommitment" => KeyUsages::NonRepudiation,
        "keyEncipherment" => KeyUsages::KeyEncipherment,
        "dataEncipherment" => KeyUsages::DataEncipherment,
        "keyAgreement" => KeyUsages::KeyAgreement,
        "keyCertSign" => KeyUsages::KeyCertSign,
        "cRLSign" => KeyUsages::CRLSign,
        other => return Err(format!("unknown key usage {other:?}")),
    })
}

fn eku_oid(name: &str) -> Result<ObjectIdentifier, String> {
    use const_oid::db::rfc5280;
    Ok(match name {
        "serverAuth" => rfc5280::ID_KP_SERVER_AUTH,
        "clientAuth" => rfc5280::ID_KP_CLIENT_AUTH,
        "codeSigning" => rfc5280::ID_KP_CODE_SIGNING,
        "emailProtection" => rfc5280::ID_KP_EMAIL_PROTECTION,
        "timeStamping" => rfc5280::ID_KP_TIME_STAMPING,
        "OCSPSigning" => rfc5280::ID_KP_OCSP_SIGNING,
        other => ObjectIdentifier::new(other)
            .map_err(|_| format!("unknown extended key usage {other:?}"))?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    const PERSONAL: &str = include_str!("../../config/profiles/personal.toml");

    #[test]
    fn a_dual_profile_names_an_sm2_encryption_profile_that_only_enciphers() {
        let url = "http://ca.example";
        let sign = parse(include_str!("../../config/profiles/sm2-personal.toml"), url).unwrap();
        let enc = parse(
            include_str!("../../config/profiles/sm2-personal-enc.toml"),
            url,
        )
        .unwrap();
        assert_eq!(sign.encryption_profile.as_deref(), Some("sm2-personal-enc"));
        let mut set = BTreeMap::from([(sign.name.clone(), sign.clone())]);
        assert!(check_dual(&set).unwrap_err().contains("is not a profile"));
        set.insert(enc.name.clone(), enc.clone());
        assert_eq!(check_dual(&set), Ok(()));
        let mut signing_enc = enc.clone();
        signing_enc.key_usage.0 |= KeyUsages::DigitalSignature;
        set.insert(enc.name.clone(), signing_enc);
        assert!(check_dual(&set).unwrap_err().contains("encipher, not sign"));
        let mut p256_enc = enc;
        p256_enc.key_types = vec![hsm::KeyKind::EcP256];
        set.insert(p256_enc.name.clone(), p256_enc);
        assert!(check_dual(&set).is_err());
    }

    #[test]
    fn example_profile_parses_with_urls_filled() {
        let p = parse(PERSONAL, "http://ca.example:8080/").unwrap();
        assert_eq!(p.name, "personal");
        assert_eq!(p.ocsp_url.as_deref(), Some("http://ca.example:8080/ocsp"));
        assert!(p.key_usage.digital_signature());
    }

    #[test]
    fn rejects_ca_key_usage_and_unknown_fields() {
        let bad = PERSONAL.replace("\"digitalSignature\"", "\"keyCertSign\"");
        assert!(parse(&bad, "http://x").unwrap_err().contains("keyCertSign"));
        let bad = format!("{PERSONAL}\nsurprise = 1\n");
        assert!(parse(&bad, "http://x").unwrap_err().contains("surprise"));
    }

    #[test]
    fn min_level_is_an_assurance_level() {
        assert_eq!(parse(PERSONAL, "http://x").unwrap().min_level, None);
        let p = parse(&format!("min_level = \"L3\"\n{PERSONAL}"), "http://x").unwrap();
        assert_eq!(p.min_level, Some(crate::relying::Level::L3));
        let err = parse(&format!("min_level = \"L4\"\n{PERSONAL}"), "http://x").unwrap_err();
        assert!(err.contains("min_level"), "{err}");
    }

    #[test]
    fn crl_shards_validated_and_derived_from_the_serial() {
        let p = parse(&format!("crl_shards = 8\n{PERSONAL}"), "http://x").unwrap();
        assert_eq!(p.crl_shards, 8);
        assert_eq!(p.crl_shard(&[0x40, 0x01, 0x0b]), Some(0x010b % 8));
        assert_eq!(
            parse(PERSONAL, "http://x").unwrap().crl_shard(&[1, 2]),
            None
        );
        assert_eq!(
            crl_shard_url("http://x/crl/personal-g2.crl", "personal-g2", "personal", 3),
            "http://x/crl/personal-g2-personal-shard3.crl"
        );
        let err = parse(&format!("crl_shards = 257\n{PERSONAL}"), "http://x").unwrap_err();
        assert!(err.contains("crl_shards"), "{err}");
        let elsewhere = PERSONAL.replace("{public_url}/crl/personal.crl", "http://other/p.crl");
        let err = parse(&format!("crl_shards = 4\n{elsewhere}"), "http://x").unwrap_err();
        assert!(err.contains("under {public_url}/crl/"), "{err}");
    }
}
