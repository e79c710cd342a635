//! The mTLS listener: TLS with a required client certificate, and who that certificate is.
//!
//! rustls verifies the client chain against the configured client CA during the handshake; a
//! missing, untrusted or revoked certificate (optional client CRL), one without the clientAuth
//! EKU or with several common names, never reaches HTTP. The verified leaf's SHA-256
//! fingerprint, a subjectAltName or its single common name then maps to a [`Caller`] through the
//! `[[client]]` table, attached to every request of the connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use der::Decode;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{ChannelConfig, ClientConfig, ClientMatch, ClientRole};
use crate::listener::Handshake;

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// Who is calling, decided by the verified client certificate.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A CA operator.
    Operator {
        /// Certificate common name.
        name: String,
    },
    /// A channel (partner platform).
    Channel {
        /// Its configuration.
        channel: Arc<ChannelConfig>,
    },
    /// A registration-authority officer (reviews applications).
    RaOfficer {
        /// Certificate common name (or the matcher that named it).
        name: String,
    },
    /// An auditor (read-only).
    Auditor {
        /// Certificate common name (or the matcher that named it).
        name: String,
    },
    /// A relying party (login challenges, signature verification).
    RelyingParty {
        /// Certificate common name (or the matcher that named it).
        name: String,
    },
    /// A certificate from the trusted client CA that no `[[client]]` entry names.
    Unknown {
        /// Its common name, if any.
        common_name: Option<String>,
    },
}

impl Caller {
    /// The caller's role, as named in `[[client]] role` (`unknown` for an unregistered one).
    pub fn role(&self) -> &'static str {
        match self {
            Caller::Operator { .. } => ClientRole::Operator.as_str(),
            Caller::Channel { .. } => ClientRole::Channel.as_str(),
            Caller::RaOfficer { .. } => ClientRole::RaOfficer.as_str(),
            Caller::Auditor { .. } => ClientRole::Auditor.as_str(),
            Caller::RelyingParty { .. } => ClientRole::RelyingParty.as_str(),
            Caller::Unknown { .. } => "unknown",
        }
    }

    /// The audit-log actor string.
    pub fn actor(&self) -> String {
        match self {
            Caller::Operator { name } => format!("operator:{name}"),
            Caller::Channel { channel } => format!("channel:{}", channel.name),
            Caller::RaOfficer { name } => format!("ra_officer:{name}"),
            Caller::Auditor { name } => format!("auditor:{name}"),
            Caller::RelyingParty { name } => format!("relying_party:{name}"),
            Caller::Unknown { .. } => "unknown".into(),
        }
    }
}

/// Maps verified client certificates to callers.
#[derive(Debug, Default)]
pub struct ClientDirectory {
    entries: BTreeMap<ClientMatch, Caller>,
}

impl ClientDirectory {
    /// Builds the directory from the `[[client]]` and `[[channel]]` tables.
    pub fn new(clients: &[ClientConfig], channels: &[ChannelConfig]) -> Self {
        let mut entries = BTreeMap::new();
        for c in clients {
            let Some(matcher) = c.matcher() else {
                continue; // rejected by config validation already
            };
            let name = match &matcher {
                ClientMatch::Fingerprint(f) => f.chars().take(16).collect(),
                ClientMatch::San(s) | ClientMatch::CommonName(s) => s.clone(),
            };
            let caller = match (c.role, &c.channel) {
                (ClientRole::Operator, _) => Caller::Operator { name },
                (ClientRole::RaOfficer, _) => Caller::RaOfficer { name },
                (ClientRole::Auditor, _) => Caller::Auditor { name },
                (ClientRole::RelyingParty, _) => Caller::RelyingParty { name },
                (ClientRole::Channel, Some(name)) => {
                    match channels.iter().find(|ch| &ch.name == name) {
                        Some(ch) => Caller::Channel {
                            channel: Arc::new(ch.clone()),
                        },
                        None => continue, // rejected by config validation already
                    }
                }
                (ClientRole::Channel, None) => continue,
            };
            entries.insert(matcher, caller);
        }
        Self { entries }
    }

    /// The caller for a verified leaf certificate (DER): by fingerprint, then by
    /// subjectAltName, then by its single common name.
    pub fn identify(&self, leaf: &[u8]) -> Caller {
        let Ok(identity) = ClientIdentity::parse(leaf) else {
            return Caller::Unknown { common_name: None };
        };
        let fingerprint = ClientMatch::Fingerprint(hex::encode(Sha256::digest(leaf)));
        let candidates = std::iter::once(fingerprint)
            .chain(identity.sans.iter().cloned().map(ClientMatch::San))
            .chain(identity.common_name.clone().map(ClientMatch::CommonName));
        for m in candidates {
            if let Some(caller) = self.entries.get(&m) {
                return caller.clone();
            }
        }
        Caller::Unknown {
            common_name: identity.common_name,
        }
    }
}

/// Why a client certificate is refused at the handshake although it chains to the client CA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientCertError {
    /// Not a parsable X.509 certificate.
    #[error("client certificate does not parse")]
    Malformed,
    /// No extendedKeyUsage, or one without id-kp-clientAuth.
    #[error("client certificate lacks the clientAuth extended key usage")]
    NoClientAuth,
    /// More than one subject common name: which one names the caller would be ambiguous.
    #[error("client certificate has several common names")]
    SeveralCommonNames,
}

/// What identifies a client certificate: its single CN and its SAN values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject common name, if there is exactly one.
    pub common_name: Option<String>,
    /// dNSName, rfc822Name and URI subjectAltName values.
    pub sans: Vec<String>,
}

impl ClientIdentity {
    /// Parses `leaf` and enforces the rules a client certificate must meet: the clientAuth EKU
    /// present, at most one CN.
    pub fn parse(leaf: &[u8]) -> Result<Self, ClientCertError> {
        use x509_cert::ext::pkix::name::GeneralName;
        use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
        let cert =
            x509_cert::Certificate::from_der(leaf).map_err(|_| ClientCertError::Malformed)?;
        let tbs = &cert.tbs_certificate;
        let exts = tbs.extensions.as_deref().unwrap_or_default();
        let eku = exts
            .iter()
            .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_EXT_KEY_USAGE)
            .and_then(|e| ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).ok());
        if !eku.is_some_and(|e| e.0.contains(&const_oid::db::rfc5280::ID_KP_CLIENT_AUTH)) {
            return Err(ClientCertError::NoClientAuth);
        }
        let mut cns = Vec::new();
        for rdn in tbs.subject.0.iter() {
            for atv in rdn.0.iter() {
                if atv.oid == const_oid::db::rfc4519::CN {
                    cns.push(directory_string(&atv.value));
                }
            }
        }
        if cns.len() > 1 {
            return Err(ClientCertError::SeveralCommonNames);
        }
        let mut sans = Vec::new();
        if let Some(san) = exts
            .iter()
            .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)
            .and_then(|e| SubjectAltName::from_der(e.extn_value.as_bytes()).ok())
        {
            for name in san.0 {
                match name {
                    GeneralName::DnsName(s) => sans.push(s.as_str().to_owned()),
                    GeneralName::Rfc822Name(s) => sans.push(s.as_str().to_owned()),
                    GeneralName::UniformResourceIdentifier(s) => sans.push(s.as_str().to_owned()),
                    _ => {}
                }
            }
        }
        Ok(Self {
            common_name: cns.pop().flatten(),
            sans,
        })
    }
}

fn directory_string(value: &der::Any) -> Option<String> {
    if let Ok(s) = der::asn1::Utf8StringRef::try_from(value) {
        return Some(s.as_str().to_owned());
    }
    if let Ok(s) = der::asn1::PrintableStringRef::try_from(value) {
        return Some(s.as_str().to_owned());
    }
    None
}

/// The client CA's verifier (chain, validity, CRL) plus the appliance's own rules
/// ([`ClientIdentity::parse`]), so a refused certificate fails the handshake itself.
#[derive(Debug)]
struct ClientRules {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for ClientRules {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        ClientIdentity::parse(end_entity.as_ref()).map_err(|e| {
            tracing::info!(error = %e, "client certificate refused");
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )
        })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsSetupError> {
    let pem_err = |reason: String| TlsSetupError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| pem_err(e.to_string()))?;
    let crls: Vec<CertificateRevocationListDer<'static>> = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| pem_err(e.to_string()))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(pem_err("no CRL".into()));
    }
    Ok(crls)
}

/// Builds the rustls server configuration requiring client certificates from `client_ca`
/// (refusing those listed on `client_crl`, if given, and those breaking [`ClientIdentity`]).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    client_crl: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let pem_err = |path: &Path, reason: String| TlsSetupError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(cert, "no certificate".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in
        CertificateDer::pem_file_iter(client_ca).map_err(|e| pem_err(client_ca, e.to_string()))?
    {
        let ca = ca.map_err(|e| pem_err(client_ca, e.to_string()))?;
        roots
            .add(ca)
            .map_err(|e| pem_err(client_ca, e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(pem_err(client_ca, "no trust anchor".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if let Some(crl) = client_crl {
        builder = builder
            .with_crls(read_crls(crl)?)
            .only_check_end_entity_revocation();
    }
    let inner = builder
        .build()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
    let verifier: Arc<dyn ClientCertVerifier> = Arc::new(ClientRules { inner });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The API listener's handshake: TLS with a required, verified client certificate, whose
/// [`Caller`] is attached to every request of the connection. Served by [`crate::listener`]
/// (connection cap, handshake and request timeouts, graceful shutdown).
#[derive(Clone)]
pub struct MtlsHandshake {
    acceptor: TlsAcceptor,
    clients: Arc<ClientDirectory>,
}

impl MtlsHandshake {
    /// Handshakes with `tls`, identifying callers through `clients`.
    pub fn new(tls: Arc<rustls::ServerConfig>, clients: Arc<ClientDirectory>) -> Self {
        Self {
            acceptor: TlsAcceptor::from(tls),
            clients,
        }
    }
}

impl Handshake for MtlsHandshake {
    type Io = TlsStream<TcpStream>;
    type Extension = Caller;

    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Option<(TlsStream<TcpStream>, Caller)> {
        let tls = match self.acceptor.accept(tcp).await {
            Ok(tls) => tls,
            Err(e) => {
                tracing::info!(%peer, error = %e, "TLS handshake refused");
                return None;
            }
        };
        // A required-client-auth verifier always yields a leaf; refuse rather than assume.
        let leaf = tls.get_ref().1.peer_certificates()?.first()?;
        let caller = self.clients.identify(leaf.as_ref());
        Some((tls, caller))
    }
}
