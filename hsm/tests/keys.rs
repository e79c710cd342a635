//! Key generation on a real SoftHSM2 token: attributes, lookup, public key export.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::Path;

use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use hsm::{HsmError, KeyKind, KeyUri};
use spki::DecodePublicKey;

#[tokio::test]
async fn generated_private_key_is_sensitive_unextractable_and_its_value_unreadable() {
    let hsm = common::open("attrs").await;
    let uri = hsm
        .generate_key_pair("ca-ec", KeyKind::EcP256)
        .await
        .unwrap();
    assert_eq!(
        uri.to_string(),
        "pkcs11:token=attrs;object=ca-ec;type=private"
    );

    // Inspect the objects with cryptoki directly, in a session of our own.
    let ctx = hsm::raw_context(Path::new(common::MODULE)).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == "attrs")
        .unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    // The pool already logged this application in; a second login says so, which is fine.
    let _ = session.login(UserType::User, Some(&AuthPin::new(common::USER_PIN.into())));
    let find = |class| {
        let found = session
            .find_objects(&[Attribute::Class(class), Attribute::Label(b"ca-ec".to_vec())])
            .unwrap();
        assert_eq!(found.len(), 1, "exactly one {class:?}");
        found[0]
    };
    let private = find(ObjectClass::PRIVATE_KEY);
    let public = find(ObjectClass::PUBLIC_KEY);

    let attrs = session
        .get_attributes(
            private,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Sign,
                AttributeType::Id,
            ],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::Sensitive(true)));
    assert!(attrs.contains(&Attribute::Extractable(false)));
    assert!(attrs.contains(&Attribute::Token(true)));
    assert!(attrs.contains(&Attribute::Private(true)));
    assert!(attrs.contains(&Attribute::Sign(true)));
    let private_id = attrs
        .iter()
        .find_map(|a| match a {
            Attribute::Id(id) => Some(id.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(private_id.len(), 16);

    // CKA_VALUE of the private key cannot be read.
    let info = session
        .get_attribute_info(private, &[AttributeType::Value])
        .unwrap();
    assert!(
        matches!(info.as_slice(), [AttributeInfo::Sensitive]),
        "{info:?}"
    );
    let value = session
        .get_attributes(private, &[AttributeType::Value])
        .unwrap();
    assert!(value.is_empty(), "CKA_VALUE must not be returned");

    let public_attrs = session
        .get_attributes(public, &[AttributeType::Verify, AttributeType::Id])
        .unwrap();
    assert!(public_attrs.contains(&Attribute::Verify(true)));
    assert!(public_attrs.contains(&Attribute::Id(private_id)));
}

#[tokio::test]
async fn generating_an_existing_label_is_refused() {
    let hsm = common::open("exists").await;
    let uri = hsm.generate_key_pair("dup", KeyKind::EcP384).await.unwrap();
    let err = hsm
        .generate_key_pair("dup", KeyKind::Rsa2048)
        .await
        .unwrap_err();
    assert!(
        matches!(err, HsmError::KeyExists { uri: ref u } if *u == uri),
        "{err:?}"
    );
    // The original key is untouched.
    assert_eq!(hsm.key_kind(&uri).await.unwrap(), KeyKind::EcP384);
}

#[tokio::test]
async fn key_exists_kind_and_not_found() {
    let hsm = common::open("lookup").await;
    let missing = hsm.key_uri("nope");
    assert!(!hsm.key_exists(&missing).await.unwrap());
    assert!(matches!(
        hsm.key_kind(&missing).await,
        Err(HsmError::KeyNotFound { .. })
    ));
    assert!(matches!(
        hsm.public_key_der(&missing).await,
        Err(HsmError::KeyNotFound { .. })
    ));
    let other_token = KeyUri::new("some-other-token", "nope");
    assert!(!hsm.key_exists(&other_token).await.unwrap());

    let uri = hsm
        .generate_key_pair("rsa3k", KeyKind::Rsa3072)
        .await
        .unwrap();
    assert!(hsm.key_exists(&uri).await.unwrap());
    assert_eq!(hsm.key_kind(&uri).await.unwrap(), KeyKind::Rsa3072);
}

#[tokio::test]
async fn key_kind_is_read_from_the_token_by_a_fresh_handle() {
    // A second Hsm on the same token has an empty cache and must look the key up.
    let config = common::token("fresh");
    let first = hsm::Hsm::open(&config).await.unwrap();
    let uri = first
        .generate_key_pair("k", KeyKind::Rsa2048)
        .await
        .unwrap();
    let second = hsm::Hsm::open(&config).await.unwrap();
    assert_eq!(second.key_kind(&uri).await.unwrap(), KeyKind::Rsa2048);
}

#[tokio::test]
async fn public_keys_are_valid_spki_for_every_kind() {
    let hsm = common::open("spki").await;
    for kind in [KeyKind::EcP256, KeyKind::EcP384, KeyKind::Rsa2048] {
        let uri = hsm.generate_key_pair(kind.as_str(), kind).await.unwrap();
        let der = hsm.public_key_der(&uri).await.unwrap();
        match kind {
            KeyKind::EcP256 => {
                p256::PublicKey::from_public_key_der(&der).unwrap();
            }
            KeyKind::EcP384 => {
                p384::PublicKey::from_public_key_der(&der).unwrap();
            }
            _ => {
                let key = rsa::RsaPublicKey::from_public_key_der(&der).unwrap();
                assert_eq!(rsa::traits::PublicKeyParts::size(&key), 256);
                assert_eq!(
                    rsa::traits::PublicKeyParts::e(&key),
                    &rsa::BigUint::from(65537u32)
                );
            }
        }
    }
}
