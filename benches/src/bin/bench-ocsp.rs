//! OCSP responses per second and latency of our responder loaded with 100,000 pre-signed
//! responses, beside `openssl ocsp` (index of the same serials) and nginx serving one of our
//! responses as a static file; then the time and peak RSS of a 1,000,000-entry full CRL.
//!
//! `cargo run --release -p benches --bin bench-ocsp [-- --seconds S --rounds R --certs N --crl-entries M --ocsp 0|1 --full-crl 0|1 --shards K]`
//! (`--ocsp 0`: the CRL part alone; `--full-crl 0`: only the K shard CRLs, e.g. for 10,000,000 entries)
//!
//! Certificate rows are inserted through the storage layer (`OcspStore::insert_synthetic_certificates`,
//! a doc-hidden bench-only method: real serials, placeholder DER, no audit rows) into a fresh
//! demo appliance before `serve` starts; the server then pre-signs them in the HSM (SoftHSM2)
//! exactly as in production. Load: `wrk -t2 -c8 --latency` (keep-alive) for our POST and GET
//! and for nginx (and again with 2 connections, for latency at moderate load); `ab -c 8` (a new
//! connection per request, which is all `openssl ocsp` supports) for `openssl ocsp` beside our
//! POST, and at the end of each round for our POST, our GET and nginx back to back (the figures
//! the new-connection goal compares). Each figure is the median of R rounds.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use ca_appliance::ca::Hierarchy;
use ca_appliance::config::ApplianceConfig;
use ca_appliance::status::CrlPublisher;
use ca_appliance::storage::Storage;
use ca_status::ocsp::{CertId, HashAlgorithm, IssuerKeyHashes};
use rand::RngCore;
use system_tests::{append_config, free_addr, public_request, run, DemoDir};

struct Options {
    seconds: u32,
    rounds: usize,
    certs: usize,
    crl_entries: usize,
    ocsp: bool,
    full_crl: bool,
    shards: u16,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        seconds: 5,
        rounds: 3,
        certs: 100_000,
        crl_entries: 1_000_000,
        ocsp: true,
        full_crl: true,
        shards: 64,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let v = it.next().ok_or(format!("{arg} needs a value"))?;
        let n = |v: &str| v.parse::<usize>().map_err(|e| format!("{arg}: {e}"));
        match arg.as_str() {
            "--seconds" => o.seconds = n(v)? as u32,
            "--rounds" => o.rounds = n(v)?,
            "--certs" => o.certs = n(v)?,
            "--crl-entries" => o.crl_entries = n(v)?,
            "--ocsp" => o.ocsp = n(v)? != 0,
            "--full-crl" => o.full_crl = n(v)? != 0,
            "--shards" => {
                o.shards = u16::try_from(n(v)?).map_err(|e| format!("{arg}: {e}"))?;
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.seconds == 0 || o.rounds == 0 || o.certs == 0 || o.shards == 0 {
        return Err("--seconds, --rounds, --certs and --shards must be positive".into());
    }
    Ok(o)
}

/// One load measurement.
#[derive(Debug, Clone, Copy)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn median(mut v: Vec<Load>) -> Load {
    if v.is_empty() {
        return Load {
            rps: f64::NAN,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
        };
    }
    let mid = v.len() / 2;
    let pick = |f: fn(&Load) -> f64, v: &mut Vec<Load>| {
        v.sort_by(|a, b| f(a).total_cmp(&f(b)));
        f(&v[mid])
    };
    Load {
        rps: pick(|l| l.rps, &mut v),
        p50_ms: pick(|l| l.p50_ms, &mut v),
        p99_ms: pick(|l| l.p99_ms, &mut v),
    }
}

/// A DER TLV with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A minimal OCSP request (one SHA-1 CertID, no nonce), as RFC 5019 clients send.
fn ocsp_request(issuer: &IssuerKeyHashes, serial: &[u8]) -> Result<Vec<u8>, String> {
    let id = CertId::new(HashAlgorithm::Sha1, issuer, serial).map_err(|e| e.to_string())?;
    let request = tlv(0x30, id.der());
    let list = tlv(0x30, &request);
    let tbs = tlv(0x30, &list);
    Ok(tlv(0x30, &tbs))
}

/// The same request with a 32-octet nonce extension: it asks for a live signature.
fn ocsp_request_with_nonce(
    issuer: &IssuerKeyHashes,
    serial: &[u8],
    nonce: &[u8; 32],
) -> Result<Vec<u8>, String> {
    let id = CertId::new(HashAlgorithm::Sha1, issuer, serial).map_err(|e| e.to_string())?;
    let request = tlv(0x30, id.der());
    let list = tlv(0x30, &request);
    // id-pkix-ocsp-nonce 1.3.6.1.5.5.7.48.1.2, extnValue = OCTET STRING { OCTET STRING nonce }
    let oid = [
        0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02,
    ];
    let value = tlv(0x04, &tlv(0x04, nonce));
    let extension = tlv(0x30, &[oid.as_slice(), &value].concat());
    let extensions = tlv(0xa2, &tlv(0x30, &extension));
    let tbs = tlv(0x30, &[list, extensions].concat());
    Ok(tlv(0x30, &tbs))
}

fn random_serials(n: usize) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::OsRng;
    (0..n)
        .map(|_| {
            let mut b = vec![0u8; 16];
            rng.fill_bytes(&mut b);
            b[0] = (b[0] & 0x7f) | 0x40;
            b
        })
        .collect()
}

fn pem_to_der(pem_path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(pem_path).map_err(|e| e.to_string())?;
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())
}

/// A wrk Lua script cycling through `requests` (POST bodies or GET paths).
fn wrk_script(dir: &Path, name: &str, requests: &[Vec<u8>], post: bool) -> Result<PathBuf, String> {
    let mut lua = String::from("local reqs = {}\n");
    for (i, r) in requests.iter().enumerate() {
        let esc: String = r.iter().map(|b| format!("\\{b}")).collect();
        if post {
            lua.push_str(&format!(
                "reqs[{}] = wrk.format(\"POST\", \"/ocsp\", {{[\"Content-Type\"] = \"application/ocsp-request\"}}, \"{esc}\")\n",
                i + 1
            ));
        } else {
            lua.push_str(&format!(
                "reqs[{}] = wrk.format(\"GET\", \"{esc}\")\n",
                i + 1
            ));
        }
    }
    lua.push_str(&format!(
        "local n = {}\nlocal i = 0\nrequest = function()\n  i = i % n + 1\n  return reqs[i]\nend\n",
        requests.len()
    ));
    let path = dir.join(name);
    std::fs::write(&path, lua).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Parses a wrk latency like `512.00us`, `1.20ms`, `2.00s` into milliseconds.
fn wrk_ms(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

fn wrk(url: &str, script: Option<&Path>, seconds: u32, conns: u32) -> Result<Load, String> {
    let mut cmd = Command::new("wrk");
    let threads = conns.min(2);
    cmd.args([
        &format!("-t{threads}"),
        &format!("-c{conns}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let (ok, out, err) = run(cmd.arg(url));
    if !ok {
        return Err(format!("wrk failed: {err}"));
    }
    if let Some(line) = out.lines().find(|l| l.contains("Non-2xx")) {
        return Err(format!("wrk saw errors: {line}"));
    }
    let mut load = Load {
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    };
    for line in out.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        match t.as_slice() {
            ["Requests/sec:", v] => load.rps = v.parse().unwrap_or(0.0),
            ["50%", v] => load.p50_ms = wrk_ms(v).unwrap_or(f64::NAN),
            ["99%", v] => load.p99_ms = wrk_ms(v).unwrap_or(f64::NAN),
            _ => {}
        }
    }
    if load.rps == 0.0 {
        return Err(format!("no rate in wrk output:\n{out}"));
    }
    Ok(load)
}

/// `ab -c 8` (HTTP/1.0, `Connection: close`: a new connection per request): POST `body`, or
/// GET when `body` is `None` (nginx serves GET only; our GET path is the RFC 5019 form).
fn ab(url: &str, body: Option<&Path>, seconds: u32) -> Result<Load, String> {
    let mut cmd = Command::new("ab");
    cmd.args([
        "-q",
        "-r",
        "-c",
        "8",
        "-n",
        "10000000",
        "-t",
        &seconds.to_string(),
    ]);
    if let Some(body) = body {
        cmd.arg("-p")
            .arg(body)
            .args(["-T", "application/ocsp-request"]);
    }
    let (ok, out, err) = run(cmd.arg(url));
    if !ok {
        return Err(format!("ab failed: {err}{out}"));
    }
    let mut load = Load {
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
    };
    for line in out.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        match t.as_slice() {
            ["Requests", "per", "second:", v, ..] => load.rps = v.parse().unwrap_or(0.0),
            ["50%", v] => load.p50_ms = v.parse().unwrap_or(f64::NAN),
            ["99%", v] => load.p99_ms = v.parse().unwrap_or(f64::NAN),
            ["Non-2xx", "responses:", v] => return Err(format!("ab saw {v} non-2xx responses")),
            _ => {}
        }
    }
    if load.rps == 0.0 {
        return Err(format!("no rate in ab output:\n{out}"));
    }
    Ok(load)
}

/// A child process killed (by its own pid) on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master then stops its workers (SIGKILL would orphan them, and
        // they would keep the bench lock's descriptor open).
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(addr: SocketAddr) -> Result<(), String> {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("nothing listens on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn sh(cmd: &mut Command) -> Result<String, String> {
    let (ok, out, err) = run(cmd);
    if ok {
        Ok(out)
    } else {
        Err(format!("{cmd:?}: {err}"))
    }
}

/// Starts `openssl ocsp` with its own CA, responder and an index of `serials`.
fn start_openssl_ocsp(
    dir: &Path,
    serials: &[Vec<u8>],
) -> Result<(ChildGuard, SocketAddr, IssuerKeyHashes), String> {
    let o = |args: &[&str]| sh(Command::new("openssl").current_dir(dir).args(args));
    o(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ossl-ca.key",
        "-out",
        "ossl-ca.pem",
        "-subj",
        "/CN=openssl bench CA",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ])?;
    o(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ossl-rsp.key",
        "-out",
        "ossl-rsp.csr",
        "-subj",
        "/CN=openssl bench responder",
    ])?;
    std::fs::write(
        dir.join("ossl-rsp.ext"),
        "extendedKeyUsage=OCSPSigning\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n",
    )
    .map_err(|e| e.to_string())?;
    o(&[
        "x509",
        "-req",
        "-in",
        "ossl-rsp.csr",
        "-CA",
        "ossl-ca.pem",
        "-CAkey",
        "ossl-ca.key",
        "-CAcreateserial",
        "-days",
        "7",
        "-extfile",
        "ossl-rsp.ext",
        "-out",
        "ossl-rsp.pem",
    ])?;
    let mut index = std::io::BufWriter::new(
        std::fs::File::create(dir.join("index.txt")).map_err(|e| e.to_string())?,
    );
    for s in serials {
        writeln!(
            index,
            "V\t301231235959Z\t\t{}\tunknown\t/CN=bench",
            hex::encode_upper(s)
        )
        .map_err(|e| e.to_string())?;
    }
    index.flush().map_err(|e| e.to_string())?;
    drop(index);
    std::fs::write(dir.join("index.txt.attr"), "unique_subject = no\n")
        .map_err(|e| e.to_string())?;
    let addr = free_addr();
    let child = Command::new("openssl")
        .current_dir(dir)
        .args([
            "ocsp",
            "-index",
            "index.txt",
            "-port",
            &addr.port().to_string(),
            "-rsigner",
            "ossl-rsp.pem",
            "-rkey",
            "ossl-rsp.key",
            "-CA",
            "ossl-ca.pem",
            "-nmin",
            "60",
            // drop a connection that sends nothing (ab leaves some at its time limit)
            "-timeout",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("ossl.log")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| e.to_string())?;
    let guard = ChildGuard(child);
    // No bare connect probe: `openssl ocsp` gives up on a connection without a request.
    std::thread::sleep(Duration::from_millis(500));
    let hashes = IssuerKeyHashes::from_cert_der(&pem_to_der(&dir.join("ossl-ca.pem"))?)
        .map_err(|e| e.to_string())?;
    Ok((guard, addr, hashes))
}

/// Starts nginx serving `resp.der` for every path, keep-alive.
fn start_nginx(dir: &Path, response: &[u8]) -> Result<(ChildGuard, SocketAddr), String> {
    std::fs::write(dir.join("resp.der"), response).map_err(|e| e.to_string())?;
    let addr = free_addr();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 100000000;\n  keepalive_timeout 60s;\n\
           client_body_temp_path {d}/nginx-body;\n  proxy_temp_path {d}/nginx-proxy;\n\
           fastcgi_temp_path {d}/nginx-fcgi;\n  uwsgi_temp_path {d}/nginx-uwsgi;\n  scgi_temp_path {d}/nginx-scgi;\n\
           server {{\n    listen {addr};\n    root {d};\n\
             location / {{ default_type application/ocsp-response; try_files /resp.der =404; }}\n  }}\n}}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("nginx: {e}"))?;
    let guard = ChildGuard(child);
    wait_port(addr)?;
    Ok((guard, addr))
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn export_softhsm(config: &ApplianceConfig) {
    if let Some(conf) = &config.hsm.softhsm2_conf {
        std::env::set_var("SOFTHSM2_CONF", conf);
    }
}

/// Child mode `--fill-revoked CONFIG N K`: adds N revoked certificate rows under `personal`,
/// each stored with its CRL shard among K (as issuance stores it for `crl_shards = K`).
async fn fill_revoked(config: &Path, n: usize, shards: u16) -> Result<(), String> {
    let config = ApplianceConfig::load(config).map_err(|e| e.to_string())?;
    let storage = Storage::open(&config.database.url)
        .await
        .map_err(|e| e.to_string())?;
    let ca = storage
        .authorities()
        .current()
        .await
        .map_err(|e| e.to_string())?;
    let ca_id = ca
        .iter()
        .find(|c| c.name == "personal")
        .ok_or("no personal CA")?
        .id;
    // In slices, so ten million rows never sit in memory at once.
    let mut left = n;
    while left > 0 {
        let take = left.min(1_000_000);
        left -= take;
        let mut serials = random_serials(take);
        // In key order: the primary-key B-tree is then appended to, not written at random pages.
        serials.sort_unstable();
        let rows: Vec<(String, Option<i64>)> = serials
            .iter()
            .map(|s| {
                let shard = ca_appliance::profile::crl_shard_of(s, shards).map(i64::from);
                (hex::encode(s), shard)
            })
            .collect();
        storage
            .ocsp()
            .insert_synthetic_certificates(ca_id, &rows, true)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Child mode `--crl CONFIG`: generates and publishes the full CRL of `personal`; prints
/// seconds, entries, bytes and this process's peak RSS.
async fn generate_crl(config: &Path) -> Result<(), String> {
    let config = ApplianceConfig::load(config).map_err(|e| e.to_string())?;
    export_softhsm(&config);
    let hsm = hsm::Hsm::open(&config.hsm_config())
        .await
        .map_err(|e| e.to_string())?;
    let storage = Storage::open(&config.database.url)
        .await
        .map_err(|e| e.to_string())?;
    let hierarchy = Hierarchy::from_records(
        storage
            .authorities()
            .current()
            .await
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let hierarchy = std::sync::Arc::new(hierarchy);
    // The CA signing capability comes from an issuer: CRLs pass the same lint/record/verify path.
    let issuer = ca_appliance::ca::issuance::Issuer::new(
        hsm,
        &storage,
        hierarchy.clone(),
        std::sync::Arc::new(config.load_profiles().map_err(|e| e.to_string())?),
        storage.certificates(),
    );
    let publisher = CrlPublisher::new(
        issuer.signer(),
        storage.crls(),
        &hierarchy,
        &config.status,
        &config.server.public_url,
    )
    .await
    .map_err(|e| e.to_string())?;
    let ca = hierarchy.get("personal").ok_or("no personal CA")?;
    let before = vm_hwm_kb();
    let start = Instant::now();
    let rec = publisher
        .publish_full(ca)
        .await
        .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(config.status.crl_dir.join("personal.crl"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "crl secs={secs:.3} entries={} bytes={bytes} hwm_before_kb={before} hwm_kb={}",
        rec.entries,
        vm_hwm_kb()
    );
    Ok(())
}

/// Child mode `--shards CONFIG N`: publishes the revoked rows of `personal` (profile `bench`,
/// as `--fill-revoked` writes them) as N shard CRLs (the `personal` profile with
/// `crl_shards = N`), then republishes one shard; prints both times and the peak RSS.
async fn publish_shards(config: &Path, shards: u16) -> Result<(), String> {
    let config = ApplianceConfig::load(config).map_err(|e| e.to_string())?;
    export_softhsm(&config);
    let hsm = hsm::Hsm::open(&config.hsm_config())
        .await
        .map_err(|e| e.to_string())?;
    let storage = Storage::open(&config.database.url)
        .await
        .map_err(|e| e.to_string())?;
    let hierarchy = std::sync::Arc::new(
        Hierarchy::from_records(
            storage
                .authorities()
                .current()
                .await
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?,
    );
    let profiles = config.load_profiles().map_err(|e| e.to_string())?;
    let mut profile = profiles
        .get("personal")
        .ok_or("no personal profile")?
        .clone();
    profile.name = "bench".into();
    profile.crl_shards = shards;
    let issuer = ca_appliance::ca::issuance::Issuer::new(
        hsm,
        &storage,
        hierarchy.clone(),
        std::sync::Arc::new(profiles),
        storage.certificates(),
    );
    let publisher = CrlPublisher::new(
        issuer.signer(),
        storage.crls(),
        &hierarchy,
        &config.status,
        &config.server.public_url,
    )
    .await
    .map_err(|e| e.to_string())?;
    let ca = hierarchy.get("personal").ok_or("no personal CA")?;
    let start = Instant::now();
    let all = publisher
        .publish_profile_shards(ca, &profile, None)
        .await
        .map_err(|e| e.to_string())?;
    let all_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    publisher
        .publish_profile_shards(ca, &profile, Some(0))
        .await
        .map_err(|e| e.to_string())?;
    let one_secs = start.elapsed().as_secs_f64();
    println!(
        "shards={} entries={} all_secs={all_secs:.3} one_secs={one_secs:.3} hwm_kb={}",
        all.len(),
        all.iter().map(|r| r.entries).sum::<i64>(),
        vm_hwm_kb()
    );
    Ok(())
}

fn child_value(out: &str, key: &str) -> Option<f64> {
    out.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

async fn bench(o: Options) -> Result<(), String> {
    system_tests::use_release_build();
    // This binary, read before the demo's workspace build may replace (and unlink) it; a private
    // copy runs the CRL child processes.
    let exe = std::env::current_exe()
        .and_then(std::fs::read)
        .map_err(|e| format!("reading the bench binary: {e}"))?;
    let demo = DemoDir::create();
    // Nonces are echoed (live-signed within the budget), so the flood phase has something to ask.
    append_config(&demo, "\n[status]\nocsp_nonce = true\n");
    let config = ApplianceConfig::load(&demo.config()).map_err(|e| e.to_string())?;
    let work = demo.path().join("bench");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    // A private copy of this binary for the CRL child processes (a rebuild may replace ours).
    let me = work.join("bench-ocsp-child");
    std::fs::write(&me, &exe).map_err(|e| format!("copy of the bench binary: {e}"))?;
    std::fs::set_permissions(&me, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("copy of the bench binary: {e}"))?;

    if !o.ocsp {
        return crl_part(&o, &demo, &config, &me).await;
    }

    // 1. certificate rows through the storage layer
    let serials = random_serials(o.certs);
    let hex_serials: Vec<String> = serials.iter().map(hex::encode).collect();
    let rows: Vec<(String, Option<i64>)> = hex_serials.iter().map(|s| (s.clone(), None)).collect();
    {
        let storage = Storage::open(&config.database.url)
            .await
            .map_err(|e| e.to_string())?;
        let cas = storage
            .authorities()
            .current()
            .await
            .map_err(|e| e.to_string())?;
        let ca_id = cas
            .iter()
            .find(|c| c.name == "personal")
            .ok_or("no personal CA")?
            .id;
        let t = Instant::now();
        storage
            .ocsp()
            .insert_synthetic_certificates(ca_id, &rows, false)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "inserted {} certificate rows in {:.1} s",
            o.certs,
            t.elapsed().as_secs_f64()
        );
    }

    // 2. serve; it pre-signs every certificate in the background
    let start = Instant::now();
    let server = demo.serve();
    let storage = Storage::open(&config.database.url)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let n = storage
            .ocsp()
            .count_responses()
            .await
            .map_err(|e| e.to_string())?;
        if n as usize >= o.certs {
            break;
        }
        if start.elapsed() > Duration::from_secs(900) {
            return Err(format!("only {n} responses pre-signed after 15 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let presign = start.elapsed().as_secs_f64();
    println!(
        "pre-signed {} OCSP responses in {presign:.1} s ({:.0}/s, SoftHSM2 P-256)",
        o.certs,
        o.certs as f64 / presign
    );
    drop(storage);

    // requests for 1000 of the certificates
    let pem = demo.path().join("ca/personal.pem");
    let issuer = IssuerKeyHashes::from_cert_der(&pem_to_der(&pem)?).map_err(|e| e.to_string())?;
    let sample: Vec<&Vec<u8>> = serials.iter().step_by((o.certs / 1000).max(1)).collect();
    let bodies: Vec<Vec<u8>> = sample
        .iter()
        .map(|s| ocsp_request(&issuer, s))
        .collect::<Result<_, _>>()?;
    let paths: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(b);
            format!(
                "/ocsp/{}",
                b64.replace('+', "%2B")
                    .replace('/', "%2F")
                    .replace('=', "%3D")
            )
            .into_bytes()
        })
        .collect();
    let (status, headers, one) =
        public_request(demo.public, "POST", "/ocsp", &[], bodies[0].clone()).await;
    if status != 200 || one.get(..7) != Some(&[0x30, 0x82, one[2], one[3], 0x0a, 0x01, 0x00][..]) {
        return Err(format!(
            "unexpected answer {status} {headers:?} {:02x?}",
            &one[..one.len().min(8)]
        ));
    }
    let post_lua = wrk_script(&work, "post.lua", &bodies, true)?;
    let get_lua = wrk_script(&work, "get.lua", &paths, false)?;
    // The live-signing flood: nonces for known certificates and never-issued serials.
    let mut flood_bodies = Vec::new();
    for (i, s) in sample.iter().take(200).enumerate() {
        let mut nonce = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        flood_bodies.push(ocsp_request_with_nonce(&issuer, s, &nonce)?);
        let unknown = [0x7e, 0x57, (i >> 8) as u8, i as u8];
        flood_bodies.push(ocsp_request_with_nonce(&issuer, &unknown, &nonce)?);
    }
    let flood_lua = wrk_script(&work, "flood.lua", &flood_bodies, true)?;
    std::fs::write(work.join("req.der"), &bodies[0]).map_err(|e| e.to_string())?;

    let (_nginx, nginx_addr) = start_nginx(&work, &one)?;
    let (_ossl, ossl_addr, ossl_issuer) = start_openssl_ocsp(&work, &serials)?;
    std::fs::write(
        work.join("ossl-req.der"),
        ocsp_request(&ossl_issuer, serials[0].as_slice())?,
    )
    .map_err(|e| e.to_string())?;
    // openssl must answer good for that request before we time it (it loads its index first)
    let start = Instant::now();
    loop {
        let (ok, out, err) = run(Command::new("openssl").current_dir(&work).args([
            "ocsp",
            "-reqin",
            "ossl-req.der",
            "-url",
            &format!("http://{ossl_addr}/"),
            "-CAfile",
            "ossl-ca.pem",
            "-issuer",
            "ossl-ca.pem",
            "-resp_text",
        ]));
        if ok && out.contains("Cert Status: good") {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(work.join("ossl.log")).unwrap_or_default();
            return Err(format!(
                "openssl ocsp self-check failed: {out}{err}\nresponder log: {log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    let ours = format!("http://{}", demo.public);
    let mut results: Vec<(&str, Vec<Load>)> = vec![
        ("ours POST  (wrk keep-alive)", vec![]),
        ("ours GET   (wrk keep-alive)", vec![]),
        ("nginx static (wrk keep-alive)", vec![]),
        ("ours POST  (ab, new conn each)", vec![]),
        ("openssl ocsp (ab, new conn each)", vec![]),
        ("ours POST  (wrk, 2 conns)", vec![]),
        ("ours GET   (wrk, 2 conns)", vec![]),
        ("nginx static (wrk, 2 conns)", vec![]),
        ("ours POST  during live flood", vec![]),
        ("live flood (2 conns, nonces)", vec![]),
        ("ours POST  (ab, beside nginx's)", vec![]),
        ("ours GET   (ab, new conn each)", vec![]),
        ("nginx static (ab, new conn each)", vec![]),
    ];
    let one_get = format!(
        "{ours}{}",
        String::from_utf8(paths[0].clone()).map_err(|e| e.to_string())?
    );
    for round in 0..o.rounds {
        let runs = [
            wrk(&ours, Some(&post_lua), o.seconds, 8),
            wrk(&ours, Some(&get_lua), o.seconds, 8),
            wrk(&format!("http://{nginx_addr}/ocsp"), None, o.seconds, 8),
            ab(
                &format!("{ours}/ocsp"),
                Some(&work.join("req.der")),
                o.seconds,
            ),
            ab(
                &format!("http://{ossl_addr}/"),
                Some(&work.join("ossl-req.der")),
                o.seconds,
            ),
            wrk(&ours, Some(&post_lua), o.seconds, 2),
            wrk(&ours, Some(&get_lua), o.seconds, 2),
            wrk(&format!("http://{nginx_addr}/ocsp"), None, o.seconds, 2),
        ];
        // Pre-signed answers while a flood asks for live signatures (same round, same cores).
        let flood = {
            let (url, script, seconds) = (ours.clone(), flood_lua.clone(), o.seconds + 2);
            std::thread::spawn(move || wrk(&url, Some(&script), seconds, 2))
        };
        std::thread::sleep(Duration::from_millis(700));
        let under_flood = wrk(&ours, Some(&post_lua), o.seconds, 8);
        let flood = flood
            .join()
            .unwrap_or_else(|_| Err("flood thread panicked".into()));
        // The new-connection runs compared with nginx's run back to back, after the same load.
        let closing = [
            ab(
                &format!("{ours}/ocsp"),
                Some(&work.join("req.der")),
                o.seconds,
            ),
            ab(&one_get, None, o.seconds),
            ab(&format!("http://{nginx_addr}/ocsp"), None, o.seconds),
        ];
        let runs = runs.into_iter().chain([under_flood, flood]).chain(closing);
        for (slot, r) in results.iter_mut().zip(runs) {
            match r {
                Ok(load) => slot.1.push(load),
                Err(e) => eprintln!("{}: run failed, left out: {e}", slot.0),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!("round {} of {} done", round + 1, o.rounds);
    }
    let mut server = server;
    if !server.is_running() {
        return Err("our server died during the load".into());
    }
    drop(server);

    println!(
        "\nOCSP, {} pre-signed responses, 2 cores, median of {} rounds of {} s:",
        o.certs, o.rounds, o.seconds
    );
    println!(
        "{:<34} {:>10} {:>9} {:>9}",
        "target", "resp/s", "p50 ms", "p99 ms"
    );
    let medians: Vec<Load> = results.iter().map(|(_, v)| median(v.clone())).collect();
    for ((name, _), m) in results.iter().zip(&medians) {
        println!(
            "{name:<34} {:>10.0} {:>9.3} {:>9.3}",
            m.rps, m.p50_ms, m.p99_ms
        );
    }
    let (post, get, nginx, ours_ab, ossl) =
        (medians[0], medians[1], medians[2], medians[3], medians[4]);
    let (post2, get2, nginx2) = (medians[5], medians[6], medians[7]);
    let (flooded, flood) = (medians[8], medians[9]);
    let (post_closing, get_closing, nginx_closing) = (medians[10], medians[11], medians[12]);
    println!(
        "pre-signed POST during a live-signing flood ({:.0} req/s of nonces): {:.0}/s p99 {:.2} ms \
         vs {:.0}/s p99 {:.2} ms unloaded: {:.2}x the rate",
        flood.rps,
        flooded.rps,
        flooded.p99_ms,
        post.rps,
        post.p99_ms,
        flooded.rps / post.rps
    );
    println!(
        "ratios: POST/openssl {:.1}x, GET/openssl {:.1}x (goal >= 5x); POST/nginx {:.2}, GET/nginx {:.2} (goal >= 0.9); \
         ours/openssl both new-conn {:.1}x; p99 POST {:.2} ms GET {:.2} ms (goal < 2 ms); \
         at 2 connections p99 POST {:.2} ms GET {:.2} ms (nginx {:.2} ms)",
        post.rps / ossl.rps,
        get.rps / ossl.rps,
        post.rps / nginx.rps,
        get.rps / nginx.rps,
        ours_ab.rps / ossl.rps,
        post.p99_ms,
        get.p99_ms,
        post2.p99_ms,
        get2.p99_ms,
        nginx2.p99_ms
    );

    println!(
        "goals (issue 17): GET/POST {:.2} (>= 0.95); POST/nginx {:.2}, GET/nginx {:.2} (>= 0.9); \
         p99 POST/nginx {:.2}, GET/nginx {:.2} (<= 1.5); new connection each (Connection: close) \
         POST/nginx {:.2}, GET/nginx {:.2} (>= 0.9)",
        get.rps / post.rps,
        post.rps / nginx.rps,
        get.rps / nginx.rps,
        post.p99_ms / nginx.p99_ms,
        get.p99_ms / nginx.p99_ms,
        post_closing.rps / nginx_closing.rps,
        get_closing.rps / nginx_closing.rps
    );

    crl_part(&o, &demo, &config, &me).await
}

/// Part 3: the full CRL of `crl_entries` revoked certificates, generated in child processes
/// (each with its own peak RSS), beside `openssl ca -gencrl`'s bytes per entry.
async fn crl_part(
    o: &Options,
    demo: &DemoDir,
    config: &ApplianceConfig,
    me: &Path,
) -> Result<(), String> {
    let pem = demo.path().join("ca/personal.pem");
    // 3. CRL with crl_entries revoked certificates (in child processes: own peak RSS)
    if o.crl_entries > 0 {
        let cfg = demo.config();
        let t = Instant::now();
        sh(Command::new(me)
            .arg("--fill-revoked")
            .arg(&cfg)
            .arg(o.crl_entries.to_string())
            .arg(o.shards.to_string()))?;
        println!(
            "\ninserted {} revoked rows in {:.1} s",
            o.crl_entries,
            t.elapsed().as_secs_f64()
        );
        if o.full_crl {
            let mut runs = Vec::new();
            for _ in 0..o.rounds {
                let out = sh(Command::new(me).arg("--crl").arg(&cfg))?;
                runs.push(out);
            }
            let mut secs: Vec<f64> = runs.iter().filter_map(|r| child_value(r, "secs")).collect();
            let mut hwm: Vec<f64> = runs
                .iter()
                .filter_map(|r| child_value(r, "hwm_kb"))
                .collect();
            secs.sort_by(f64::total_cmp);
            hwm.sort_by(f64::total_cmp);
            let last = runs.last().cloned().unwrap_or_default();
            println!(
                "full CRL runs: {}",
                runs.iter()
                    .map(|r| r.trim())
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            let entries = child_value(&last, "entries").unwrap_or(0.0);
            let bytes = child_value(&last, "bytes").unwrap_or(0.0);
            println!(
                "full CRL, {entries} entries, {:.1} MB ({:.1} bytes/entry): median {:.2} s (goal < 2 s), \
                 peak RSS of the generating process {:.0} MB (goal < 64 MB)",
                bytes / 1e6,
                bytes / entries.max(1.0),
                secs.get(secs.len() / 2).copied().unwrap_or(f64::NAN),
                hwm.get(hwm.len() / 2).copied().unwrap_or(f64::NAN) / 1024.0
            );
            let work = demo.path().join("bench");
            match openssl_crl_bytes_per_entry(&work, 100_000) {
                Ok(b) => println!(
                    "openssl ca -gencrl, same entry contents (keyCompromise + invalidityDate), 100,000 entries: {b:.1} bytes/entry"
                ),
                Err(e) => println!("openssl ca -gencrl reference failed: {e}"),
            }
            let crl = config.status.crl_dir.join("personal.crl");
            let (ok, _, err) = run(Command::new("openssl")
                .args(["crl", "-inform", "DER", "-noout", "-verify", "-in"])
                .arg(&crl)
                .arg("-CAfile")
                .arg(&pem));
            println!(
                "openssl crl -verify of the full CRL: {}",
                if ok && err.contains("verify OK") {
                    "OK"
                } else {
                    "FAILED"
                }
            );
        }
        // Partitioned: the same rows as K shard CRLs, all published, then one republished.
        let mut shard_runs = Vec::new();
        for _ in 0..o.rounds {
            shard_runs.push(sh(Command::new(me)
                .arg("--shards")
                .arg(&cfg)
                .arg(o.shards.to_string()))?);
        }
        let med = |key: &str| {
            let mut v: Vec<f64> = shard_runs
                .iter()
                .filter_map(|r| child_value(r, key))
                .collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        println!(
            "{} shard CRLs of the same {} entries: all published in median {:.2} s, one shard republished in {:.2} s, peak RSS {:.0} MB",
            o.shards,
            o.crl_entries,
            med("all_secs"),
            med("one_secs"),
            med("hwm_kb") / 1024.0
        );
    }
    Ok(())
}

/// Bytes per entry of `openssl ca -gencrl` (own P-256 CA) for `n` entries carrying what ours
/// carry: a 16-octet serial, revocationDate, reasonCode keyCompromise and an invalidityDate.
fn openssl_crl_bytes_per_entry(dir: &Path, n: usize) -> Result<f64, String> {
    let dir = dir.join("ossl-crl");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let o = |args: &[&str]| sh(Command::new("openssl").current_dir(&dir).args(args));
    o(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "ca.key",
    ])?;
    o(&[
        "req",
        "-new",
        "-x509",
        "-key",
        "ca.key",
        "-days",
        "30",
        "-subj",
        "/CN=openssl crl bench",
        "-out",
        "ca.pem",
    ])?;
    let mut index = std::io::BufWriter::new(
        std::fs::File::create(dir.join("index.txt")).map_err(|e| e.to_string())?,
    );
    for s in random_serials(n) {
        writeln!(
            index,
            "R\t301231235959Z\t261130100000Z,keyTime,20261130090000Z\t{}\tunknown\t/CN=bench",
            hex::encode_upper(s)
        )
        .map_err(|e| e.to_string())?;
    }
    index.flush().map_err(|e| e.to_string())?;
    drop(index);
    std::fs::write(dir.join("index.txt.attr"), "unique_subject = no\n")
        .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("crlnumber"), "01\n").map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ncertificate = ca.pem\n\
         private_key = ca.key\ndefault_md = sha256\ndefault_crl_days = 1\ncrl_extensions = e\n[e]\n\
         authorityKeyIdentifier = keyid:always\n",
    )
    .map_err(|e| e.to_string())?;
    o(&["ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem"])?;
    o(&[
        "crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der",
    ])?;
    let bytes = std::fs::metadata(dir.join("crl.der"))
        .map_err(|e| e.to_string())?
        .len();
    Ok(bytes as f64 / n as f64)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match args.first().map(String::as_str) {
        Some("--fill-revoked") if args.len() == 4 => match (args[2].parse(), args[3].parse()) {
            (Ok(n), Ok(k)) => rt.block_on(fill_revoked(Path::new(&args[1]), n, k)),
            (Err(e), _) | (_, Err(e)) => Err(format!("count: {e}")),
        },
        Some("--crl") if args.len() == 2 => rt.block_on(generate_crl(Path::new(&args[1]))),
        Some("--shards") if args.len() == 3 => match args[2].parse() {
            Ok(n) => rt.block_on(publish_shards(Path::new(&args[1]), n)),
            Err(e) => Err(format!("shards: {e}")),
        },
        _ => options(&args).and_then(|o| rt.block_on(bench(o))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-ocsp: {e}");
            let _ = std::io::stderr().lock().flush();
            std::process::ExitCode::FAILURE
        }
    }
}
