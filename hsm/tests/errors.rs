//! Opening the token with bad PINs, PIN sources and labels gives specific typed errors.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::PathBuf;

use hsm::{Hsm, HsmConfig, HsmError, PinSource};

fn with_pin(config: &HsmConfig, pin: PinSource) -> HsmConfig {
    HsmConfig {
        pin,
        ..config.clone()
    }
}

#[tokio::test]
async fn wrong_pin_is_wrong_pin_and_never_echoed() {
    let config = common::token("wrong-pin");
    let bad = common::pin_file("wrong.pin", "not-the-pin-9876", 0o600);
    let err = Hsm::open(&with_pin(&config, PinSource::File(bad)))
        .await
        .unwrap_err();
    assert!(matches!(err, HsmError::WrongPin), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("not-the-pin-9876"));
    // The right PIN still works afterwards (one wrong try does not lock the token).
    Hsm::open(&config).await.unwrap();
}

#[tokio::test]
async fn pin_too_short_for_the_token_is_wrong_pin() {
    let config = common::token("short-pin");
    let bad = common::pin_file("short.pin", "12", 0o600);
    let err = Hsm::open(&with_pin(&config, PinSource::File(bad)))
        .await
        .unwrap_err();
    assert!(matches!(err, HsmError::WrongPin), "{err:?}");
}

#[tokio::test]
async fn unknown_token_label_is_token_not_found() {
    let mut config = common::token("known");
    config.token_label = "no-such-token".into();
    let err = Hsm::open(&config).await.unwrap_err();
    assert!(
        matches!(err, HsmError::TokenNotFound { ref label } if label == "no-such-token"),
        "{err:?}"
    );
}

#[tokio::test]
async fn group_readable_pin_file_is_refused_without_reading_it() {
    let config = common::token("perm");
    let loose = common::pin_file("loose.pin", common::USER_PIN, 0o644);
    let err = Hsm::open(&with_pin(&config, PinSource::File(loose)))
        .await
        .unwrap_err();
    match &err {
        HsmError::PinSource { reason, .. } => {
            assert!(reason.contains("must be mode 0600"), "{reason}")
        }
        other => panic!("expected PinSource, got {other:?}"),
    }
    assert!(!err.to_string().contains(common::USER_PIN));
}

#[tokio::test]
async fn missing_pin_file_env_and_credential_are_pin_source_errors() {
    let config = common::token("sources");
    for source in [
        PinSource::File(PathBuf::from("/nonexistent/ca.pin")),
        PinSource::Env("HSM_TEST_PIN_VARIABLE_THAT_IS_NOT_SET".into()),
        PinSource::SystemdCredential("../escape".into()),
    ] {
        let err = Hsm::open(&with_pin(&config, source.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, HsmError::PinSource { .. }),
            "{source:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn pin_from_environment_and_systemd_credential_log_in() {
    let config = common::token("env-pin");
    std::env::set_var("HSM_TEST_ENV_PIN", format!("{}\n", common::USER_PIN));
    Hsm::open(&with_pin(
        &config,
        PinSource::Env("HSM_TEST_ENV_PIN".into()),
    ))
    .await
    .unwrap();

    let creds = common::scratch().join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("hsm-pin"), common::USER_PIN).unwrap();
    std::env::set_var("CREDENTIALS_DIRECTORY", &creds);
    Hsm::open(&with_pin(
        &config,
        PinSource::SystemdCredential("hsm-pin".into()),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn missing_module_is_a_module_error() {
    let mut config = common::token("module");
    config.module = PathBuf::from("/usr/lib/nonexistent/libpkcs11.so");
    let err = Hsm::open(&config).await.unwrap_err();
    assert!(matches!(err, HsmError::Module { .. }), "{err:?}");
}

#[test]
fn init_token_rejects_overlong_labels() {
    let err = hsm::init_token(
        std::path::Path::new(common::MODULE),
        "a label that is far longer than thirty-two bytes",
        common::SO_PIN,
        common::USER_PIN,
    )
    .unwrap_err();
    assert!(matches!(err, HsmError::InvalidArgument { .. }), "{err:?}");
}
