//! The contact services the applications engine uses (`ca_appliance::notify`): the durable
//! outbox of channel-plugin deliveries, the appliance's one-time codes and picture captchas,
//! over a real SQLite file, the real `channel-notify` and `channel-webhook` plugins in
//! `ca-plugin-worker` processes, and the real vendor-sim (SMS and mail gateways, partner
//! webhook sink checking the HMAC).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ca_appliance::config::ContactSettings;
use ca_appliance::contact::{
    ApplicationEvent, ApplicationEventKind, CaptchaError, CodeError, CodePurpose, NotifyError,
};
use ca_appliance::notify::{ChannelPlugins, Contact, DeliveryView};
use ca_appliance::storage::Storage;
use ca_appliance::verification::seal::{DataKey, KeySet};
use ca_appliance::verification::Keyring;
use plugin_host::{Isolation, Plugin, PluginSpec, Secret};
use system_tests::{binaries, free_addr, VendorSim};

const API_KEY: &str = "sim-key";
const CHANNEL: &str = "bank-app";
const PHONE: &str = "13800138000";
const UNKNOWN_PHONE: &str = "13900000000";

/// A database, its data key, the two channel plugins in workers, vendor-sim, and the services.
struct Fixture {
    tmp: tempfile::TempDir,
    sim: Option<VendorSim>,
    sim_addr: std::net::SocketAddr,
    storage: Storage,
    keyring: Arc<Keyring>,
    plugins: BTreeMap<String, Arc<Plugin>>,
    settings: ContactSettings,
    contact: Contact,
    task: tokio::task::JoinHandle<()>,
}

fn settings() -> ContactSettings {
    ContactSettings {
        code_ttl_secs: 300,
        code_resend_secs: 60,
        code_max_attempts: 3,
        captcha_ttl_secs: 120,
        delivery_max_attempts: 5,
        delivery_retry_secs: 1,
        delivery_max_backoff_secs: 2,
    }
}

fn partner_secret(dir: &Path) -> PathBuf {
    dir.join("partner-secret")
}

async fn load(
    name: &str,
    stem: &str,
    sim: std::net::SocketAddr,
    config: serde_json::Value,
    secrets: &[(&str, &str)],
) -> Arc<Plugin> {
    let path = binaries().join(format!("libplugin_{stem}.so"));
    let sha = plugin_host::sha256_file(&path).expect("plugin built");
    let mut spec = PluginSpec::new(name, path, sha);
    spec.isolation = Isolation::Worker;
    spec.config = config;
    for (k, v) in secrets {
        spec.secrets.insert((*k).into(), Secret::new(*v));
    }
    spec.egress_hosts = vec![sim.to_string()];
    spec.allow_plain_http = true;
    Arc::new(Plugin::load(spec).await.expect("channel plugin loads"))
}

impl Fixture {
    async fn new(settings: ContactSettings) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(partner_secret(tmp.path()), "partner-hook-secret").expect("secret");
        let sim_addr = free_addr();
        let sim = VendorSim::start_with(sim_addr, API_KEY, None, Some(&partner_secret(tmp.path())));
        let storage = Storage::open(&format!("sqlite://{}", tmp.path().join("a.db").display()))
            .await
            .expect("database");
        // The data key row (its wrapped bytes are not used: the keyring is fixed).
        let raw = DataKey::generate();
        let id = storage
            .data_keys()
            .add_active("pkcs11:object=test-wrap", &[0; 12], &[1; 48], "test")
            .await
            .expect("data key row");
        let keyring = Arc::new(Keyring::fixed(KeySet::new(
            vec![DataKey::from_bytes(id, &raw)],
            Some(id),
        )));
        let base = format!("http://{sim_addr}");
        let mut plugins = BTreeMap::new();
        plugins.insert(
            "channel-notify".to_owned(),
            load(
                "channel-notify",
                "channel_notify",
                sim_addr,
                serde_json::json!({"sms_url": base, "mail_url": base, "mail_from": "ca@test.example",
                    "notify_events": ["issued"]}),
                &[("sms_api_key", API_KEY), ("mail_api_key", API_KEY)],
            )
            .await,
        );
        plugins.insert(
            "channel-webhook".to_owned(),
            load(
                "channel-webhook",
                "channel_webhook",
                sim_addr,
                serde_json::json!({"url": format!("{base}/partner/bank")}),
                &[("webhook_secret", "partner-hook-secret")],
            )
            .await,
        );
        let (contact, task) = start(&settings, &storage, &keyring, &plugins);
        Fixture {
            tmp,
            sim: Some(sim),
            sim_addr,
            storage,
            keyring,
            plugins,
            settings,
            contact,
            task,
        }
    }

    fn sim(&self) -> &VendorSim {
        self.sim.as_ref().expect("vendor-sim running")
    }

    /// Waits until every delivery of the channel has finished; returns them.
    async fn settled(&self, count: usize) -> Vec<DeliveryView> {
        let end = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let d = self
                .contact
                .outbox
                .deliveries(CHANNEL)
                .await
                .expect("deliveries");
            if d.len() >= count && d.iter().all(|x| x.status != "pending") {
                return d;
            }
            assert!(std::time::Instant::now() < end, "deliveries pending: {d:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn start(
    settings: &ContactSettings,
    storage: &Storage,
    keyring: &Arc<Keyring>,
    plugins: &BTreeMap<String, Arc<Plugin>>,
) -> (Contact, tokio::task::JoinHandle<()>) {
    let contact = Contact::with_parts(settings, storage, keyring.clone(), plugins.clone())
        .expect("contact services");
    contact.set_channels(BTreeMap::from([(
        CHANNEL.to_owned(),
        ChannelPlugins {
            plugins: vec!["channel-webhook".into()],
            notifier: Some("channel-notify".into()),
        },
    )]));
    let task = contact.spawn_background();
    (contact, task)
}

/// The code in the latest SMS to `phone`, waiting for the `count`-th one.
async fn code_sent(f: &Fixture, phone: &str, count: usize) -> String {
    let msgs = f
        .sim()
        .wait_sms(phone, count, Duration::from_secs(20))
        .await;
    let last = msgs.last().expect("an SMS");
    assert!(
        last["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("【CA】")),
        "{last}"
    );
    last["code"].as_str().expect("a code in the SMS").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_code_reaches_the_phone_through_the_channel_notifier() {
    let f = Fixture::new(settings()).await;
    let sent = f
        .contact
        .codes
        .send(CHANNEL, "app_1", CodePurpose::ConfirmPhone, PHONE)
        .await
        .expect("code sent");
    assert!(sent.expires_at > sent.resend_after);
    let code = code_sent(&f, PHONE, 1).await;
    assert_eq!(code.len(), 6);
    f.contact
        .codes
        .check("app_1", CodePurpose::ConfirmPhone, &code)
        .await
        .expect("the code from the SMS is accepted");
    // Consumed: the same code again is refused.
    assert!(matches!(
        f.contact
            .codes
            .check("app_1", CodePurpose::ConfirmPhone, &code)
            .await,
        Err(CodeError::NoCode)
    ));
    let d = f.settled(1).await;
    assert_eq!(d[0].status, "delivered", "{d:?}");
    assert_eq!(d[0].kind, "sms");
    // A channel without a notifier cannot send codes, and nothing is left behind.
    assert!(matches!(
        f.contact
            .codes
            .send("no-such-channel", "app_2", CodePurpose::ConfirmPhone, PHONE)
            .await,
        Err(CodeError::Notify(NotifyError::NoSmsNotifier(_)))
    ));
    assert!(matches!(
        f.contact
            .codes
            .check("app_2", CodePurpose::ConfirmPhone, "000000")
            .await,
        Err(CodeError::NoCode)
    ));
    drop(f.task);
}
