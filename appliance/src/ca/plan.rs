//! The ceremony plan: what `ceremony` would do with a ceremony file against the database as it
//! is now, rendered for review, with a digest the operator passes back (`--approve`) so that
//! nothing irreversible runs unless the plan was reviewed exactly as it will be carried out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::config::CaConfig;

/// What the ceremony would do for one CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Generate a key in the HSM and sign a certificate: generation `generation`.
    Create {
        /// The generation it would become.
        generation: i64,
    },
    /// The CA exists at `generation`; nothing is done.
    Keep {
        /// Its current generation.
        generation: i64,
    },
}

/// One CA of the plan.
#[derive(Debug, Clone)]
pub struct Step {
    /// The CA as the ceremony file describes it.
    pub ca: CaConfig,
    /// What would happen to it.
    pub action: Action,
}

/// The reviewable plan of one ceremony run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The token the keys would be generated on.
    pub token_label: String,
    /// The offline root token, if the root key goes there.
    pub root_token_label: Option<String>,
    /// One step per CA, root first.
    pub steps: Vec<Step>,
    /// Whether the audit key would be generated (none exists yet).
    pub create_audit_key: bool,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `--new-generation` names a CA the ceremony file does not list.
    #[error("--new-generation {0}: not a CA of the ceremony file")]
    UnknownCa(String),
    /// `--new-generation` names a CA that does not exist yet.
    #[error(
        "--new-generation {0}: the CA does not exist yet; the ceremony creates it without the flag"
    )]
    NotCreated(String),
}

impl Plan {
    /// Plans `cas` against `existing` (CA name → newest stored generation).
    pub fn new(
        cas: &[CaConfig],
        existing: &BTreeMap<String, i64>,
        new_generation: &[String],
        audit_key_exists: bool,
        token_label: &str,
        root_token_label: Option<&str>,
    ) -> Result<Plan, PlanError> {
        for name in new_generation {
            if !cas.iter().any(|c| &c.name == name) {
                return Err(PlanError::UnknownCa(name.clone()));
            }
            if !existing.contains_key(name) {
                return Err(PlanError::NotCreated(name.clone()));
            }
        }
        let steps = cas
            .iter()
            .map(|ca| {
                let action = match existing.get(&ca.name) {
                    Some(&g) if new_generation.contains(&ca.name) => {
                        Action::Create { generation: g + 1 }
                    }
                    Some(&g) => Action::Keep { generation: g },
                    None => Action::Create { generation: 1 },
                };
                Step {
                    ca: ca.clone(),
                    action,
                }
            })
            .collect();
        Ok(Plan {
            token_label: token_label.to_owned(),
            root_token_label: root_token_label.map(str::to_owned),
            steps,
            create_audit_key: !audit_key_exists,
        })
    }

    /// Whether running the plan would change anything (generate a key, sign a certificate).
    pub fn is_irreversible(&self) -> bool {
        self.create_audit_key
            || self
                .steps
                .iter()
                .any(|s| matches!(s.action, Action::Create { .. }))
    }

    /// The plan as the operator reviews it, one line per fact.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            let ca = &step.ca;
            let token = match (&ca.parent, &self.root_token_label) {
                (None, Some(root)) => root.as_str(),
                _ => self.token_label.as_str(),
            };
            let signer = ca.parent.as_deref().unwrap_or("itself (root)");
            match step.action {
                Action::Create { generation } => {
                    let _ = writeln!(
                        out,
                        "create CA {} generation {generation}: {} key generated on token {token:?}, \
                         subject {:?}, signed by {signer}, valid {} days",
                        ca.name, ca.key, ca.subject, ca.validity_days
                    );
                }
                Action::Keep { generation } => {
                    let _ = writeln!(
                        out,
                        "keep   CA {} generation {generation}: exists, left alone",
                        ca.name
                    );
                }
            }
        }
        if self.create_audit_key {
            let _ = writeln!(
                out,
                "create the audit key: ec-p256 key generated on token {:?} (signs audit log checkpoints)",
                self.token_label
            );
        } else {
            let _ = writeln!(out, "keep   the audit key: exists");
        }
        out
    }

    /// SHA-256 of [`Plan::render`], 16 hex digits: what `--approve` must repeat.
    pub fn digest(&self) -> String {
        let hash = Sha256::digest(self.render().as_bytes());
        hex::encode(&hash[..8])
    }

    /// Checks the operator's approval: required when the plan is irreversible, and it must be
    /// this plan's digest (a changed file or database gives another plan and another digest).
    pub fn check_approval(&self, approved: Option<&str>) -> Result<(), String> {
        if !self.is_irreversible() {
            return Ok(());
        }
        let digest = self.digest();
        match approved {
            None => Err(format!(
                "the ceremony generates keys and signs certificates, which cannot be undone; \
                 nothing was done. Review the plan with `ceremony --dry-run` and run it with \
                 --approve {digest} if it is what you want:\n{}",
                self.render()
            )),
            Some(a) if a.trim().eq_ignore_ascii_case(&digest) => Ok(()),
            Some(a) => Err(format!(
                "--approve {a} does not match this plan (digest {digest}): the ceremony file, \
                 the flags or the database changed since the plan was reviewed; nothing was \
                 done. Review it again with `ceremony --dry-run`:\n{}",
                self.render()
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ca(name: &str, parent: Option<&str>) -> CaConfig {
        CaConfig {
            name: name.into(),
            parent: parent.map(Into::into),
            key: "ec-p256".into(),
            subject: format!("CN={name}"),
            validity_days: 365,
        }
    }

    #[test]
    fn the_digest_follows_the_plan_and_approval_must_match_it() {
        let cas = [ca("root", None), ca("issuing", Some("root"))];
        let none = BTreeMap::new();
        let fresh = Plan::new(&cas, &none, &[], false, "t", None).unwrap();
        assert!(fresh.is_irreversible());
        assert!(fresh.check_approval(None).is_err());
        assert!(fresh.check_approval(Some("0000000000000000")).is_err());
        fresh.check_approval(Some(&fresh.digest())).unwrap();

        let mut longer = cas.to_vec();
        longer[1].validity_days = 366;
        let changed = Plan::new(&longer, &none, &[], false, "t", None).unwrap();
        assert_ne!(changed.digest(), fresh.digest());
        assert!(changed.check_approval(Some(&fresh.digest())).is_err());

        let done: BTreeMap<String, i64> = [("root".into(), 1), ("issuing".into(), 1)].into();
        let idle = Plan::new(&cas, &done, &[], true, "t", None).unwrap();
        assert!(!idle.is_irreversible());
        idle.check_approval(None).unwrap();
        let rekey = Plan::new(&cas, &done, &["issuing".into()], true, "t", None).unwrap();
        assert!(rekey.render().contains("create CA issuing generation 2"));
        assert!(rekey.check_approval(None).is_err());
        assert!(Plan::new(&cas, &none, &["issuing".into()], true, "t", None).is_err());
        assert!(Plan::new(&cas, &done, &["nosuch".into()], true, "t", None).is_err());
    }
}
