//! Accounts: a realm (channels that share identities, e.g. one provincial platform) holds one
//! personal account per person, with its assurance level, the evidence for it and the phone it
//! is bound to. A phone binds at most `personal_per_phone` personal accounts per realm, and one
//! organisation account (the agent's or the legal representative's phone, per realm).

use serde::Deserialize;

/// `[[applications.realm]]`: channels sharing accounts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Realm {
    /// Realm name.
    pub name: String,
    /// Its channels (a channel in no realm is a realm of its own, named after it).
    pub channels: Vec<String>,
    /// Personal accounts one phone may be bound to in this realm (default 1).
    #[serde(default = "one")]
    pub personal_per_phone: u32,
    /// Whose phone an organisation account is bound to: `agent` (default) or `legal_rep`.
    #[serde(default)]
    pub organisation_phone: OrganisationPhone,
}

/// Whose phone binds an organisation's account (one organisation account per phone per realm).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrganisationPhone {
    /// The agent's (经办人) phone.
    #[default]
    Agent,
    /// The legal representative's phone.
    LegalRep,
}

/// The organisation-phone rule of `channel`'s realm.
pub fn organisation_phone_of(realms: &[Realm], channel: &str) -> OrganisationPhone {
    realms
        .iter()
        .find(|r| r.channels.iter().any(|c| c == channel))
        .map_or(OrganisationPhone::Agent, |r| r.organisation_phone)
}

fn one() -> u32 {
    1
}

/// The realm of `channel` and its per-phone limit for personal accounts.
pub fn realm_of(realms: &[Realm], channel: &str) -> (String, u32) {
    realms
        .iter()
        .find(|r| r.channels.iter().any(|c| c == channel))
        .map_or_else(
            || (format!("channel:{channel}"), 1),
            |r| (r.name.clone(), r.personal_per_phone),
        )
}

/// Checks the realm table: names unique, a channel in one realm at most, limits 1..=100.
pub fn validate(realms: &[Realm]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    let mut channels = std::collections::BTreeSet::new();
    for r in realms {
        if r.name.is_empty() || !names.insert(r.name.as_str()) {
            return Err(format!("realm {:?}: empty or repeated name", r.name));
        }
        if !(1..=100).contains(&r.personal_per_phone) {
            return Err(format!(
                "realm {}: personal_per_phone must be 1..=100",
                r.name
            ));
        }
        for c in &r.channels {
            if !channels.insert(c.as_str()) {
                return Err(format!("channel {c} is in two realms"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_outside_every_realm_is_its_own() {
        let realms = vec![Realm {
            name: "gd".into(),
            channels: vec!["a".into(), "b".into()],
            personal_per_phone: 1,
            organisation_phone: OrganisationPhone::LegalRep,
        }];
        assert_eq!(realm_of(&realms, "b"), ("gd".to_owned(), 1));
        assert_eq!(realm_of(&realms, "c"), ("channel:c".to_owned(), 1));
        assert_eq!(
            organisation_phone_of(&realms, "a"),
            OrganisationPhone::LegalRep
        );
        assert_eq!(
            organisation_phone_of(&realms, "c"),
            OrganisationPhone::Agent
        );
        assert!(validate(&realms).is_ok());
        let twice = vec![
            realms[0].clone(),
            Realm {
                name: "x".into(),
                ..realms[0].clone()
            },
        ];
        assert!(validate(&twice).is_err());
    }
}
