//! RFC 7512 key URIs: round trips, percent-encoding, and typed errors for bad strings.
#![allow(clippy::unwrap_used)] // tests may unwrap

use hsm::{HsmError, KeyUri};

#[test]
fn plain_uri_round_trips() {
    let uri: KeyUri = "pkcs11:token=ca;object=root-2026;type=private"
        .parse()
        .unwrap();
    assert_eq!(uri, KeyUri::new("ca", "root-2026"));
    assert_eq!(
        uri.to_string(),
        "pkcs11:token=ca;object=root-2026;type=private"
    );
}

#[test]
fn percent_encoded_characters_round_trip() {
    let uri = KeyUri::new("My CA; token", "issuing/2026=ß%");
    let text = uri.to_string();
    assert_eq!(
        text,
        "pkcs11:token=My%20CA%3B%20token;object=issuing%2F2026%3D%C3%9F%25;type=private"
    );
    assert_eq!(text.parse::<KeyUri>().unwrap(), uri);
    // Lower-case escapes and attribute order do not matter when parsing.
    let parsed: KeyUri = "pkcs11:object=a%2fb;type=private;token=t%20x"
        .parse()
        .unwrap();
    assert_eq!(parsed, KeyUri::new("t x", "a/b"));
}

#[test]
fn type_and_identifying_attributes_are_optional() {
    let uri: KeyUri =
        "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=1;token=t;object=o"
            .parse()
            .unwrap();
    assert_eq!(uri, KeyUri::new("t", "o"));
}

#[test]
fn bad_strings_are_invalid_key_uri() {
    for bad in [
        "",
        "token=ca;object=k",
        "pkcs11:",
        "pkcs11:token=ca",
        "pkcs11:object=k",
        "pkcs11:token=;object=k",
        "pkcs11:token=ca;object=k;type=public",
        "pkcs11:token=ca;object=k;type=cert",
        "pkcs11:token=ca;token=other;object=k",
        "pkcs11:token=ca;object=k%2",
        "pkcs11:token=ca;object=k%zz",
        "pkcs11:token=ca;object=%FF%FE",
        "pkcs11:token=ca;object=k;colour=blue",
        "pkcs11:token=ca;object=k;id=%01",
        "pkcs11:token=ca;object=k?pin-value=1234",
        "pkcs11:token=ca;object",
        "pkcs11:token=ca;object=a/b",
        "https://example.com/",
    ] {
        let err = bad.parse::<KeyUri>().unwrap_err();
        assert!(
            matches!(err, HsmError::InvalidKeyUri(_)),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn a_pin_in_the_query_is_not_echoed_in_the_error() {
    let err = "pkcs11:token=ca;object=k?pin-value=secret-77"
        .parse::<KeyUri>()
        .unwrap_err();
    assert!(!err.to_string().contains("secret-77"));
}
