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
    ApplicationEvent, ApplicationEventKind, CaptchaError, Captchas, CodeError, CodePurpose,
    NotifyError,
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

/// The two channel plugins against vendor-sim at `sim_addr`: `channel-notify` (its gateway
/// config with the keys of `notify` added) and `channel-webhook` (the partner bank's hook).
async fn channel_plugins(
    sim_addr: std::net::SocketAddr,
    notify: serde_json::Value,
) -> BTreeMap<String, Arc<Plugin>> {
    let base = format!("http://{sim_addr}");
    let mut notify_config =
        serde_json::json!({"sms_url": base, "mail_url": base, "mail_from": "ca@test.example"});
    if let (Some(c), serde_json::Value::Object(extra)) = (notify_config.as_object_mut(), notify) {
        c.extend(extra);
    }
    let mut plugins = BTreeMap::new();
    plugins.insert(
        "channel-notify".to_owned(),
        load(
            "channel-notify",
            "channel_notify",
            sim_addr,
            notify_config,
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
    plugins
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
        let plugins =
            channel_plugins(sim_addr, serde_json::json!({"notify_events": ["issued"]})).await;
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
    f.task.abort();
}

/// A code that is not `code` (the next one, wrapping).
fn other_than(code: &str) -> String {
    let n: u32 = code.parse().expect("digits");
    format!("{:06}", (n + 1) % 1_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_void_the_code_and_answers_never_reveal_the_phone() {
    let f = Fixture::new(settings()).await;
    let codes = &f.contact.codes;
    // A phone the carrier does not know and one it does: the same answers.
    let known = codes
        .send(CHANNEL, "app_k", CodePurpose::ApplicationSignature, PHONE)
        .await
        .expect("sent");
    let unknown = codes
        .send(
            CHANNEL,
            "app_u",
            CodePurpose::ApplicationSignature,
            UNKNOWN_PHONE,
        )
        .await
        .expect("sent, the same way");
    assert_eq!(
        known.expires_at - known.resend_after,
        unknown.expires_at - unknown.resend_after
    );
    let known_code = code_sent(&f, PHONE, 1).await;
    let unknown_code = code_sent(&f, UNKNOWN_PHONE, 1).await;
    for (app, code) in [("app_k", &known_code), ("app_u", &unknown_code)] {
        let wrong = other_than(code);
        let mut left = Vec::new();
        for _ in 0..2 {
            match codes
                .check(app, CodePurpose::ApplicationSignature, &wrong)
                .await
            {
                Err(CodeError::Wrong { attempts_left }) => left.push(attempts_left),
                other => panic!("expected otp_wrong, got {other:?}"),
            }
        }
        assert_eq!(left, vec![2, 1]);
        // Malformed input counts as a wrong try too: the third one voids the code.
        assert!(matches!(
            codes
                .check(app, CodePurpose::ApplicationSignature, "12ab")
                .await,
            Err(CodeError::AttemptsExceeded)
        ));
        // Even the right code is refused now.
        assert!(matches!(
            codes
                .check(app, CodePurpose::ApplicationSignature, code)
                .await,
            Err(CodeError::AttemptsExceeded)
        ));
    }
    // The cooldown: no new code before resend_after, with the time to wait.
    match codes
        .send(CHANNEL, "app_k", CodePurpose::ApplicationSignature, PHONE)
        .await
    {
        Err(CodeError::ResendTooSoon { retry_after }) => {
            assert_eq!(retry_after, known.resend_after)
        }
        other => panic!("expected resend_too_soon, got {other:?}"),
    }
    // Another purpose of the same application is a separate code.
    codes
        .send(CHANNEL, "app_k", CodePurpose::ConfirmPhone, PHONE)
        .await
        .expect("another purpose");
    let confirm = code_sent(&f, PHONE, 2).await;
    codes
        .check("app_k", CodePurpose::ConfirmPhone, &confirm)
        .await
        .expect("accepted");
    f.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_code_replaces_the_old_one_and_codes_expire() {
    let mut s = settings();
    s.code_resend_secs = 0;
    let f = Fixture::new(s).await;
    let codes = &f.contact.codes;
    codes
        .send(CHANNEL, "app_r", CodePurpose::NewPhone, PHONE)
        .await
        .expect("first");
    let first = code_sent(&f, PHONE, 1).await;
    codes
        .send(CHANNEL, "app_r", CodePurpose::NewPhone, PHONE)
        .await
        .expect("second, no cooldown configured");
    let second = code_sent(&f, PHONE, 2).await;
    if first != second {
        assert!(matches!(
            codes.check("app_r", CodePurpose::NewPhone, &first).await,
            Err(CodeError::Wrong { .. })
        ));
    }
    codes
        .check("app_r", CodePurpose::NewPhone, &second)
        .await
        .expect("the latest code is accepted");

    // Codes living one second (same database, plugins and gateway; one delivery task at a time,
    // as in one appliance process).
    f.task.abort();
    let mut short = f.settings.clone();
    short.code_ttl_secs = 1;
    let (contact, task) = start(&short, &f.storage, &f.keyring, &f.plugins);
    let sent = contact
        .codes
        .send(CHANNEL, "app_e", CodePurpose::NewPhone, PHONE)
        .await
        .expect("sent");
    // Past its expiry (the condition is the clock itself).
    while ca_appliance::storage::unix_now() <= sent.expires_at {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let code = code_sent(&f, PHONE, 3).await;
    assert!(matches!(
        contact
            .codes
            .check("app_e", CodePurpose::NewPhone, &code)
            .await,
        Err(CodeError::Expired)
    ));
    task.abort();
    f.task.abort();
}

/// True if `needle` occurs in the file (absent file: false).
fn file_contains(path: &Path, needle: &[u8]) -> bool {
    std::fs::read(path)
        .map(|b| b.windows(needle.len()).any(|w| w == needle))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_phones_and_texts_are_not_stored_in_clear() {
    let f = Fixture::new(settings()).await;
    f.contact
        .codes
        .send(CHANNEL, "app_h", CodePurpose::ConfirmPhone, PHONE)
        .await
        .expect("sent");
    let code = code_sent(&f, PHONE, 1).await;
    // While the SMS is queued and after it was delivered: neither the code, the phone nor the
    // text is in the database file or its WAL.
    f.settled(1).await;
    f.contact
        .outbox
        .send_email(
            CHANNEL,
            "zhangsan@example.cn",
            "subject",
            "your code 424242",
        )
        .await
        .expect("queued");
    let db = f.tmp.path().join("a.db");
    let wal = f.tmp.path().join("a.db-wal");
    assert!(wal.exists() || db.exists());
    for file in [&db, &wal] {
        for needle in [
            code.as_bytes(),
            PHONE.as_bytes(),
            b"424242".as_slice(),
            b"zhangsan@example.cn".as_slice(),
        ] {
            assert!(
                !file_contains(file, needle),
                "{} holds {:?} in clear",
                file.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    let mails = f.sim().mails_to("zhangsan@example.cn").await;
    let end = std::time::Instant::now() + Duration::from_secs(20);
    let mut mails = mails;
    while mails.is_empty() && std::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        mails = f.sim().mails_to("zhangsan@example.cn").await;
    }
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0]["text"], "your code 424242");
    assert_eq!(mails[0]["from"], "ca@test.example");
    f.task.abort();
}

fn event(channel: &str, app: &str, kind: ApplicationEventKind, status: &str) -> ApplicationEvent {
    ApplicationEvent {
        channel: channel.into(),
        application_id: app.into(),
        application_kind: "new".into(),
        event: kind,
        status: status.into(),
        reference: Some("order-77".into()),
        certificate_serial: (kind == ApplicationEventKind::Issued).then(|| "7f01".into()),
        failure_code: None,
        phone: Some(PHONE.into()),
        email: Some("zhangsan@example.cn".into()),
        at: 1_795_521_600,
    }
}

/// Waits until the partner received `count` calls.
async fn hooks(f: &Fixture, partner: &str, count: usize) -> Vec<serde_json::Value> {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let calls = f.sim().webhook_calls(partner).await;
        if calls.len() >= count {
            return calls;
        }
        assert!(std::time::Instant::now() < end, "{partner}: {calls:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_events_reach_the_partner_signed_and_are_retried() {
    let f = Fixture::new(settings()).await;
    // The partner is down for two calls.
    let (status, _) = f
        .sim()
        .http(
            "POST",
            "/_sim/faults",
            Some(
                serde_json::json!({"api": "partner", "count": 2, "kind": "status", "status": 503}),
            ),
        )
        .await;
    assert_eq!(status, 200);
    f.contact
        .notifier
        .application_event(&event(
            CHANNEL,
            "app_w",
            ApplicationEventKind::Created,
            "verifying",
        ))
        .await
        .expect("queued");
    let d = f.settled(1).await;
    assert_eq!(d[0].status, "delivered", "{d:?}");
    assert_eq!(d[0].attempts, 3, "{d:?}");
    let calls = hooks(&f, "bank", 3).await;
    assert_eq!(calls.len(), 3, "one delivery, retried twice: {calls:?}");
    let answered: Vec<u64> = calls
        .iter()
        .map(|c| c["answered"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(answered, vec![503, 503, 200]);
    for c in &calls {
        assert_eq!(c["signature_valid"], true, "{c}");
        assert_eq!(c["body"]["delivery_id"], d[0].id.as_str());
    }
    let body = &calls[2]["body"]["event"];
    assert_eq!(body["application_id"], "app_w");
    assert_eq!(body["event"], "created");
    assert_eq!(body["reference"], "order-77");
    // The webhook declares neither sms nor email: the host passed it no contact data.
    assert!(
        body.get("phone").is_none() && body.get("email").is_none(),
        "{body}"
    );
    // Signed anew at each attempt (fresh timestamp), never by the plugin itself.
    assert!(calls.iter().all(|c| c["timestamp"].as_str().is_some()));
    f.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_tells_the_applicant_on_configured_events_only() {
    let f = Fixture::new(settings()).await;
    f.contact.set_channels(BTreeMap::from([(
        "notices".to_owned(),
        ChannelPlugins {
            plugins: vec!["channel-notify".into()],
            notifier: Some("channel-notify".into()),
        },
    )]));
    let notifier = &f.contact.notifier;
    notifier
        .application_event(&event(
            "notices",
            "app_n",
            ApplicationEventKind::Created,
            "verifying",
        ))
        .await
        .expect("queued");
    notifier
        .application_event(&event(
            "notices",
            "app_n",
            ApplicationEventKind::Issued,
            "issued",
        ))
        .await
        .expect("queued");
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let d = f.contact.outbox.deliveries("notices").await.expect("list");
        if d.len() == 2 && d.iter().all(|x| x.status == "delivered") {
            break d;
        }
        assert!(std::time::Instant::now() < end, "{d:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivered.len(), 2);
    // `created` is not in notify_events: only `issued` reached the applicant, by SMS and e-mail.
    let sms = f.sim().wait_sms(PHONE, 1, Duration::from_secs(10)).await;
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert!(sms[0]["text"].as_str().is_some_and(|t| t.contains("app_n")));
    let mails = f.sim().mails_to("zhangsan@example.cn").await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    f.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_refusing_the_signature_fails_the_delivery_at_once() {
    let mut f = Fixture::new(settings()).await;
    let base = format!("http://{}", f.sim_addr);
    let wrong_secret = load(
        "channel-webhook",
        "channel_webhook",
        f.sim_addr,
        serde_json::json!({"url": format!("{base}/partner/bank")}),
        &[("webhook_secret", "not-the-partner-secret")],
    )
    .await;
    f.plugins.insert("wrong-hook".into(), wrong_secret);
    f.task.abort();
    let (contact, task) = start(&f.settings, &f.storage, &f.keyring, &f.plugins);
    contact.set_channels(BTreeMap::from([(
        CHANNEL.to_owned(),
        ChannelPlugins {
            plugins: vec!["wrong-hook".into()],
            notifier: None,
        },
    )]));
    contact
        .notifier
        .application_event(&event(
            CHANNEL,
            "app_x",
            ApplicationEventKind::Rejected,
            "rejected",
        ))
        .await
        .expect("queued");
    f.contact = contact;
    f.task = task;
    let d = f.settled(1).await;
    assert_eq!(d[0].status, "failed", "{d:?}");
    assert_eq!(d[0].attempts, 1, "a 401 is not retried: {d:?}");
    assert!(
        d[0].last_error
            .as_deref()
            .is_some_and(|e| e.contains("401")),
        "{d:?}"
    );
    let calls = hooks(&f, "bank", 1).await;
    assert_eq!(calls[0]["signature_valid"], false);
    f.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_deliveries_survive_a_restart_and_are_sent_once() {
    let mut f = Fixture::new(settings()).await;
    // The gateways are down: the SMS stays queued, attempted and pending.
    drop(f.sim.take());
    f.contact
        .notifier
        .send_sms(CHANNEL, PHONE, "您的验证码为 135790")
        .await
        .expect("queued while the gateway is down");
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = f.contact.outbox.deliveries(CHANNEL).await.expect("list");
        if d.len() == 1 && d[0].attempts >= 1 {
            assert_eq!(d[0].status, "pending", "{d:?}");
            assert!(
                d[0].last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("connect")),
                "{d:?}"
            );
            break;
        }
        assert!(std::time::Instant::now() < end, "{d:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // "Restart": the delivery task and every service object go away; new ones are built over
    // the same database file, and the gateway is back.
    f.task.abort();
    let _ = (&mut f.task).await;
    let storage = Storage::open(&format!("sqlite://{}", f.tmp.path().join("a.db").display()))
        .await
        .expect("database reopened");
    f.sim = Some(VendorSim::start_with(
        f.sim_addr,
        API_KEY,
        None,
        Some(&partner_secret(f.tmp.path())),
    ));
    let (contact, task) = start(&f.settings, &storage, &f.keyring, &f.plugins);
    f.contact = contact;
    f.task = task;
    let d = f.settled(1).await;
    assert_eq!(d[0].status, "delivered", "{d:?}");
    let sms = f.sim().wait_sms(PHONE, 1, Duration::from_secs(10)).await;
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert_eq!(sms[0]["code"], "135790");
    f.task.abort();
}

/// Four digits whose text occurs in none of `files`, tried from a random start.
fn digits_absent_from(files: &[PathBuf]) -> [u8; 4] {
    let contents: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_default())
        .collect();
    let start = rand::random::<u16>() % 10_000;
    (0..10_000u16)
        .map(|i| (start + i) % 10_000)
        .find(|n| {
            let text = format!("{n:04}");
            contents
                .iter()
                .all(|b| !b.windows(4).any(|w| w == text.as_bytes()))
        })
        .map(|n| [n / 1000, n / 100 % 10, n / 10 % 10, n % 10].map(|d| d as u8))
        .expect("some four digits are absent from the files")
}

/// Decodes a PNG with Python's zlib (an independent decoder): checks the signature, every
/// chunk's CRC, the IHDR and the scanlines; returns (width, height, dark pixels).
fn decode_png(png: &[u8], dir: &Path) -> (u64, u64, u64) {
    let file = dir.join("captcha.png");
    std::fs::write(&file, png).expect("png written");
    let script = r#"
import json, struct, sys, zlib
b = open(sys.argv[1], 'rb').read()
assert b[:8] == b'\x89PNG\r\n\x1a\n', 'signature'
pos, idat, ihdr, kinds = 8, b'', None, []
while pos < len(b):
    n, = struct.unpack('>I', b[pos:pos+4]); kind = b[pos+4:pos+8]; data = b[pos+8:pos+8+n]
    crc, = struct.unpack('>I', b[pos+8+n:pos+12+n])
    assert zlib.crc32(kind + data) == crc, 'crc of ' + kind.decode()
    kinds.append(kind.decode())
    if kind == b'IHDR': ihdr = struct.unpack('>IIBBBBB', data)
    if kind == b'IDAT': idat += data
    pos += 12 + n
assert kinds[0] == 'IHDR' and kinds[-1] == 'IEND', kinds
w, h, depth, color, _, _, interlace = ihdr
assert depth == 8 and color == 0 and interlace == 0, ihdr
raw = zlib.decompress(idat)
assert len(raw) == h * (w + 1), len(raw)
rows = [raw[i*(w+1):(i+1)*(w+1)] for i in range(h)]
assert all(r[0] == 0 for r in rows), 'filter'
dark = sum(1 for r in rows for p in r[1:] if p < 100)
print(json.dumps([w, h, dark]))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python could not decode the PNG: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<u64> = serde_json::from_slice(&out.stdout).expect("json");
    (v[0], v[1], v[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captchas_are_pngs_one_use_and_bound_to_their_subject() {
    let f = Fixture::new(settings()).await;
    let captchas = &f.contact.captchas;
    let a = captchas.issue("app_c").await.expect("captcha");
    let b = captchas.issue("app_c").await.expect("captcha");
    assert!(a.id.starts_with("cap_") && a.id != b.id);
    assert_ne!(a.png, b.png);
    let (w, h, dark) = decode_png(&a.png, f.tmp.path());
    assert_eq!((w, h), (140, 50));
    assert!(dark > 300, "the digits are drawn: {dark} dark pixels");
    assert!(a.expires_at > ca_appliance::storage::unix_now());
    // A wrong answer uses it up: the right one cannot follow.
    assert!(matches!(
        captchas.redeem("app_c", &a.id, "abcd").await,
        Err(CaptchaError::Wrong)
    ));
    assert!(matches!(
        captchas.redeem("app_c", &a.id, "0000").await,
        Err(CaptchaError::Unknown)
    ));
    assert!(matches!(
        captchas.redeem("app_c", "cap_nope", "0000").await,
        Err(CaptchaError::Unknown)
    ));

    // With known digits (the test hook): the right answer passes once, for its subject only.
    let service = ca_appliance::notify::CaptchaService::new(f.storage.notify(), 120);
    let c = service
        .issue_digits("app_c", [4, 0, 7, 1])
        .await
        .expect("captcha");
    service
        .redeem("app_c", &c.id, " 4071 ")
        .await
        .expect("the right answer passes");
    assert!(matches!(
        service.redeem("app_c", &c.id, "4071").await,
        Err(CaptchaError::Unknown)
    ));
    let d = service
        .issue_digits("app_c", [9, 9, 1, 2])
        .await
        .expect("captcha");
    assert!(matches!(
        service.redeem("app_other", &d.id, "9912").await,
        Err(CaptchaError::Unknown)
    ));
    assert!(matches!(
        service.redeem("app_c", &d.id, "9912").await,
        Err(CaptchaError::Unknown)
    ));
    // Nothing of the answer is stored in clear. Four digits can occur by chance in the
    // hexadecimal ids the files hold, so the answer is chosen absent from both files and from
    // its own id: then only storing it could put it there.
    let files = ["a.db", "a.db-wal"].map(|file| f.tmp.path().join(file));
    let e = loop {
        let digits = digits_absent_from(&files);
        let answer: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        let e = service
            .issue_digits("app_c", digits)
            .await
            .expect("captcha");
        if e.id.contains(&answer) {
            continue;
        }
        for file in &files {
            assert!(
                !file_contains(file, answer.as_bytes()),
                "{} holds the answer {answer}",
                file.display()
            );
        }
        break e;
    };
    // Expiry.
    let short = ca_appliance::notify::CaptchaService::new(f.storage.notify(), 1);
    let g = short
        .issue_digits("app_c", [1, 2, 3, 4])
        .await
        .expect("captcha");
    while ca_appliance::storage::unix_now() <= g.expires_at {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(matches!(
        short.redeem("app_c", &g.id, "1234").await,
        Err(CaptchaError::Unknown)
    ));
    drop(e);
    f.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_key_rotation_reseals_queued_deliveries() {
    let mut f = Fixture::new(settings()).await;
    drop(f.sim.take());
    f.contact
        .notifier
        .send_sms(CHANNEL, PHONE, "您的验证码为 246802")
        .await
        .expect("queued while the gateway is down");
    f.task.abort();
    let _ = (&mut f.task).await;
    // What `data-key rotate` does to the rows: a new active key, the old one retiring; the
    // queued delivery is re-sealed, then the old key can be destroyed.
    let old = f.keyring.current();
    let old_key = old.active().expect("active").clone();
    let raw = DataKey::generate();
    let new_id = f
        .storage
        .data_keys()
        .add_active("pkcs11:object=test-wrap", &[0; 12], &[2; 48], "test")
        .await
        .expect("new key row");
    let new_key = DataKey::from_bytes(new_id, &raw);
    let both = KeySet::new(vec![(*old_key).clone(), new_key.clone()], Some(new_id));
    let (_, left) = f
        .storage
        .data_keys()
        .destroy_unused_retiring("test")
        .await
        .expect("destroy");
    assert_eq!(left, 1, "the queued delivery still needs the old key");
    let resealed = ca_appliance::notify::Outbox::reseal_all(&f.storage.notify(), &both)
        .await
        .expect("re-sealed");
    assert_eq!(resealed, 1);
    let (gone, left) = f
        .storage
        .data_keys()
        .destroy_unused_retiring("test")
        .await
        .expect("destroy");
    assert_eq!((gone, left), (vec![old_key.id()], 0));
    // Only the new key from now on: the delivery still goes out.
    let keyring = Arc::new(Keyring::fixed(KeySet::new(vec![new_key], Some(new_id))));
    f.sim = Some(VendorSim::start_with(
        f.sim_addr,
        API_KEY,
        None,
        Some(&partner_secret(f.tmp.path())),
    ));
    let (contact, task) = start(&f.settings, &f.storage, &keyring, &f.plugins);
    f.contact = contact;
    f.task = task;
    let d = f.settled(1).await;
    assert_eq!(d[0].status, "delivered", "{d:?}");
    let sms = f.sim().wait_sms(PHONE, 1, Duration::from_secs(10)).await;
    assert_eq!(sms[0]["code"], "246802");
    f.task.abort();
}

/// Two nodes on one PostgreSQL database, each with its own outbox task: while the gateway is
/// down each queued SMS is attempted only by the node holding its claim; the first node then
/// dies holding claims, and the survivor delivers every SMS, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_send_one_delivery_twice_and_a_survivor_takes_a_dead_nodes_over() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(partner_secret(tmp.path()), "partner-hook-secret").expect("secret");
    let db = system_tests::postgres::PgDatabase::create();
    let node_a = Storage::open(&db.url()).await.expect("node A");
    let node_b = Storage::open(&db.url()).await.expect("node B");
    let raw = DataKey::generate();
    let id = node_a
        .data_keys()
        .add_active("pkcs11:object=test-wrap", &[0; 12], &[1; 48], "test")
        .await
        .expect("data key row");
    let keyring = Arc::new(Keyring::fixed(KeySet::new(
        vec![DataKey::from_bytes(id, &raw)],
        Some(id),
    )));
    // The gateway is down at first (nothing listens on its address).
    let sim_addr = free_addr();
    let plugins = channel_plugins(sim_addr, serde_json::json!({})).await;
    let settings = ContactSettings {
        delivery_max_attempts: 1000,
        ..settings()
    };
    let (a, task_a) = start(&settings, &node_a, &keyring, &plugins);
    let (_b, task_b) = start(&settings, &node_b, &keyring, &plugins);
    let texts: Vec<String> = (0..10)
        .map(|i| format!("您的验证码为 {}", 500_000 + i))
        .collect();
    for text in &texts {
        a.notifier
            .send_sms(CHANNEL, PHONE, text)
            .await
            .expect("queued");
    }
    // Every delivery attempted (by its claimer) and still pending.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let deliveries = loop {
        let d = a.outbox.deliveries(CHANNEL).await.expect("list");
        if d.len() == texts.len() && d.iter().all(|x| x.attempts >= 1) {
            assert!(d.iter().all(|x| x.status == "pending"), "{d:?}");
            break d;
        }
        assert!(std::time::Instant::now() < end, "{d:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let leases = node_a.leases();
    let mut held_by_a = 0;
    for d in &deliveries {
        let (holder, _) = leases
            .holder_of(&format!("notification:{}", d.id))
            .await
            .expect("lease")
            .expect("every attempted delivery is claimed");
        assert!(holder == leases.holder() || holder == node_b.leases().holder());
        held_by_a += usize::from(holder == leases.holder());
    }
    assert!(
        held_by_a > 0,
        "node A (woken by its own queueing) claimed none"
    );

    // Node A dies holding its claims; the gateway comes back.
    task_a.abort();
    let _ = task_a.await;
    let sim = VendorSim::start_with(sim_addr, API_KEY, None, Some(&partner_secret(tmp.path())));
    // Node B delivers its own at once and A's once their claims expire (30 s).
    let end = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let d = a.outbox.deliveries(CHANNEL).await.expect("list");
        if d.iter().all(|x| x.status == "delivered") {
            break;
        }
        assert!(
            d.iter().all(|x| x.status != "failed") && std::time::Instant::now() < end,
            "{d:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sms = sim
        .wait_sms(PHONE, texts.len(), Duration::from_secs(5))
        .await;
    let mut codes: Vec<String> = sms.iter().map(|m| m["code"].to_string()).collect();
    codes.sort();
    let before = codes.len();
    codes.dedup();
    assert_eq!(before, texts.len(), "sent more than once: {sms:?}");
    assert_eq!(codes.len(), texts.len(), "{sms:?}");
    task_b.abort();
}
