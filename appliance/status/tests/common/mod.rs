//! Test PKI: a throwaway P-256 CA (key from the p256 crate, certificate by the openssl CLI),
//! end-entity and delegated-responder certificates issued by it with openssl, and helpers to
//! sign with the software key and to run the independent checkers (openssl, Python
//! `cryptography`).
#![allow(dead_code)]

use ca_status::ocsp::IssuerKeyHashes;
use der::{Decode, Encode};
use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use signature::hazmat::PrehashSigner;
use spki::AlgorithmIdentifierOwned;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::Certificate;

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = Status Test CA
O = ca-status tests
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_ee]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
extendedKeyUsage = serverAuth
[v3_ocsp]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
extendedKeyUsage = OCSPSigning
noCheck = ignored
";

/// One issued certificate on disk.
pub struct Issued {
    pub pem: PathBuf,
    pub der: Vec<u8>,
    pub serial: Vec<u8>,
}

/// The CA and its files in a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_key: SigningKey,
    pub ca: Issued,
    pub ca_subject_der: Vec<u8>,
    pub ca_ski: Vec<u8>,
    pub cnf: PathBuf,
}

/// Runs a command, returns its output; panics with stderr if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns stdout + stderr as text.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Both output streams of a command and whether it succeeded.
pub fn run_text(cmd: &mut Command) -> (bool, String) {
    let out = run(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn openssl() -> Command {
    Command::new("openssl")
}

/// Runs tests/py/check_status.py with `args`; asserts success and returns its output.
pub fn python_check(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/check_status.py");
    run_ok(Command::new("python3").arg(script).args(args))
}

fn read_cert(pem: &Path) -> Issued {
    let der_path = pem.with_extension("der");
    run_ok(
        openssl()
            .args(["x509", "-in"])
            .arg(pem)
            .args(["-outform", "DER", "-out"])
            .arg(&der_path),
    );
    let der = std::fs::read(&der_path).unwrap();
    let cert = Certificate::from_der(&der).unwrap();
    let serial = cert.tbs_certificate.serial_number.as_bytes().to_vec();
    Issued {
        pem: pem.to_path_buf(),
        der,
        serial,
    }
}

fn write_key(path: &Path, key: &SigningKey) {
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    std::fs::write(path, pem.as_bytes()).unwrap();
}

impl Pki {
    /// Makes a fresh CA.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let cnf = dir.path().join("openssl.cnf");
        std::fs::write(&cnf, OPENSSL_CNF).unwrap();
        let ca_key = SigningKey::random(&mut rand::rngs::OsRng);
        let key_path = dir.path().join("ca.key");
        write_key(&key_path, &ca_key);
        let pem = dir.path().join("ca.pem");
        run_ok(
            openssl()
                .args(["req", "-x509", "-new", "-sha256", "-days", "3650", "-key"])
                .arg(&key_path)
                .arg("-config")
                .arg(&cnf)
                .args([
                    "-extensions",
                    "v3_ca",
                    "-set_serial",
                    "0x01a2b3c4d5",
                    "-out",
                ])
                .arg(&pem),
        );
        let ca = read_cert(&pem);
        let cert = Certificate::from_der(&ca.der).unwrap();
        let ca_subject_der = cert.tbs_certificate.subject.to_der().unwrap();
        let (_, ski) = cert
            .tbs_certificate
            .get::<SubjectKeyIdentifier>()
            .unwrap()
            .unwrap();
        Pki {
            ca_key,
            ca,
            ca_subject_der,
            ca_ski: ski.0.as_bytes().to_vec(),
            cnf,
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues a certificate with `serial_hex` (e.g. "0x4f...") and the config section `ext`;
    /// `key` chooses the subject key (a fresh openssl key if `None`).
    pub fn issue(
        &self,
        name: &str,
        serial_hex: &str,
        ext: &str,
        key: Option<&SigningKey>,
    ) -> Issued {
        let key_path = self.path(&format!("{name}.key"));
        let csr = self.path(&format!("{name}.csr"));
        let pem = self.path(&format!("{name}.pem"));
        match key {
            Some(k) => write_key(&key_path, k),
            None => {
                run_ok(
                    openssl()
                        .args([
                            "genpkey",
                            "-algorithm",
                            "EC",
                            "-pkeyopt",
                            "ec_paramgen_curve:P-256",
                            "-out",
                        ])
                        .arg(&key_path),
                );
            }
        }
        run_ok(
            openssl()
                .args(["req", "-new", "-key"])
                .arg(&key_path)
                .args(["-subj", &format!("/CN={name}.example"), "-out"])
                .arg(&csr),
        );
        run_ok(
            openssl()
                .args(["x509", "-req", "-sha256", "-days", "365", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&self.ca.pem)
                .arg("-CAkey")
                .arg(self.path("ca.key"))
                .args(["-set_serial", serial_hex, "-extfile"])
                .arg(&self.cnf)
                .args(["-extensions", ext, "-out"])
                .arg(&pem),
        );
        read_cert(&pem)
    }

    /// The CA's hashes as computed by the code under test.
    pub fn ca_hashes(&self) -> IssuerKeyHashes {
        IssuerKeyHashes::from_cert_der(&self.ca.der).unwrap()
    }
}

/// ecdsa-with-SHA256, parameters absent.
pub fn ecdsa_sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_256,
        parameters: None,
    }
}

/// ecdsa-with-SHA384, parameters absent.
pub fn ecdsa_sha384() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: const_oid::db::rfc5912::ECDSA_WITH_SHA_384,
        parameters: None,
    }
}

/// ECDSA P-256 / SHA-256 over `msg`, DER signature.
pub fn sign(key: &SigningKey, msg: &[u8]) -> Vec<u8> {
    let sig: Signature = key.sign(msg);
    sig.to_der().as_bytes().to_vec()
}

/// ECDSA over an already computed digest, DER signature (what an HSM's CKM_ECDSA does).
pub fn sign_digest(key: &SigningKey, digest: &[u8]) -> Vec<u8> {
    let sig: Signature = key.sign_prehash(digest).unwrap();
    sig.to_der().as_bytes().to_vec()
}
