//! Wrapping keys on a real SoftHSM2 token: AES-256, sensitive and unextractable; wrap/unwrap
//! round trip bound to its associated data; a wrong key, label or tampered value is refused.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::Path;

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use hsm::HsmError;

#[tokio::test]
async fn wrapping_key_is_unextractable_and_wraps_round_trip_bound_to_aad() {
    let hsm = common::open("wrap").await;
    let uri = hsm.generate_wrapping_key("data-wrap").await.unwrap();
    assert!(hsm.wrapping_key_exists(&uri).await.unwrap());
    assert!(matches!(
        hsm.generate_wrapping_key("data-wrap").await,
        Err(HsmError::KeyExists { .. })
    ));

    let secret = [7u8; 32];
    let wrapped = hsm.wrap_secret(&uri, &secret, b"key-1").await.unwrap();
    assert_eq!(wrapped.ciphertext.len(), 32 + 16);
    assert!(!wrapped.ciphertext.windows(8).any(|w| w == [7u8; 8]));
    let again = hsm.wrap_secret(&uri, &secret, b"key-1").await.unwrap();
    assert_ne!(wrapped.iv, again.iv, "a fresh IV per wrap");
    assert_eq!(
        &hsm.unwrap_secret(&uri, &wrapped, b"key-1").await.unwrap()[..],
        &secret
    );
    // Other associated data, a flipped bit, another key: all refused.
    let r = hsm.unwrap_secret(&uri, &wrapped, b"key-2").await;
    assert!(matches!(r, Err(HsmError::UnwrapFailed { .. })), "{r:?}");
    let mut bad = wrapped.clone();
    bad.ciphertext[3] ^= 1;
    assert!(matches!(
        hsm.unwrap_secret(&uri, &bad, b"key-1").await,
        Err(HsmError::UnwrapFailed { .. })
    ));
    let other = hsm.generate_wrapping_key("other-wrap").await.unwrap();
    assert!(matches!(
        hsm.unwrap_secret(&other, &wrapped, b"key-1").await,
        Err(HsmError::UnwrapFailed { .. })
    ));
    let missing = hsm.key_uri("no-such-wrap");
    assert!(!hsm.wrapping_key_exists(&missing).await.unwrap());
    assert!(matches!(
        hsm.wrap_secret(&missing, &secret, b"x").await,
        Err(HsmError::KeyNotFound { .. })
    ));

    // The key object itself: AES, sensitive, never extractable, its value unreadable.
    let ctx = hsm::raw_context(Path::new(common::MODULE)).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == "wrap")
        .unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&AuthPin::new(common::USER_PIN.into())));
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"data-wrap".to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1);
    let attrs = session
        .get_attributes(
            found[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::ValueLen,
            ],
        )
        .unwrap();
    let mut seen = 0;
    for a in attrs {
        match a {
            Attribute::Sensitive(s) => {
                assert!(s);
                seen += 1
            }
            Attribute::Extractable(e) => {
                assert!(!e);
                seen += 1
            }
            Attribute::ValueLen(l) => {
                assert_eq!(u64::from(l), 32);
                seen += 1
            }
            _ => {}
        }
    }
    assert_eq!(seen, 3);
    assert!(session
        .get_attributes(found[0], &[AttributeType::Value])
        .map(|v| v.is_empty())
        .unwrap_or(true));
}
