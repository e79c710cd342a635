//! Helpers shared by the end-to-end tests: build and start the real `ca-appliance` binary on a
//! fresh demo directory, talk to it over real mTLS, and run the independent checkers (`openssl`,
//! Python `cryptography`).

pub mod browser;
pub mod postgres;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace")
        .to_owned()
}

/// The cargo target directory in use.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

static RELEASE: OnceLock<bool> = OnceLock::new();

/// Makes [`binaries`] build and use release binaries (benchmarks); call before anything else.
pub fn use_release_build() {
    let _ = RELEASE.set(true);
}

/// The one cargo invocation (plus `--release` for benchmarks) every test uses to build binaries.
pub const WORKSPACE_BUILD: [&str; 5] = ["build", "--quiet", "--workspace", "--lib", "--bins"];

/// Builds the workspace binaries and plugin libraries once per process; returns their directory.
pub fn binaries() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let release = *RELEASE.get_or_init(|| false);
            // Always the same selection (the whole workspace's libraries and binaries: the
            // appliance, the worker, vendor-sim, every plugin cdylib), so every test binary
            // shares one build with one feature resolution instead of rebuilding dependencies.
            let mut cargo = Command::new(env!("CARGO"));
            cargo.args(WORKSPACE_BUILD);
            if release {
                cargo.arg("--release");
            }
            let status = cargo
                .current_dir(workspace_root())
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building ca-appliance failed");
            target_dir().join(if release { "release" } else { "debug" })
        })
        .clone()
}

/// Path of the `ca-appliance` binary (built on first use).
pub fn appliance_bin() -> PathBuf {
    binaries().join("ca-appliance")
}

/// A free loopback port (bound then released; good enough for tests on one machine).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("local addr")
}

/// Runs a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("command starts");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a Python 3 `script` with `args` (an independent implementation, or another process);
/// panics with its stderr if it fails; returns its stdout.
pub fn python(script: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 starts");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A demo appliance directory made by `ca-appliance init --demo`.
pub struct DemoDir {
    /// Keeps the directory alive.
    pub tmp: tempfile::TempDir,
    /// mTLS API address.
    pub api: SocketAddr,
    /// Public listener address.
    pub public: SocketAddr,
}

impl DemoDir {
    /// Runs `init --demo` in a fresh temp directory on free ports.
    pub fn create() -> DemoDir {
        DemoDir::create_with(&[])
    }

    /// Runs `init --demo` with `extra` arguments (e.g. `--sm2`).
    pub fn create_with(extra: &[&str]) -> DemoDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (api, public) = (free_addr(), free_addr());
        let (ok, out, err) = run(Command::new(appliance_bin())
            .args([
                "init",
                "--dir",
                tmp.path().to_str().expect("utf-8 temp path"),
                "--demo",
                "--api-addr",
                &api.to_string(),
                "--public-addr",
                &public.to_string(),
            ])
            .args(extra));
        assert!(ok, "init --demo failed:\n{out}\n{err}");
        DemoDir { tmp, api, public }
    }

    /// `init --demo --join SELF`: another node on fresh ports sharing this one's token, CAs and
    /// database (this demo must be on PostgreSQL).
    pub fn join(&self) -> DemoDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (api, public) = (free_addr(), free_addr());
        let (ok, out, err) = run(Command::new(appliance_bin())
            .args(["init", "--demo", "--dir"])
            .arg(tmp.path())
            .arg("--join")
            .arg(self.path())
            .args([
                "--api-addr",
                &api.to_string(),
                "--public-addr",
                &public.to_string(),
            ]));
        assert!(ok, "init --join failed:\n{out}\n{err}");
        DemoDir { tmp, api, public }
    }

    /// The text dump of `/crl/personal.crl` from this node, once `openssl crl -verify` accepts it
    /// against the personal CA.
    pub async fn personal_crl_text(&self) -> String {
        let (status, _, body) = public_get(self.public, "/crl/personal.crl").await;
        assert_eq!(status, 200);
        let der = self.path().join("fetched.crl");
        std::fs::write(&der, &body).expect("CRL written");
        let (ok, text, err) = run(Command::new("openssl")
            .current_dir(self.path())
            .args([
                "crl",
                "-inform",
                "DER",
                "-text",
                "-verify",
                "-CAfile",
                "ca/personal.pem",
            ])
            .args(["-noout", "-in"])
            .arg(&der));
        assert!(ok && err.contains("verify OK"), "{text}{err}");
        text
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// `DIR/appliance.toml`.
    pub fn config(&self) -> PathBuf {
        self.path().join("appliance.toml")
    }

    /// Starts `serve` and waits for its address line.
    pub fn serve(&self) -> Server {
        Server::start(&self.config())
    }

    /// The mTLS client configuration of the demo identity `who` (`operator`, `channel-demo`).
    pub fn client_tls(&self, who: &str) -> Arc<rustls::ClientConfig> {
        let tls = self.path().join("tls");
        tls_client(
            &tls.join("ca.pem"),
            Identity::Files(
                &tls.join(format!("{who}.pem")),
                &tls.join(format!("{who}.key")),
            ),
        )
    }

    /// Issues a `personal` certificate for `csr` as `who` (expects 201); returns the JSON
    /// answer (`serial`, `certificate`, `chain`).
    pub async fn issue_personal(&self, who: &str, csr: &str) -> serde_json::Value {
        self.issue(
            who,
            "personal",
            csr,
            serde_json::json!({"name": "Test Person"}),
        )
        .await
    }

    /// Issues a `profile` certificate for `csr` and `subject` as `who` (expects 201); returns
    /// the JSON answer (`serial`, `certificate`, `chain`).
    pub async fn issue(
        &self,
        who: &str,
        profile: &str,
        csr: &str,
        subject: serde_json::Value,
    ) -> serde_json::Value {
        let body = issue_body(profile, csr, subject);
        let (status, resp) = api_request(
            self.api,
            self.client_tls(who),
            "POST",
            "/api/v1/certificates",
            Some(body),
        )
        .await
        .expect("issuance request");
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&resp));
        json(&resp)
    }

    /// A JSON API request as the demo identity `who`; returns the status and the JSON answer
    /// (`Null` when the answer is not JSON).
    pub async fn call_json(
        &self,
        who: &str,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let body = body.map(|b| serde_json::to_vec(&b).expect("json"));
        let (status, answer) = api_request(self.api, self.client_tls(who), method, path, body)
            .await
            .expect("api request");
        (
            status,
            serde_json::from_slice(&answer).unwrap_or(serde_json::Value::Null),
        )
    }

    /// An OCSP request about the personal CA's certificates, written by `openssl ocsp
    /// ... -reqout out` in this directory (`args`: `-cert F`, `-serial 0xN`, `-no_nonce`...).
    pub fn openssl_ocsp_request(&self, args: &[&str], out: &str) -> Vec<u8> {
        let (ok, _, err) = run(Command::new("openssl")
            .current_dir(self.path())
            .args(["ocsp", "-issuer", "ca/personal.pem"])
            .args(args)
            .args(["-reqout", out]));
        assert!(ok, "openssl ocsp -reqout: {err}");
        std::fs::read(self.path().join(out)).expect("request written")
    }
}

/// A running `ca-appliance serve`; killed on drop.
pub struct Server {
    child: Child,
    /// Its stderr log file.
    pub log: PathBuf,
}

impl Server {
    /// Starts `serve --config path` and waits until it prints its listening line.
    pub fn start(config: &Path) -> Server {
        Server::start_under(config, &[])
    }

    /// Like [`Server::start`], run under `wrapper` (e.g. `["prlimit", "--nofile=512:512", "--"]`).
    pub fn start_under(config: &Path, wrapper: &[&str]) -> Server {
        let log = config.with_file_name("serve.log");
        let bin = appliance_bin();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let child = command
            .args(["serve", "--config", config.to_str().expect("utf-8 path")])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("serve starts");
        let mut server = Server { child, log };
        let stdout = server.child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        assert!(
            line.contains("\"api\""),
            "serve did not start: {line}\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        server
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log written so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Client identity for an mTLS request.
pub enum Identity<'a> {
    /// No client certificate at all.
    None,
    /// Certificate + key PEM files.
    Files(&'a Path, &'a Path),
}

/// Why an mTLS request did not produce an HTTP response.
#[derive(Debug)]
pub struct TransportError(pub String);

/// A TLS client trusting `ca_pem`, presenting `identity`.
pub fn tls_client(ca_pem: &Path, identity: Identity<'_>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_pem).expect("ca pem") {
        roots.add(c.expect("ca cert")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match identity {
        Identity::None => builder.with_no_client_auth(),
        Identity::Files(cert, key) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .expect("cert pem")
                .map(|c| c.expect("cert"))
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).expect("key pem");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    };
    Arc::new(config)
}

/// A keep-alive HTTP/1.1 connection over TLS.
pub struct ApiConnection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl ApiConnection {
    /// Connects and completes the TLS handshake (and, for TLS 1.3, learns of a refusal on first use).
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<ApiConnection, TransportError> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| TransportError(e.to_string()))?;
        tcp.set_nodelay(true).ok();
        let connector = tokio_rustls::TlsConnector::from(config);
        let name = ServerName::try_from("localhost").expect("valid name");
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| TransportError(e.to_string()))?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| TransportError(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(ApiConnection {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends one request; returns status and body.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), TransportError> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| TransportError(e.to_string()))?;
        self.sender
            .ready()
            .await
            .map_err(|e| TransportError(e.to_string()))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| TransportError(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| TransportError(e.to_string()))?
            .to_bytes();
        Ok((status, bytes.to_vec()))
    }
}

/// One request on a fresh connection.
pub async fn api_request(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Vec<u8>), TransportError> {
    let mut conn = ApiConnection::connect(addr, config).await?;
    conn.request(method, path, body).await
}

/// Plain HTTP GET on the public listener; returns status, headers and body.
pub async fn public_get(addr: SocketAddr, path: &str) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("http handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::builder()
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body.to_vec())
}

/// Runs the openssl CLI in `dir` with `args`, asserting success; returns its standard output.
pub fn openssl_in(dir: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run(Command::new("openssl").current_dir(dir).args(args));
    assert!(ok, "openssl {args:?}: {out}{err}");
    out
}

/// A self-signed EC P-256 certificate `stem.pem` for `subj` with its key `stem.key`, made in
/// `dir` by the openssl CLI (a CA or client of no concern to the appliance), valid `days`.
pub fn openssl_self_signed(dir: &Path, stem: &str, subj: &str, days: u32) {
    let (key, pem, days) = (
        format!("{stem}.key"),
        format!("{stem}.pem"),
        days.to_string(),
    );
    openssl_in(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-subj",
            subj,
            "-days",
            &days,
        ],
    );
}

/// An EC P-256 key `stem.key` and its certificate `stem.pem` for `subj` (as for `openssl req`),
/// made in `dir` and signed by `ca` (`ca.pem`, `ca.key` there) with the extension lines `ext`
/// (written to `stem.ext`), valid two days.
pub fn openssl_leaf(dir: &Path, stem: &str, subj: &str, ca: &str, ext: &str) {
    let [key, csr, ext_file, pem, ca_pem, ca_key] = [
        format!("{stem}.key"),
        format!("{stem}.csr"),
        format!("{stem}.ext"),
        format!("{stem}.pem"),
        format!("{ca}.pem"),
        format!("{ca}.key"),
    ];
    std::fs::write(dir.join(&ext_file), ext).expect("extension file written");
    openssl_in(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-subj",
            subj,
            "-out",
            &csr,
        ],
    );
    openssl_in(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext_file,
            "-out",
            &pem,
        ],
    );
}

/// Makes a key and CSR with the openssl CLI in `dir`; returns the CSR PEM.
/// `key_spec` is `ec:P-256`, `ec:P-384` or `rsa:BITS`.
pub fn openssl_csr(dir: &Path, stem: &str, key_spec: &str) -> String {
    let key = dir.join(format!("{stem}.key"));
    let csr = dir.join(format!("{stem}.csr"));
    let mut gen = Command::new("openssl");
    match key_spec.split_once(':') {
        Some(("ec", curve)) => gen
            .args(["genpkey", "-algorithm", "EC", "-pkeyopt"])
            .arg(format!("ec_paramgen_curve:{curve}")),
        Some(("rsa", bits)) => gen
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
            .arg(format!("rsa_keygen_bits:{bits}")),
        _ => panic!("bad key spec {key_spec}"),
    };
    let (ok, _, err) = run(gen.arg("-out").arg(&key));
    assert!(ok, "openssl genpkey: {err}");
    let (ok, _, err) = run(Command::new("openssl")
        .args(["req", "-new", "-subj", "/CN=from-csr-ignored", "-key"])
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    assert!(ok, "openssl req: {err}");
    std::fs::read_to_string(csr).expect("csr written")
}

/// JSON body of an issuance request.
pub fn issue_body(profile: &str, csr: &str, subject: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "profile": profile, "csr": csr, "subject": subject }))
        .expect("json")
}

/// Parses a JSON API answer.
pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// Plain HTTP request on the public listener with extra headers; returns status, headers, body.
pub async fn public_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, hyper::HeaderMap, Vec<u8>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("http handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body.to_vec())
}

/// Appends `text` to the demo's `appliance.toml` (e.g. a `[status]` section).
pub fn append_config(demo: &DemoDir, text: &str) {
    let mut config = std::fs::read_to_string(demo.config()).expect("read config");
    config.push_str(text);
    std::fs::write(demo.config(), config).expect("write config");
}

/// Sets `keys` (TOML lines) at the top of the demo's `[server]` section.
pub fn server_config(demo: &DemoDir, keys: &str) {
    let config = std::fs::read_to_string(demo.config()).expect("read config");
    let config = config.replacen("[server]\n", &format!("[server]\n{keys}\n"), 1);
    std::fs::write(demo.config(), config).expect("write config");
}

impl Server {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "TERM") and waits up to `deadline` for the exit; returns the exit
    /// code (`None`: killed by a signal). Panics if the process is still running after `deadline`.
    pub fn stop_with(&mut self, signal: &str, deadline: std::time::Duration) -> Option<i32> {
        signal_process(self.pid(), signal);
        self.wait(deadline)
    }

    /// Waits up to `deadline` for the exit; returns the exit code (see [`wait_exit`]).
    pub fn wait(&mut self, deadline: std::time::Duration) -> Option<i32> {
        wait_exit(&mut self.child, deadline)
    }
}

/// Sends `signal` (e.g. "TERM", "INT") to `pid` with kill(1).
pub fn signal_process(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{signal} {pid} failed");
}

/// Waits up to `deadline` for `child` to exit; returns its exit code (`None`: by a signal).
pub fn wait_exit(child: &mut Child, deadline: std::time::Duration) -> Option<i32> {
    let until = std::time::Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        assert!(
            std::time::Instant::now() < until,
            "process {} still running after {deadline:?}",
            child.id()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Live (not zombie) processes whose command line contains `args` in sequence, as pids.
pub fn processes_with_args(args: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let matches = words
            .windows(args.len())
            .any(|w| w.iter().zip(args).all(|(a, b)| *a == b.as_bytes()));
        if matches && process_alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Whether `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after the parenthesised command name
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The `ca-plugin-worker` processes started by the appliance process `pid`.
pub fn plugin_workers_of(pid: u32) -> Vec<u32> {
    processes_with_args(&["--parent-pid", &pid.to_string()])
}

/// A running `vendor-sim` (the carrier, bank, SMS, face, payout and registry simulator);
/// killed on drop.
pub struct VendorSim {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Drop for VendorSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl VendorSim {
    /// Starts it on `addr` with the demo's API key (and a callback secret file, to sign
    /// callbacks); waits for its listening line.
    pub fn start(addr: SocketAddr, api_key: &str, callback_secret: Option<&Path>) -> VendorSim {
        VendorSim::start_with(addr, api_key, callback_secret, None)
    }

    /// Like [`VendorSim::start`], and the partner webhook sink (`/partner/{name}`) checks
    /// signatures with the secret in `partner_secret` (the demo's
    /// `secrets/partner-webhook-secret`).
    pub fn start_with(
        addr: SocketAddr,
        api_key: &str,
        callback_secret: Option<&Path>,
        partner_secret: Option<&Path>,
    ) -> VendorSim {
        let mut cmd = Command::new(binaries().join("vendor-sim"));
        cmd.args(["--addr", &addr.to_string(), "--api-key", api_key]);
        if let Some(f) = callback_secret {
            cmd.arg("--callback-secret-file").arg(f);
        }
        if let Some(f) = partner_secret {
            cmd.arg("--partner-secret-file").arg(f);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("vendor-sim starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("vendor-sim stdout");
        assert!(line.contains("listening"), "vendor-sim: {line}");
        VendorSim { child, addr }
    }

    /// One plain HTTP request to the simulator; the JSON answer (`Null` if not JSON).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("vendor-sim reachable");
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
            self.addr,
            payload.len()
        );
        s.write_all(req.as_bytes()).await.expect("request sent");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("answer read");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        (
            status,
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Authenticated calls the simulator received at `endpoint` (`"POST /sms/v1/send"`).
    pub async fn received(&self, endpoint: &str) -> u64 {
        let (status, v) = self.http("GET", "/_sim/paths", None).await;
        assert_eq!(status, 200);
        v[endpoint].as_u64().unwrap_or(0)
    }

    /// The last SMS code sent to `phone`.
    pub async fn latest_code(&self, phone: &str) -> String {
        let (status, v) = self
            .http("GET", &format!("/_sim/sms?phone={phone}"), None)
            .await;
        assert_eq!(status, 200);
        v["latest"].as_str().expect("a code was sent").to_owned()
    }

    /// What confirms the last micro-deposit to `account`: its amount and the code printed in
    /// the remark (`"0.37 004711"`).
    pub async fn deposit_answer(&self, account: &str) -> String {
        let (status, v) = self
            .http("GET", &format!("/_sim/deposits?account={account}"), None)
            .await;
        assert_eq!(status, 200, "{v}");
        let last = v["deposits"].as_array().and_then(|d| d.last()).cloned();
        let last = last.expect("a deposit was paid");
        format!(
            "{} {}",
            last["amount"].as_str().expect("amount"),
            last["code"].as_str().expect("code")
        )
    }

    /// Every SMS sent to `phone`, oldest first (`{otp_id, sender, code, text?}`).
    pub async fn sms_to(&self, phone: &str) -> Vec<serde_json::Value> {
        let (status, v) = self
            .http("GET", &format!("/_sim/sms?phone={phone}"), None)
            .await;
        assert_eq!(status, 200, "{v}");
        v["messages"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (polling, up to `deadline`) until `phone` has received at least `count` SMS;
    /// returns them all.
    pub async fn wait_sms(
        &self,
        phone: &str,
        count: usize,
        deadline: std::time::Duration,
    ) -> Vec<serde_json::Value> {
        let end = std::time::Instant::now() + deadline;
        loop {
            let msgs = self.sms_to(phone).await;
            if msgs.len() >= count {
                return msgs;
            }
            assert!(
                std::time::Instant::now() < end,
                "{phone} received {} SMS, expected {count}",
                msgs.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Every e-mail sent to `to`, oldest first (`{from, subject, text}`).
    pub async fn mails_to(&self, to: &str) -> Vec<serde_json::Value> {
        let (status, v) = self.http("GET", &format!("/_sim/mail?to={to}"), None).await;
        assert_eq!(status, 200, "{v}");
        v["mails"].as_array().cloned().unwrap_or_default()
    }

    /// Every call the partner webhook `/partner/{partner}` received, oldest first
    /// (`{timestamp, signature, signature_valid, body, answered}`).
    pub async fn webhook_calls(&self, partner: &str) -> Vec<serde_json::Value> {
        let (status, v) = self
            .http("GET", &format!("/_sim/webhooks?partner={partner}"), None)
            .await;
        assert_eq!(status, 200, "{v}");
        v["calls"].as_array().cloned().unwrap_or_default()
    }
}

/// `ca-appliance ceremony --config CONFIG EXTRA...` as an operator runs it: the plan reviewed
/// with `--dry-run`, then carried out with `--approve` of its digest (when it changes anything).
pub fn reviewed_ceremony(config: &Path, extra: &[&str]) -> (bool, String, String) {
    let (ok, out, err) = run(Command::new(appliance_bin())
        .args(["ceremony", "--dry-run", "--config"])
        .arg(config)
        .args(extra));
    if !ok {
        return (ok, out, err);
    }
    let mut cmd = Command::new(appliance_bin());
    cmd.args(["ceremony", "--config"]).arg(config).args(extra);
    if let Some(digest) = out.lines().find_map(|l| l.strip_prefix("plan digest: ")) {
        cmd.args(["--approve", digest.trim()]);
    }
    run(&mut cmd)
}
