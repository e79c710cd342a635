//! `serve`: open the HSM and database, load the hierarchy, and run both listeners.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::{self, mtls, AppState};
use crate::ca::issuance::Issuer;
use crate::ca::{Hierarchy, HierarchyError};
use crate::config::{ApplianceConfig, ConfigError};
use crate::listener::{self, ConnectionLimits, Shutdown};
use crate::status::StatusService;
use crate::storage::{Storage, StorageError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Configuration or profiles are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HSM could not be opened (wrong PIN, missing token...).
    #[error("HSM: {0}")]
    Hsm(#[from] hsm::HsmError),
    /// The database could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored hierarchy is unusable.
    #[error(transparent)]
    Hierarchy(#[from] HierarchyError),
    /// TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] mtls::TlsSetupError),
    /// The OCSP responder or CRL publisher could not start.
    #[error("status services: {0}")]
    Status(#[from] crate::status::StatusError),
    /// The personal-data keys could not be unwrapped.
    #[error("personal-data keys: {0}")]
    DataKey(#[from] crate::verification::KeyringError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the appliance until SIGINT/SIGTERM, then shuts down gracefully: no new connections,
/// in-flight requests answered (for at most `shutdown_grace_secs`), background tasks stopped.
pub async fn serve(config: ApplianceConfig) -> Result<(), ServeError> {
    // Before anything opens files: room for the connection caps of both listeners.
    let open_files = listener::raise_open_files_limit();
    let max_connections = listener::connection_budget(config.server.max_connections, open_files);
    if max_connections < config.server.max_connections {
        tracing::warn!(
            configured = config.server.max_connections,
            max_connections,
            ?open_files,
            "open-files limit too low for server.max_connections; lowered per listener"
        );
    }
    let profiles = config.load_profiles()?;
    let tls = mtls::server_config(
        &config.server.tls_cert,
        &config.server.tls_key,
        &config.server.client_ca,
    )?;
    let hsm = hsm::Hsm::open(&config.hsm_config()).await?;
    let storage = Storage::open(&config.database.url).await?;
    let hierarchy = Arc::new(Hierarchy::from_records(
        storage.authorities().current().await?,
    )?);
    for profile in profiles.values() {
        if hierarchy.get(&profile.issuer).is_none() {
            tracing::warn!(profile = %profile.name, issuer = %profile.issuer,
                "issuing CA not created yet; run `ca-appliance ceremony`");
        }
    }
    crate::ops::metrics::register_all();
    let readiness = Arc::new(crate::ops::health::Readiness::new(
        hsm.clone(),
        storage.clone(),
        &config.status,
    ));
    let certificates = storage.certificates();
    let status = StatusService::start(hsm.clone(), &storage, &hierarchy, &config).await?;
    // Plugins that cannot load are marked unavailable (logged), not fatal: issuance and status
    // services keep running; `check-config` refuses the same faults up front.
    let verifications = crate::verification::start(&config, &storage, &hsm).await?;
    let verification_task = verifications.spawn_background();
    let state = Arc::new(AppState {
        issuer: Issuer::new(
            hsm,
            hierarchy.clone(),
            Arc::new(profiles),
            certificates.clone(),
        ),
        hierarchy,
        certificates,
        status,
        verifications,
        readiness,
    });
    let clients = Arc::new(mtls::ClientDirectory::new(
        &config.clients,
        &config.channels,
    ));

    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })
    };
    let api_listener = bind(config.server.api_addr).await?;
    let public_listener = bind(config.server.public_addr).await?;
    let api_addr = api_listener
        .local_addr()
        .map_err(|source| ServeError::Bind {
            addr: config.server.api_addr,
            source,
        })?;
    let public_addr = public_listener
        .local_addr()
        .map_err(|source| ServeError::Bind {
            addr: config.server.public_addr,
            source,
        })?;
    let metrics_listener = match &config.metrics {
        Some(m) => Some(bind(m.addr).await?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    tracing::info!(%api_addr, %public_addr, ?metrics_addr, "serving");
    // One machine-readable line for scripts and tests.
    let mut line =
        serde_json::json!({ "api": api_addr.to_string(), "public": public_addr.to_string() });
    if let Some(addr) = metrics_addr {
        line["metrics"] = addr.to_string().into();
    }
    println!("{line}");

    let limits = ConnectionLimits::from_config(&config.server, max_connections);
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let (trigger, shutdown) = Shutdown::channel();
    let mut api = tokio::spawn(listener::serve(
        "api",
        api_listener,
        limits,
        mtls::MtlsHandshake::new(tls, clients),
        api::api_router(state.clone(), config.server.max_body_bytes),
        shutdown.clone(),
    ));
    let metrics = metrics_listener.map(|l| {
        tokio::spawn(listener::serve(
            "metrics",
            l,
            limits,
            listener::PlainHttp,
            crate::ops::metrics::router(state.clone()),
            shutdown.clone(),
        ))
    });
    let mut public = tokio::spawn(listener::serve(
        "public",
        public_listener,
        limits,
        listener::PlainHttp,
        api::public_router(state.clone()),
        shutdown,
    ));
    drop(state);

    tokio::select! {
        () = shutdown_signal() => tracing::info!(?grace, "shutting down: no new connections; finishing in-flight requests"),
        r = &mut api => tracing::error!(?r, "API listener stopped"),
        r = &mut public => tracing::error!(?r, "public listener stopped"),
    }
    trigger.trigger();
    let drained = async {
        let _ = (&mut api).await;
        let _ = (&mut public).await;
    };
    tokio::select! {
        () = drained => tracing::info!("all connections finished"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace period over; dropping the remaining connections");
        }
        () = shutdown_signal() => tracing::warn!("second signal; dropping the remaining connections"),
    }
    api.abort();
    public.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    // The plugin workers: killed when their hosts drop (the last reference was held by the
    // connections and this task); the kernel kills any left at exit (parent-death signal).
    verification_task.abort();
    let _ = verification_task.await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
