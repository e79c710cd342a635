//! `serve`: open the HSM and database, load the hierarchy, and run both listeners.

use std::sync::Arc;
use std::time::Duration;

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
    /// The audit log failed its check at start, or cannot be sealed (fail closed).
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// The contact services (channel notifications, codes, captchas) could not start.
    #[error("contact services: {0}")]
    Contact(String),
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
        config.server.client_crl.as_deref(),
    )?;
    let hsm = hsm::Hsm::open(&config.hsm_config()).await?;
    let storage = Storage::open(&config.database.url).await?;
    tracing::info!(node = %storage.node_id(), backend = ?storage.backend(), "node started");
    // Fail closed: a tampered tail or a missing audit key stops the start.
    let audit_tail = crate::audit::verify(&hsm, &storage, true).await?;
    let sealer = crate::audit::Sealer::load(&hsm, &storage).await?;
    sealer.checkpoint().await?;
    tracing::info!(
        rows = audit_tail.rows,
        last_seq = audit_tail.last_seq,
        "audit log tail verified"
    );
    let checkpointer = tokio::spawn(sealer.clone().run(
        i64::from(config.audit.checkpoint_rows),
        i64::from(config.audit.checkpoint_minutes) * 60,
    ));
    let hierarchy = Arc::new(Hierarchy::from_records(storage.authorities().all().await?)?);
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
    let issuer = Issuer::new(
        hsm.clone(),
        &storage,
        hierarchy.clone(),
        Arc::new(profiles),
        certificates.clone(),
    );
    let status =
        StatusService::start(hsm.clone(), issuer.signer(), &storage, &hierarchy, &config).await?;
    // Plugins that cannot load are marked unavailable (logged), not fatal: issuance and status
    // services keep running; `check-config` refuses the same faults up front.
    let verifications = crate::verification::start(&config, &storage, &hsm).await?;
    let verification_task = verifications.spawn_background();
    // Channel notifications, one-time codes and captchas (the applications engine's seams).
    let contact = crate::notify::Contact::new(&config, &storage, &verifications)
        .map_err(|e| ServeError::Contact(e.to_string()))?;
    let contact_task = contact.spawn_background();
    let applications = applications_service(
        &config,
        &storage,
        &verifications,
        &contact,
        issuer.clone(),
        &status,
        &certificates,
    );
    let application_task = applications.as_ref().map(|a| a.spawn_background());
    let mut relying =
        crate::relying::Relying::new(&storage, hierarchy.clone(), certificates.clone(), &config);
    // Login callbacks: each relying party's allowlist and signing key, delivered by the outbox.
    let callback_targets =
        crate::relying::callback::CallbackTargets::from_config(&config.relying_parties)
            .map_err(ServeError::Contact)?;
    relying.login = relying
        .login
        .with_callbacks(callback_targets, contact.outbox.clone());
    // Expired challenges with a callback are called back too.
    let login_expiry = relying.login.clone().spawn_expiry();
    let state = Arc::new(AppState {
        issuer,
        hierarchy,
        certificates,
        status,
        verifications,
        applications,
        readiness,
        enroll: config.enroll.as_ref().and_then(|e| {
            config
                .channels
                .iter()
                .find(|c| c.name == e.channel)
                .map(|c| Arc::new(c.clone()))
        }),
        console: Arc::new(crate::console::ConsoleState::new(&storage, hsm.clone())),
        relying,
        keymgmt: Arc::new(crate::keymgmt::local::LocalKeyManagement::new(
            hsm.clone(),
            &storage,
        )),
    });
    let clients = Arc::new(mtls::ClientDirectory::new(
        &config.clients,
        &config.channels,
    ));

    let bind = |addr| async move {
        listener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })
    };
    let api_listener = bind(config.server.api_addr).await?;
    let public_threads = listener::thread_count(config.server.public_threads);
    let (public_listeners, public_addr) =
        listener::bind_shared(config.server.public_addr, public_threads).map_err(|source| {
            ServeError::Bind {
                addr: config.server.public_addr,
                source,
            }
        })?;
    let api_addr = api_listener
        .local_addr()
        .map_err(|source| ServeError::Bind {
            addr: config.server.api_addr,
            source,
        })?;
    let metrics_listener = match &config.metrics {
        Some(m) => Some(bind(m.addr).await?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    tracing::info!(%api_addr, %public_addr, public_threads, ?metrics_addr, "serving");
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
    // One thread and runtime per core, all accepting from one socket (see `listener::percore`).
    let mut public = tokio::spawn(listener::serve_per_core(
        "public",
        public_listeners,
        limits,
        listener::PlainHttp,
        api::public_router(state.clone()),
        api::public_local(state.clone()),
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
    if let Some(t) = application_task {
        t.abort();
        let _ = t.await;
    }
    login_expiry.abort();
    let _ = login_expiry.await;
    contact_task.abort();
    let _ = contact_task.await;
    checkpointer.abort();
    if let Err(e) = sealer.checkpoint().await {
        tracing::error!(error = %e, "final audit checkpoint failed");
    }
    Ok(())
}

/// The application engine, when verifications can seal personal data (a data key is active).
/// The appliance's own codes, captchas and channel notifier come from the `notify` module.
fn applications_service(
    config: &ApplianceConfig,
    storage: &Storage,
    verifications: &Arc<crate::verification::VerificationService>,
    contact: &crate::notify::Contact,
    issuer: Issuer,
    status: &Arc<StatusService>,
    certificates: &crate::storage::CertificateStore,
) -> Option<Arc<crate::application::ApplicationService>> {
    let keyring = verifications.keyring();
    if keyring.current().active().is_err() {
        return None;
    }
    Some(Arc::new(
        crate::application::ApplicationService::new(
            storage.applications(),
            keyring,
            verifications.clone(),
            issuer,
            status.clone(),
            certificates.clone(),
            config.applications.clone(),
        )
        .with_contact(
            Some(contact.codes.clone()),
            Some(contact.captchas.clone()),
            Some(contact.notifier.clone()),
        )
        .with_materials(storage.materials())
        .with_agents(storage.agents()),
    ))
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
