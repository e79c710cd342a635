//! Channel files (`channels_dir/*.toml`, loaded like profiles): one partner platform each, with
//! the client certificates that authenticate it, its profiles, its policies, its limits and its
//! channel plugins. Loading turns each file into the `[[channel]]` and `[[client]]` entries the
//! rest of the appliance already knows, with the policies attached.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::policy::{Policy, RawPolicy};
use crate::config::{ChannelConfig, ClientConfig, ClientRole, LimitSet};

/// One channel file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelFile {
    /// Channel name (lowercase letters, digits, '-').
    pub name: String,
    /// What the channel is (for operators).
    #[serde(default)]
    pub description: String,
    /// The client certificates (under `client_ca`) that are this channel: a common name, or a
    /// table naming one of `common_name`, `fingerprint_sha256`, `san` (as `[[client]]`).
    pub clients: Vec<ChannelClient>,
    /// Profiles it may request.
    pub profiles: Vec<String>,
    /// Channel plugins (by `[[plugin]]` name) that receive its application events.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// The channel plugin that sends its SMS and e-mail (the appliance's codes included).
    #[serde(default)]
    pub notifier: Option<String>,
    /// Limits on everything this channel's verifications spend.
    #[serde(default)]
    pub limits: LimitSet,
    /// Policies per application kind and subject type.
    #[serde(default, rename = "policy")]
    pub policies: Vec<RawPolicy>,
}

/// One client certificate of a channel file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ChannelClient {
    /// The certificate's exact, single subject common name.
    CommonName(String),
    /// By fingerprint, SAN or common name.
    Identity(ClientIdentity),
}

/// A client certificate named as a `[[client]]` entry names it (exactly one field).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdentity {
    /// Exact single subject CN.
    #[serde(default)]
    pub common_name: Option<String>,
    /// SHA-256 of the certificate DER, hex.
    #[serde(default)]
    pub fingerprint_sha256: Option<String>,
    /// A subjectAltName value the certificate carries.
    #[serde(default)]
    pub san: Option<String>,
}

/// Why a channel file was refused.
#[derive(Debug, thiserror::Error)]
#[error("channel file {path}: {reason}")]
pub struct ChannelFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// A loaded channel: its configuration (policies attached) and its client entries.
#[derive(Debug, Clone)]
pub struct LoadedChannel {
    /// As a `[[channel]]`.
    pub channel: ChannelConfig,
    /// As `[[client]]` entries.
    pub clients: Vec<ClientConfig>,
}

/// Parses and validates one channel file; `known_plugin` says whether a `[[plugin]]` exists.
pub fn parse(text: &str, known_plugin: &dyn Fn(&str) -> bool) -> Result<LoadedChannel, String> {
    let file: ChannelFile = toml::from_str(text).map_err(|e| e.to_string())?;
    if !crate::config::is_simple_name(&file.name) {
        return Err(format!(
            "name {:?} must be lowercase letters, digits and '-'",
            file.name
        ));
    }
    if file.clients.is_empty() {
        return Err("clients must name at least one client certificate common name".into());
    }
    if file.profiles.is_empty() {
        return Err("profiles must name at least one profile".into());
    }
    for p in file.plugins.iter().chain(file.notifier.iter()) {
        if !known_plugin(p) {
            return Err(format!(
                "channel plugin {p:?} is not a configured [[plugin]]"
            ));
        }
    }
    let mut policies: Vec<Policy> = Vec::new();
    for (i, raw) in file.policies.into_iter().enumerate() {
        let policy = raw
            .validate(known_plugin)
            .map_err(|e| format!("policy {}: {e}", i + 1))?;
        for (kind, id_type) in policy
            .kinds
            .iter()
            .flat_map(|k| policy.id_types.iter().map(move |t| (k, t)))
        {
            if super::policy::find_for(&policies, *kind, policy.subject, id_type).is_some() {
                return Err(format!(
                    "policy {}: kind {} for this subject type is already governed by an earlier policy",
                    i + 1,
                    kind.name()
                ));
            }
        }
        policies.push(policy);
    }
    let mut verifications: Vec<String> = policies.iter().flat_map(Policy::methods).collect();
    verifications.sort();
    verifications.dedup();
    let clients = file
        .clients
        .iter()
        .map(|c| {
            let id = match c {
                ChannelClient::CommonName(cn) => ClientIdentity {
                    common_name: Some(cn.clone()),
                    fingerprint_sha256: None,
                    san: None,
                },
                ChannelClient::Identity(id) => id.clone(),
            };
            ClientConfig {
                common_name: id.common_name,
                fingerprint_sha256: id.fingerprint_sha256,
                san: id.san,
                role: ClientRole::Channel,
                channel: Some(file.name.clone()),
            }
        })
        .collect();
    Ok(LoadedChannel {
        channel: ChannelConfig {
            name: file.name,
            profiles: file.profiles,
            verifications,
            limits: file.limits,
            policies,
            plugins: file.plugins,
            notifier: file.notifier,
        },
        clients,
    })
}

/// Loads every `*.toml` in `dir`, sorted by file name.
pub fn load_dir(
    dir: &Path,
    known_plugin: &dyn Fn(&str) -> bool,
) -> Result<Vec<LoadedChannel>, ChannelFileError> {
    let err = |path: &Path, reason: String| ChannelFileError {
        path: path.to_owned(),
        reason,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    let mut out: Vec<LoadedChannel> = Vec::new();
    for path in entries {
        let text = std::fs::read_to_string(&path).map_err(|e| err(&path, e.to_string()))?;
        let loaded = parse(&text, known_plugin).map_err(|reason| err(&path, reason))?;
        if out.iter().any(|c| c.channel.name == loaded.channel.name) {
            return Err(err(
                &path,
                format!("channel name {} used twice", loaded.channel.name),
            ));
        }
        out.push(loaded);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KNOWN: [&str; 4] = ["phone-real-name", "bank-card", "face", "channel-notify"];

    fn known(p: &str) -> bool {
        KNOWN.contains(&p)
    }

    #[test]
    fn the_example_channel_files_load() {
        for (file, methods) in [
            (
                include_str!("../../../config/channels/sheca-personal.toml"),
                vec!["bank-card", "face", "phone-real-name"],
            ),
            (
                include_str!("../../../config/channels/bjca-personal.toml"),
                vec!["bank-card", "face", "phone-real-name"],
            ),
        ] {
            let c = parse(file, &known).unwrap();
            assert_eq!(c.channel.verifications, methods);
            assert_eq!(c.clients.len(), 1);
            assert_eq!(
                c.clients[0].common_name,
                Some(format!("channel-{}", c.channel.name))
            );
            assert!(!c.channel.policies.is_empty());
        }
    }

    #[test]
    fn bad_channel_files_are_refused() {
        let ok = "name = \"x\"\nclients = [\"c\"]\nprofiles = [\"personal\"]\n";
        assert!(parse(ok, &known).is_ok());
        for (text, why) in [
            ("name = \"X Y\"\nclients = [\"c\"]\nprofiles = [\"p\"]\n", "lowercase"),
            ("name = \"x\"\nclients = []\nprofiles = [\"p\"]\n", "clients"),
            (&format!("{ok}notifier = \"nope\"\n"), "not a configured"),
            (&format!("{ok}surprise = 1\n"), "unknown field"),
            (
                &format!("{ok}[[policy]]\nkinds = [\"new\"]\ncaptcha = false\n[[policy.step]]\nverify = [\"face\"]\n[[policy]]\nkinds = [\"new\"]\ncaptcha = true\n[[policy.step]]\nverify = [\"face\"]\n"),
                "already governed",
            ),
        ] {
            let e = parse(text, &known).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
