//! Shared test helpers: build the cdylibs under test, find them, make specs.

#![allow(dead_code, clippy::unwrap_used)]

pub mod http;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use plugin_host::{Isolation, PluginSpec, WorkerOptions};

/// The cargo target dir (`CARGO_TARGET_DIR` or the workspace's `target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// Builds `plugin-misbehaving` (debug) once per test binary and returns the .so path.
pub fn misbehaving_so() -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let status = Command::new(env!("CARGO"))
            // The same invocation as the system tests (tests/src/lib.rs WORKSPACE_BUILD): one
            // feature resolution, one build of the dependencies for every test binary.
            .args(["build", "--quiet", "--workspace", "--lib", "--bins"])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p plugin-misbehaving failed");
    });
    target_dir().join("debug/libplugin_misbehaving.so")
}

/// Worker options using this package's freshly built worker binary, with fast backoff.
pub fn worker_options() -> WorkerOptions {
    WorkerOptions {
        worker_path: Some(PathBuf::from(env!("CARGO_BIN_EXE_ca-plugin-worker"))),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..WorkerOptions::default()
    }
}

/// A spec for the misbehaving plugin with the given behaviour.
pub fn misbehaving(behaviour: &str, isolation: Isolation) -> PluginSpec {
    let path = misbehaving_so();
    let sha = plugin_host::sha256_file(&path).unwrap();
    let mut spec = PluginSpec::new("misbehaving", path, sha);
    spec.isolation = isolation;
    spec.config = serde_json::json!({ "behaviour": behaviour });
    spec.step_deadline = Duration::from_secs(2);
    spec
}

/// A start StepInput with a name.
pub fn start_input(id: &str) -> plugin_abi::doc::StepInput {
    plugin_abi::doc::StepInput {
        v: 1,
        verification_id: id.into(),
        now: "2026-11-24T12:00:00Z".into(),
        state: None,
        event: plugin_abi::doc::Event::Start {
            applicant: plugin_abi::doc::Applicant {
                name: Some("Test".into()),
                ..Default::default()
            },
        },
    }
}

/// Compiles `plugins/reference-c/static_code.c` with `cc` into `dir` and returns the .so path.
pub fn build_reference_c(dir: &std::path::Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = dir.join("libstatic_code.so");
    let status = Command::new("cc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O2",
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
        ])
        .arg("-I")
        .arg(root.join("plugins/abi/include"))
        .arg(root.join("plugins/reference-c/static_code.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "cc failed");
    out
}

/// Compiles the hostile C plugin (`plugins/reference-c/hostile.c`) into `dir` with its targets
/// compiled in (its constructor runs before any config): files to steal, where to drop copies,
/// and the library path it will be loaded from (to overwrite). Returns the .so path.
pub fn build_hostile_c(
    dir: &std::path::Path,
    targets: &[&std::path::Path],
    drop_dir: &std::path::Path,
) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = dir.join("libhostile_c.so");
    let list: Vec<String> = targets.iter().map(|p| p.display().to_string()).collect();
    let status = Command::new("cc")
        .args([
            "-std=gnu11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O2",
            "-shared",
            "-fPIC",
        ])
        .arg("-fvisibility=hidden")
        .arg(format!("-DHOSTILE_TARGETS=\"{}\"", list.join(":")))
        .arg(format!("-DHOSTILE_DROP_DIR=\"{}\"", drop_dir.display()))
        .arg(format!("-DHOSTILE_LIBRARY=\"{}\"", out.display()))
        .arg("-I")
        .arg(root.join("plugins/abi/include"))
        .arg(root.join("plugins/reference-c/hostile.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "cc hostile.c failed");
    out
}
