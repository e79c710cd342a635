//! The mTLS listener: TLS with a required client certificate, and who that certificate is.
//!
//! rustls verifies the client chain against the configured client CA during the handshake; a
//! missing or untrusted certificate never reaches HTTP. The verified leaf's common name then maps
//! to a [`Caller`] through the `[[client]]` table, attached to every request of the connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use der::Decode;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{ChannelConfig, ClientConfig, ClientRole};
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
    /// A certificate from the trusted client CA that no `[[client]]` entry names.
    Unknown {
        /// Its common name, if any.
        common_name: Option<String>,
    },
}

impl Caller {
    /// The audit-log actor string.
    pub fn actor(&self) -> String {
        match self {
            Caller::Operator { name } => format!("operator:{name}"),
            Caller::Channel { channel } => format!("channel:{}", channel.name),
            Caller::Unknown { .. } => "unknown".into(),
        }
    }
}

/// Maps verified client certificates to callers.
#[derive(Debug, Default)]
pub struct ClientDirectory {
    by_cn: BTreeMap<String, Caller>,
}

impl ClientDirectory {
    /// Builds the directory from the `[[client]]` and `[[channel]]` tables.
    pub fn new(clients: &[ClientConfig], channels: &[ChannelConfig]) -> Self {
        let mut by_cn = BTreeMap::new();
        for c in clients {
            let caller = match (c.role, &c.channel) {
                (ClientRole::Operator, _) => Caller::Operator {
                    name: c.common_name.clone(),
                },
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
            by_cn.insert(c.common_name.clone(), caller);
        }
        Self { by_cn }
    }

    /// The caller for a verified leaf certificate (DER).
    pub fn identify(&self, leaf: &[u8]) -> Caller {
        let cn = common_name(leaf);
        match cn.as_deref().and_then(|cn| self.by_cn.get(cn)) {
            Some(caller) => caller.clone(),
            None => Caller::Unknown { common_name: cn },
        }
    }
}

fn common_name(leaf: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(leaf).ok()?;
    for rdn in cert.tbs_certificate.subject.0.iter().rev() {
        for atv in rdn.0.iter() {
            if atv.oid == const_oid::db::rfc4519::CN {
                if let Ok(s) = der::asn1::Utf8StringRef::try_from(&atv.value) {
                    return Some(s.as_str().to_owned());
                }
                if let Ok(s) = der::asn1::PrintableStringRef::try_from(&atv.value) {
                    return Some(s.as_str().to_owned());
                }
            }
        }
    }
    None
}

/// Builds the rustls server configuration requiring client certificates from `client_ca`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
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
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
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
