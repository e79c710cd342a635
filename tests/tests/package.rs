//! The Debian package: built with `packaging/build-deb.sh` (dpkg-deb) from the test build,
//! installed with `dpkg --root` into a fresh root (an empty dpkg database and base-passwd's
//! /etc/passwd and /etc/group: no debootstrap, seconds instead of minutes), then checked: files
//! and modes, the service user, the directories, the documented set-up passing `check-config`,
//! and the installed unit rated OK or better by `systemd-analyze security --offline=true`.

#![allow(clippy::unwrap_used)] // tests may unwrap: a failure is the test failing

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use system_tests::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_package_installs_into_a_fresh_root_with_user_directories_and_an_ok_unit() {
    let bins = binaries();
    let work = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(
        Command::new(workspace_root().join("packaging/build-deb.sh"))
            .args(["--bin-dir", bins.to_str().unwrap(), "--fast", "--out"])
            .arg(work.path().join("out")),
    );
    assert!(ok, "build-deb.sh failed:\n{out}\n{err}");
    let deb = out.lines().last().unwrap().trim().to_owned();
    assert!(deb.ends_with(".deb"), "{out}");

    // A fresh root: dpkg's database and the base-passwd user and group lists, nothing else.
    let root = work.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    std::fs::copy(
        "/usr/share/base-passwd/passwd.master",
        root.join("etc/passwd"),
    )
    .unwrap();
    std::fs::copy(
        "/usr/share/base-passwd/group.master",
        root.join("etc/group"),
    )
    .unwrap();
    let mut dpkg = Command::new("dpkg");
    dpkg.arg(format!("--root={}", root.display()))
        // Maintainer scripts run on the host against DPKG_ROOT (the root has no shell); the
        // root has no libc or systemd packages to satisfy Depends.
        .args(["--force-script-chrootless", "--force-depends"]);
    let is_root = run(Command::new("id").arg("-u")).1.trim() == "0";
    if !is_root {
        dpkg.arg("--force-not-root");
    }
    let (ok, out, err) = run(dpkg.args(["-i", &deb]));
    assert!(ok, "dpkg -i failed:\n{out}\n{err}");
    let (ok, status, _) = run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f=${Status}", "ca-appliance"]));
    assert!(ok && status == "install ok installed", "{status}");

    // Files and modes.
    for bin in ["usr/bin/ca-appliance", "usr/bin/ca-plugin-worker"] {
        assert_eq!(mode(&root.join(bin)), 0o755, "{bin}");
    }
    let plugins: Vec<String> = std::fs::read_dir(root.join("usr/lib/ca-appliance/plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(plugins.len(), 7, "{plugins:?}");
    assert!(
        !plugins.iter().any(|p| p.contains("misbehaving")),
        "{plugins:?}"
    );
    for p in &plugins {
        assert_eq!(
            mode(&root.join("usr/lib/ca-appliance/plugins").join(p)),
            0o644
        );
    }
    let unit = root.join("lib/systemd/system/ca-appliance.service");
    assert_eq!(
        std::fs::read(&unit).unwrap(),
        std::fs::read(workspace_root().join("systemd/ca-appliance.service")).unwrap(),
        "the package installs systemd/ca-appliance.service"
    );
    for f in [
        "usr/lib/sysusers.d/ca-appliance.conf",
        "usr/lib/tmpfiles.d/ca-appliance.conf",
        "usr/share/doc/ca-appliance/examples/appliance.example.toml",
        "usr/share/doc/ca-appliance/README.md",
        "usr/share/ca-appliance/profiles/personal.toml",
        "usr/share/ca-appliance/channels/sheca-personal.toml",
        "usr/lib/ca-appliance/plugins/libplugin_channel_notify.so",
        "usr/lib/ca-appliance/plugins/libplugin_channel_webhook.so",
        "usr/lib/ca-appliance/libca_softtoken.so",
        "usr/share/ca-appliance/profiles/sm2-personal-enc.toml",
        "usr/share/ca-appliance/monitoring/alerts.yml",
        "usr/share/ca-appliance/monitoring/grafana-dashboard.json",
    ] {
        assert_eq!(mode(&root.join(f)), 0o644, "{f}");
    }

    // The packaged soft token is a working PKCS#11 module offering the SM2 mechanisms of the
    // `[hsm.sm2]` preset "ca-softtoken" (CKM_SM2_KEY_PAIR_GEN, CKM_SM2, CKM_SM3_SM2).
    let tokens = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(Command::new("pkcs11-tool")
        .env("CA_SOFTTOKEN_DIR", tokens.path())
        .arg("--module")
        .arg(root.join("usr/lib/ca-appliance/libca_softtoken.so"))
        .args(["--show-info", "-M"]));
    assert!(ok, "pkcs11-tool on the packaged soft token:\n{out}\n{err}");
    for m in [
        "ca-softtoken",
        "mechtype-0x80534D00",
        "mechtype-0x80534D01",
        "mechtype-0x80534D02",
    ] {
        assert!(out.contains(m), "{m}:\n{out}");
    }

    // The user (sysusers.d) and the directories (tmpfiles.d).
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("ca-appliance:"))
        .unwrap_or_else(|| panic!("no ca-appliance user:\n{passwd}"))
        .split(':')
        .collect();
    assert_eq!(user[5], "/var/lib/ca-appliance");
    assert_eq!(user[6], "/usr/sbin/nologin");
    let (uid, gid): (u32, u32) = (user[2].parse().unwrap(), user[3].parse().unwrap());
    assert!(uid < 1000, "a system user: {uid}");
    let state = root.join("var/lib/ca-appliance");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("crl")), 0o700);
    assert_eq!(mode(&root.join("etc/ca-appliance")), 0o750);
    assert_eq!(mode(&root.join("etc/ca-appliance/channels")), 0o750);
    if is_root {
        let meta = std::fs::metadata(&state).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (uid, gid),
            "state owned by the user"
        );
        let etc = std::fs::metadata(root.join("etc/ca-appliance")).unwrap();
        assert_eq!(
            (etc.uid(), etc.gid()),
            (0, gid),
            "config root-owned, group-readable"
        );
    }

    // The documented set-up's first steps: the example config and profiles under
    // /etc/ca-appliance pass check-config, and everything they write is under /var/lib.
    let etc = root.join("etc/ca-appliance");
    std::fs::copy(
        root.join("usr/share/doc/ca-appliance/examples/appliance.example.toml"),
        etc.join("appliance.toml"),
    )
    .unwrap();
    for p in ["personal.toml", "organisation.toml"] {
        std::fs::copy(
            root.join("usr/share/ca-appliance/profiles").join(p),
            etc.join("profiles").join(p),
        )
        .unwrap();
    }
    // The example itself is valid: check-config refuses only the files the operator has still
    // to provide on this bare root (the vendor's PKCS#11 module, the TLS files, and the state
    // directory that tmpfiles.d creates on a booted system), each with its fix.
    let (ok, out, err) = run(Command::new(root.join("usr/bin/ca-appliance")).args([
        "check-config",
        "--config",
        etc.join("appliance.toml").to_str().unwrap(),
    ]));
    assert!(!ok, "a bare root has no module or TLS files:\n{out}\n{err}");
    let expected = [
        "hsm.module",
        "database.url",
        "server.tls_cert",
        "server.tls_key",
        "server.client_ca",
    ];
    let refused: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("refused: "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(refused, expected, "check-config of the example:\n{err}");
    assert_eq!(
        err.lines()
            .filter(|l| l.trim_start().starts_with("fix: "))
            .count(),
        expected.len(),
        "{err}"
    );
    let example: toml::Table = std::fs::read_to_string(etc.join("appliance.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(example["status"]["crl_dir"]
        .as_str()
        .unwrap()
        .starts_with("/var/lib/ca-appliance/"));
    assert!(example["ca_output_dir"]
        .as_str()
        .unwrap()
        .starts_with("/var/lib/ca-appliance/"));
    assert!(example["database"]["url"]
        .as_str()
        .unwrap()
        .starts_with("sqlite:///var/lib/ca-appliance/"));

    // The installed unit is hardened to OK or better.
    let (_, out, err) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit));
    let verdict = format!("{out}{err}");
    let overall = verdict
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no verdict:\n{verdict}"));
    assert!(
        overall.contains(" OK") || overall.contains(" SAFE"),
        "{overall}\n{verdict}"
    );
    assert!(!verdict.contains("Failed to"), "{verdict}");
}
