use super::*;
use der::Encode;

#[test]
fn algorithm_identifiers_parse_and_reencode_identically() {
    for alg in SignatureAlgorithm::ALL {
        let id = alg.algorithm_identifier();
        assert_eq!(
            id.to_der().unwrap(),
            alg.algorithm_identifier_der(),
            "{alg}"
        );
    }
}

#[test]
fn pss_identifier_carries_params_and_ecdsa_has_none() {
    assert!(SignatureAlgorithm::RsaPssSha256
        .algorithm_identifier()
        .parameters
        .is_some());
    assert!(SignatureAlgorithm::EcdsaSha384
        .algorithm_identifier()
        .parameters
        .is_none());
    assert_eq!(
        SignatureAlgorithm::RsaPssSha384.algorithm_identifier().oid,
        const_oid::db::rfc5912::ID_RSASSA_PSS
    );
    assert_eq!(
        SignatureAlgorithm::RsaPkcs1Sha256
            .algorithm_identifier()
            .oid,
        const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION
    );
    assert_eq!(
        SignatureAlgorithm::EcdsaSha256.algorithm_identifier().oid,
        const_oid::db::rfc5912::ECDSA_WITH_SHA_256
    );
}

#[test]
fn digests_have_the_advertised_length() {
    for alg in SignatureAlgorithm::ALL {
        assert_eq!(alg.digest(b"abc").len(), alg.hash_len(), "{alg}");
    }
    // FIPS 180-2 test vector for SHA-256("abc").
    assert_eq!(
        SignatureAlgorithm::EcdsaSha256.digest(b"abc")[..4],
        [0xba, 0x78, 0x16, 0xbf]
    );
}

#[test]
fn names_round_trip_and_unknown_names_are_typed_errors() {
    for kind in KeyKind::ALL {
        assert_eq!(kind.to_string().parse::<KeyKind>().unwrap(), kind);
    }
    for alg in SignatureAlgorithm::ALL {
        assert_eq!(alg.to_string().parse::<SignatureAlgorithm>().unwrap(), alg);
    }
    assert!(matches!(
        "ec-p521".parse::<KeyKind>(),
        Err(HsmError::InvalidArgument { .. })
    ));
    assert_eq!("rsa-3072".parse::<KeyKind>().unwrap(), KeyKind::Rsa3072);
}

#[test]
fn key_kinds_pair_with_matching_algorithms_only() {
    assert!(KeyKind::EcP256.allows(SignatureAlgorithm::EcdsaSha256));
    assert!(!KeyKind::EcP256.allows(SignatureAlgorithm::EcdsaSha384));
    assert!(!KeyKind::EcP384.allows(SignatureAlgorithm::RsaPkcs1Sha384));
    assert!(KeyKind::Rsa2048.allows(SignatureAlgorithm::RsaPssSha384));
    assert!(!KeyKind::Rsa4096.allows(SignatureAlgorithm::EcdsaSha256));
}
