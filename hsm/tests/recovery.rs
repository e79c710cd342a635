//! The pool survives its sessions losing their login: reopen, log in again, retry once.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::Path;

use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use hsm::{KeyKind, SignatureAlgorithm};
use signature::Verifier;
use spki::DecodePublicKey;

#[tokio::test]
async fn signing_recovers_after_the_application_is_logged_out() {
    let hsm = common::open("recovery").await;
    let key = hsm
        .generate_key_pair("p256", KeyKind::EcP256)
        .await
        .unwrap();
    let vk =
        p256::ecdsa::VerifyingKey::from_public_key_der(&hsm.public_key_der(&key).await.unwrap())
            .unwrap();
    hsm.sign(&key, SignatureAlgorithm::EcdsaSha256, b"before")
        .await
        .unwrap();

    // Log the whole application out from a session of our own: every pooled session now
    // fails C_Sign with CKR_USER_NOT_LOGGED_IN.
    let ctx = hsm::raw_context(Path::new(common::MODULE)).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == "recovery")
        .unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&AuthPin::new(common::USER_PIN.into())));
    session.logout().unwrap();
    drop(session);

    for i in 0..4 {
        let data = format!("after {i}");
        let sig = hsm
            .sign(&key, SignatureAlgorithm::EcdsaSha256, data.as_bytes())
            .await
            .unwrap();
        let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
        vk.verify(data.as_bytes(), &sig).unwrap();
    }
}
