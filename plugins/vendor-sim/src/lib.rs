//! The vendor simulator: carrier, SMS gateway, bank 4-element, face, payout and registry APIs
//! with deterministic test identities ([`people`]), test-only `/_sim/` endpoints to read the
//! codes and amounts "sent", and injectable faults. `README.md` documents every endpoint.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

pub mod api;
pub mod callback;
pub mod people;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

pub use state::{Api, Config, Sim};

/// Errors starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Builds the router over a shared simulator state.
pub fn app(sim: Arc<Sim>) -> Router {
    api::router(sim)
}

/// A simulator bound to a socket, ready to serve.
pub struct Bound {
    listener: TcpListener,
    sim: Arc<Sim>,
    /// The actual bound address (useful with port 0).
    pub addr: SocketAddr,
}

/// Binds `addr`; the simulator's own URLs (face page) use the bound address.
pub async fn bind(addr: SocketAddr, mut config: Config) -> Result<Bound, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    if config.public_base.is_empty() {
        config.public_base = format!("http://{local}");
    }
    Ok(Bound {
        listener,
        sim: Arc::new(Sim::new(config)),
        addr: local,
    })
}

impl Bound {
    /// The shared state (tests in the same process may inspect it).
    pub fn sim(&self) -> Arc<Sim> {
        self.sim.clone()
    }

    /// Serves until the process ends.
    pub async fn serve(self) -> Result<(), ServeError> {
        axum::serve(self.listener, app(self.sim))
            .await
            .map_err(ServeError::Serve)
    }
}
