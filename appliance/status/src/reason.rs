//! Revocation reasons shared by CRL entries and OCSP `revoked` answers (RFC 5280 5.3.1).

/// A revocation reason that may appear on the wire.
///
/// `unspecified (0)` is absent on purpose: the standards ask us to omit the reason instead of
/// writing it (use `None`). Value 7 is unassigned and so cannot be expressed.
/// `CertificateHold` is legal in RFC 5280 and GM/T 0034 but forbidden by the CA/B Forum BR:
/// the caller's profile decides whether to use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// keyCompromise (1).
    KeyCompromise,
    /// cACompromise (2).
    CaCompromise,
    /// affiliationChanged (3).
    AffiliationChanged,
    /// superseded (4).
    Superseded,
    /// cessationOfOperation (5).
    CessationOfOperation,
    /// certificateHold (6).
    CertificateHold,
    /// removeFromCRL (8): only valid on delta CRLs.
    RemoveFromCrl,
    /// privilegeWithdrawn (9).
    PrivilegeWithdrawn,
    /// aACompromise (10).
    AaCompromise,
}

impl Reason {
    /// The `CRLReason` ENUMERATED value.
    pub fn code(self) -> u8 {
        match self {
            Reason::KeyCompromise => 1,
            Reason::CaCompromise => 2,
            Reason::AffiliationChanged => 3,
            Reason::Superseded => 4,
            Reason::CessationOfOperation => 5,
            Reason::CertificateHold => 6,
            Reason::RemoveFromCrl => 8,
            Reason::PrivilegeWithdrawn => 9,
            Reason::AaCompromise => 10,
        }
    }

    /// Maps a stored `CRLReason` value back; `None` for 0 (unspecified), 7 and unknown values.
    pub fn from_code(code: u8) -> Option<Reason> {
        Some(match code {
            1 => Reason::KeyCompromise,
            2 => Reason::CaCompromise,
            3 => Reason::AffiliationChanged,
            4 => Reason::Superseded,
            5 => Reason::CessationOfOperation,
            6 => Reason::CertificateHold,
            8 => Reason::RemoveFromCrl,
            9 => Reason::PrivilegeWithdrawn,
            10 => Reason::AaCompromise,
            _ => return None,
        })
    }

    /// DER of `CRLReason ::= ENUMERATED`.
    pub(crate) fn der(self) -> [u8; 3] {
        [crate::der_write::ENUMERATED, 1, self.code()]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_skip_0_and_7() {
        for code in 0..=20u8 {
            match Reason::from_code(code) {
                Some(r) => assert_eq!(r.code(), code),
                None => assert!(code == 0 || code == 7 || code > 10),
            }
        }
    }
}
