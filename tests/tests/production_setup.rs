//! The production set-up after `init --dir`: the ceremony file reviewed with `--dry-run` (which
//! touches neither the token nor the database) and carried out only with `--approve` of the
//! digest of the plan as reviewed, reporting the keys and certificates it made; and
//! `check-config` walking an operator through every refusal (key, file, what to do).

#![allow(clippy::unwrap_used)] // tests may unwrap: a failure is the test failing

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use system_tests::*;

/// A production `init --dir` against its own SoftHSM2 configuration (token dir `tokens/`).
struct Production {
    tmp: tempfile::TempDir,
}

impl Production {
    fn init(pin_file: &str) -> Production {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("tokens")).unwrap();
        std::fs::write(
            tmp.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\n",
                tmp.path().join("tokens").display()
            ),
        )
        .unwrap();
        let p = Production { tmp };
        let (ok, out, err) = run(p.cmd().args([
            "init",
            "--dir",
            p.etc().to_str().unwrap(),
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "production",
            "--pin-file",
            pin_file,
            "--public-url",
            "http://ca.example.cn",
            "--state-dir",
            p.state().to_str().unwrap(),
            "--api-addr",
            &free_addr().to_string(),
            "--public-addr",
            &free_addr().to_string(),
            "--metrics-addr",
            &free_addr().to_string(),
        ]));
        assert!(ok, "{out}\n{err}");
        p
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn etc(&self) -> PathBuf {
        self.path().join("etc")
    }

    fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    fn config(&self) -> PathBuf {
        self.etc().join("appliance.toml")
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(appliance_bin());
        c.env("SOFTHSM2_CONF", self.path().join("softhsm2.conf"));
        c
    }

    /// `ca-appliance ARGS --config appliance.toml`.
    fn appliance(&self, args: &[&str]) -> (bool, String, String) {
        run(self.cmd().args(args).arg("--config").arg(self.config()))
    }

    /// Every file under the token directory (SoftHSM2 keeps one file per object).
    fn token_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut dirs = vec![self.path().join("tokens")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        files.sort();
        files
    }
}

fn digest_of(dry_run_out: &str) -> String {
    dry_run_out
        .lines()
        .find_map(|l| l.strip_prefix("plan digest: "))
        .unwrap_or_else(|| panic!("no digest in:\n{dry_run_out}"))
        .trim()
        .to_owned()
}

fn openssl_x509(dir: &Path, file: &str, what: &str) -> String {
    let (ok, out, err) = run(Command::new("openssl")
        .current_dir(dir)
        .args(["x509", "-noout", what, "-in", file]));
    assert!(ok, "{err}");
    out.trim().to_owned()
}

#[test]
fn the_ceremony_runs_only_the_plan_reviewed_and_reports_what_it_made() {
    let p = Production::init("/nonexistent/pin");
    let pin = p.path().join("user.pin");
    std::fs::write(&pin, "4321").unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(p.config()).unwrap();
    std::fs::write(
        p.config(),
        text.replace("/nonexistent/pin", pin.to_str().unwrap()),
    )
    .unwrap();
    let (ok, out, err) = run(Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", p.path().join("softhsm2.conf"))
        .args([
            "--init-token",
            "--free",
            "--label",
            "production",
            "--pin",
            "4321",
            "--so-pin",
            "87654321",
        ]));
    assert!(ok, "{out}{err}");
    // The state directory the package's tmpfiles.d creates.
    std::fs::create_dir(p.state()).unwrap();
    let token_before = p.token_files();
    let db = p.state().join("appliance.db");
    let ceremony_file = p.etc().join("ceremony.toml");
    assert!(std::fs::read_to_string(&ceremony_file)
        .unwrap()
        .contains("[[ca]]"));
    assert!(
        !text.contains("[[ca]]") && text.contains("ceremony = \"ceremony.toml\""),
        "{text}"
    );

    // The dry run shows every CA, key type, subject and validity, and touches nothing.
    let (ok, out, err) = p.appliance(&["ceremony", "--dry-run"]);
    assert!(ok, "{out}\n{err}");
    for needle in [
        "create CA root generation 1: ec-p384 key generated on token \"production\"",
        "subject \"CN=Personal Issuing CA,O=CA Operator,C=CN\", signed by root, valid 3650 days",
        "create CA organisation generation 1",
        "create the audit key",
        "nothing was done",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    let reviewed = digest_of(&out);
    assert_eq!(
        p.token_files(),
        token_before,
        "the dry run touched the token"
    );
    assert!(!db.exists(), "the dry run created the database");

    // Without an approval, or with one of another plan, nothing happens.
    let (ok, _, err) = p.appliance(&["ceremony"]);
    assert!(!ok);
    assert!(
        err.contains(&format!("--approve {reviewed}")) && err.contains("nothing was done"),
        "{err}"
    );
    // The file is edited after the review: the reviewed digest no longer fits.
    let plan = std::fs::read_to_string(&ceremony_file).unwrap();
    std::fs::write(
        &ceremony_file,
        plan.replacen("validity_days = 3650", "validity_days = 1825", 1),
    )
    .unwrap();
    let (ok, _, err) = p.appliance(&["ceremony", "--approve", &reviewed]);
    assert!(!ok);
    assert!(err.contains("does not match this plan"), "{err}");
    assert!(
        err.contains("valid 1825 days"),
        "the refusal shows the plan: {err}"
    );
    assert_eq!(
        p.token_files(),
        token_before,
        "a refused ceremony touched the token"
    );
    assert!(!db.exists(), "a refused ceremony created the database");

    let (ok, out, err) = p.appliance(&["ceremony", "--dry-run"]);
    assert!(ok, "{err}");
    let approved = digest_of(&out);
    assert_ne!(approved, reviewed);
    let (ok, out, err) = p.appliance(&["ceremony", "--approve", &approved]);
    assert!(ok, "{out}\n{err}");
    // What it did: keys by label and URI, certificates by serial and fingerprint.
    let ca_dir = p.state().join("ca");
    for name in ["root", "personal", "organisation"] {
        assert!(
            out.contains(&format!("created CA {name} (generation 1)")),
            "{out}"
        );
        assert!(out.contains(&format!("key: label ca-{name}-g1-")), "{out}");
        let fingerprint = openssl_x509(&ca_dir, &format!("{name}.pem"), "-fingerprint");
        let sha256 = run(Command::new("openssl").current_dir(&ca_dir).args([
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            &format!("{name}.pem"),
        ]))
        .1;
        let sha256 = sha256.trim().rsplit('=').next().unwrap().to_owned();
        assert!(!fingerprint.is_empty());
        let serial = openssl_x509(&ca_dir, &format!("{name}.pem"), "-serial");
        let serial = serial.rsplit('=').next().unwrap().to_ascii_lowercase();
        assert!(
            out.contains(&format!(
                "certificate: serial {serial}, SHA-256 fingerprint {sha256}"
            )),
            "{name}: serial {serial} / fingerprint {sha256} not reported:\n{out}"
        );
    }
    assert!(out.contains("created the audit key (pkcs11:"), "{out}");
    assert!(out.contains("token=production"), "{out}");
    // The edited validity was the one carried out (personal: 1825 days, first in the file).
    let end = openssl_x509(&ca_dir, "personal.pem", "-enddate");
    let start = openssl_x509(&ca_dir, "personal.pem", "-startdate");
    let days = |s: &str| {
        let date = s.split_once('=').unwrap().1.to_owned();
        let (ok, out, _) = run(Command::new("date").args(["-d", &date, "+%s"]));
        assert!(ok);
        out.trim().parse::<i64>().unwrap()
    };
    let span = (days(&end) - days(&start)) / 86_400;
    assert!((1824..=1826).contains(&span), "personal valid {span} days");
    assert!(p.token_files().len() > token_before.len());

    // Done: the plan is now "nothing to do", and a run without approval changes nothing.
    let (ok, out, err) = p.appliance(&["ceremony", "--dry-run"]);
    assert!(ok, "{err}");
    assert!(out.contains("keep   CA root generation 1") && out.contains("nothing to do"));
    let after = p.token_files();
    let (ok, out, err) = p.appliance(&["ceremony"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("CA root exists (generation 1); left alone"),
        "{out}"
    );
    assert_eq!(p.token_files(), after);

    // `--plan FILE` plans from another ceremony file: one more CA, the others kept.
    let more = p.path().join("more.toml");
    std::fs::write(
        &more,
        format!(
            "{}\n[[ca]]\nname = \"servers\"\nparent = \"root\"\nkey = \"ec-p256\"\n\
             subject = \"CN=Server CA,O=CA Operator,C=CN\"\nvalidity_days = 1000\n",
            std::fs::read_to_string(&ceremony_file).unwrap()
        ),
    )
    .unwrap();
    let (ok, out, err) = p.appliance(&["ceremony", "--dry-run", "--plan", more.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("create CA servers generation 1"), "{out}");
    assert!(out.contains("keep   CA personal generation 1"), "{out}");
    assert!(!out.contains("create the audit key"), "{out}");
    // A re-key is a plan of its own, approved like any other.
    let (ok, _, err) = p.appliance(&["ceremony", "--new-generation", "personal"]);
    assert!(
        !ok && err.contains("create CA personal generation 2"),
        "{err}"
    );
}

/// Runs check-config; returns (ok, stdout, stderr).
fn check(p: &Production) -> (bool, String, String) {
    p.appliance(&["check-config"])
}

/// Asserts check-config refuses, with a refusal naming `key`, its file and a fix containing
/// `fix`, and returns stderr.
fn refused(p: &Production, key: &str, file: &Path, problem: &str, fix: &str) -> String {
    let (ok, out, err) = check(p);
    assert!(!ok, "check-config accepted it: {out}");
    let head = format!("refused: {key} in {}: ", file.display());
    let at = err
        .find(&head)
        .unwrap_or_else(|| panic!("no refusal {head:?} in:\n{err}"));
    // The problem (possibly several lines: a TOML error shows the line), then its fix.
    let rest = &err[at..];
    let fix_at = rest.find("\n  fix: ").expect("a fix line");
    let problem_text = &rest[..fix_at];
    assert!(
        problem_text.contains(problem),
        "{problem:?} not in {problem_text:?}"
    );
    let fix_line = rest[fix_at + 1..].lines().next().unwrap_or_default();
    assert!(fix_line.contains(fix), "fix {fix:?} not in {fix_line:?}");
    err
}

fn self_signed(dir: &Path, stem: &str) {
    openssl_self_signed(dir, stem, &format!("/CN={stem}"), 30);
}

#[test]
fn check_config_explains_every_refusal() {
    let tmp_pin = tempfile::tempdir().unwrap();
    let pin = tmp_pin.path().join("hsm.pin");
    let p = Production::init(pin.to_str().unwrap());
    let cfg = p.config();
    let tls = p.etc().join("tls");
    let state = p.state();

    // A fresh production directory: the state directory, the PIN file and the TLS files are
    // still missing, each refusal saying so (all of them at once).
    refused(
        &p,
        "database.url",
        &cfg,
        &format!("{} does not exist", state.display()),
        "create it, owned by the service user",
    );
    let err = refused(
        &p,
        "hsm.pin.file",
        &cfg,
        "cannot read",
        "write the PIN into that file (mode 0600",
    );
    for key in ["server.tls_cert", "server.tls_key", "server.client_ca"] {
        assert!(
            err.contains(&format!("refused: {key} in {}", cfg.display())),
            "{err}"
        );
    }
    assert!(err.contains("5 refusal(s)"), "{err}");
    std::fs::create_dir(&state).unwrap();

    std::fs::write(&pin, "1234").unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(
        &p,
        "hsm.pin.file",
        &cfg,
        "mode 644; others can read the PIN",
        &format!("chmod 600 {}", pin.display()),
    );
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();

    // TLS: a file that is not a certificate, a key of another certificate, then the right pair.
    std::fs::write(tls.join("server.pem"), "not a certificate\n").unwrap();
    refused(
        &p,
        "server.tls_cert",
        &cfg,
        "holds no CERTIFICATE block",
        "TLS server certificate (PEM",
    );
    self_signed(&tls, "server");
    self_signed(&tls, "other");
    std::fs::copy(tls.join("other.key"), tls.join("server.key")).unwrap();
    refused(
        &p,
        "server.tls_key",
        &cfg,
        "does not belong to the certificate in",
        "install the key the certificate was issued for",
    );
    self_signed(&tls, "server");
    std::fs::write(
        tls.join("client-ca.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    refused(
        &p,
        "server.client_ca",
        &cfg,
        "client-ca.pem",
        "CA certificate(s) that issue operator and channel client certificates",
    );
    self_signed(&tls, "client-ca");
    let (ok, out, err) = check(&p);
    assert!(
        ok && out.contains("configuration OK: 3 CA(s), 2 profile(s)"),
        "{out}{err}"
    );

    let text = std::fs::read_to_string(&cfg).unwrap();
    // A schema mistake: the file, line and what to do.
    std::fs::write(&cfg, format!("{text}\nsurprise = true\n")).unwrap();
    refused(&p, "configuration", &cfg, "surprise", "correct the TOML");
    // A value out of range, in the ceremony file the configuration names.
    let ceremony = p.etc().join("ceremony.toml");
    let plan = std::fs::read_to_string(&ceremony).unwrap();
    std::fs::write(&cfg, &text).unwrap();
    std::fs::write(&ceremony, plan.replace("ec-p384", "ec-p999")).unwrap();
    refused(
        &p,
        "configuration",
        &cfg,
        "ec-p999",
        "ceremony or channel file",
    );
    std::fs::write(&ceremony, &plan).unwrap();

    // A profile naming a CA the ceremony does not make.
    let profile = p.etc().join("profiles/personal.toml");
    let profile_text = std::fs::read_to_string(&profile).unwrap();
    let issuer_line = profile_text
        .lines()
        .find(|l| l.starts_with("issuer"))
        .unwrap()
        .to_owned();
    std::fs::write(
        &profile,
        profile_text.replace(&issuer_line, "issuer = \"nosuch\""),
    )
    .unwrap();
    refused(
        &p,
        "profiles_dir",
        &p.etc().join("profiles"),
        "unknown issuer CA nosuch",
        "correct the profile",
    );
    std::fs::write(&profile, &profile_text).unwrap();

    // A channel allowing a profile that does not exist.
    std::fs::write(
        &cfg,
        format!("{text}\n[[channel]]\nname = \"partner\"\nprofiles = [\"gold\"]\n"),
    )
    .unwrap();
    refused(
        &p,
        "profiles_dir",
        &p.etc().join("profiles"),
        "channel partner allows unknown profile gold",
        "or the channel naming it",
    );

    // Plugins: a missing library, then one whose hash is not the approved one.
    let lib = p.path().join("libplugin.so");
    let plugin = |path: &Path| {
        format!(
            "{text}\n[[plugin]]\nname = \"bank\"\npath = \"{}\"\nsha256 = \"{}\"\n",
            path.display(),
            "ab".repeat(32)
        )
    };
    std::fs::write(&cfg, plugin(&lib)).unwrap();
    refused(
        &p,
        "[[plugin]] bank path",
        &cfg,
        "cannot read",
        "install the plugin library there",
    );
    std::fs::write(&lib, b"not really a library").unwrap();
    let (_, actual, _) = run(Command::new("sha256sum").arg(&lib));
    let actual = actual.split_whitespace().next().unwrap().to_owned();
    refused(
        &p,
        "[[plugin]] bank sha256",
        &cfg,
        &format!("has sha256 {actual}, not the approved"),
        "ca-appliance plugin check PATH",
    );
    std::fs::write(&cfg, &text).unwrap();
    let (ok, out, err) = check(&p);
    assert!(ok, "{out}{err}");
}
