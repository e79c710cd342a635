//! The channel plugins in the real appliance: `init --demo` wires `channel-notify` and
//! `channel-webhook` (`[[plugin]]` tables, the demo channel's `notifier` and `plugins`),
//! `check-config` accepts them, `serve` loads them into `ca-plugin-worker` processes (contained
//! like third-party verifiers) and lists them as channel plugins, and `plugin check` passes them.

use std::process::Command;

use system_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_its_channel_plugins_in_workers() {
    let demo = DemoDir::create();
    let config = std::fs::read_to_string(demo.config()).expect("config");
    for needle in [
        "name = \"channel-notify\"",
        "name = \"channel-webhook\"",
        "notifier = \"channel-notify\"",
        "plugins = [\"channel-webhook\"]",
        "secrets/partner-webhook-secret",
    ] {
        assert!(config.contains(needle), "{needle} missing from:\n{config}");
    }
    let secret = demo.path().join("secrets/partner-webhook-secret");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&secret)
            .expect("secret file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let (ok, out, err) = run(Command::new(appliance_bin())
        .args(["check-config", "--config"])
        .arg(demo.config()));
    assert!(ok, "check-config refused the demo:\n{out}\n{err}");

    let mut server = demo.serve();
    let (status, body) = api_request(
        demo.api,
        demo.client_tls("operator"),
        "GET",
        "/api/v1/plugins",
        None,
    )
    .await
    .expect("API answers");
    let v = json(&body);
    assert_eq!(status, 200, "{v}");
    let plugins = v["plugins"].as_array().expect("plugins");
    for name in ["channel-notify", "channel-webhook"] {
        let p = plugins
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {v}"));
        assert_eq!(p["kind"], "channel", "{p}");
        assert_eq!(p["status"], "ready", "{p}");
        assert_eq!(p["isolation"], "worker", "{p}");
        assert_eq!(p["worker"]["failures"], 0, "{p}");
    }
    let workers = plugin_workers_of(server.pid());
    assert!(!workers.is_empty(), "no ca-plugin-worker under the server");
    assert!(server.is_running());
}

#[test]
fn plugin_check_accepts_the_channel_plugins() {
    for (lib, config) in [
        (
            "channel_notify",
            r#"{"sms_url": "https://sms.example.cn", "mail_url": "https://mail.example.cn"}"#,
        ),
        (
            "channel_webhook",
            r#"{"url": "https://partner.example.cn/ca"}"#,
        ),
    ] {
        let (ok, out, err) = run(Command::new(appliance_bin())
            .args(["plugin", "check"])
            .arg(binaries().join(format!("libplugin_{lib}.so")))
            .args(["--config-json", config]));
        assert!(ok, "{lib} failed plugin check:\n{out}\n{err}");
        assert!(out.contains("RESULT: PASS"), "{out}");
        for check in ["garbage-input", "events", "sms", "email", "no-crash"] {
            assert!(
                out.lines()
                    .any(|l| l.starts_with("PASS ") && l.contains(check)),
                "{lib}: no passing {check} check:\n{out}"
            );
        }
    }
}

#[test]
fn check_config_refuses_a_notifier_that_cannot_send_sms() {
    let demo = DemoDir::create();
    let original = std::fs::read_to_string(demo.config()).expect("config");
    for (notifier, expected) in [
        ("phone-real-name", "manifest kind"),
        ("channel-webhook", "does not send SMS"),
        ("no-such-plugin", "unknown channel plugin"),
    ] {
        let changed = original.replace(
            "notifier = \"channel-notify\"",
            &format!("notifier = \"{notifier}\""),
        );
        assert_ne!(changed, original);
        std::fs::write(demo.config(), changed).expect("config written");
        let (ok, out, err) = run(Command::new(appliance_bin())
            .args(["check-config", "--config"])
            .arg(demo.config()));
        assert!(!ok, "{notifier} accepted as notifier:\n{out}");
        assert!(err.contains(expected), "{notifier}: {err}");
    }
    std::fs::write(demo.config(), original).expect("config restored");
    let (ok, out, err) = run(Command::new(appliance_bin())
        .args(["check-config", "--config"])
        .arg(demo.config()));
    assert!(ok, "{out}\n{err}");
}
