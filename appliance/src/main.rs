//! `ca-appliance`: the server binary and its operator commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod hardening;

/// mimalloc rather than glibc's malloc: allocation was a sixth of the server's CPU on the
/// issuance path (arena locks and consolidation across the runtime's threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use ca_appliance::ca::ceremony::{self, CeremonyOutcome};
use ca_appliance::ca::offline;
use ca_appliance::config::ApplianceConfig;
use ca_appliance::{audit, demo, logging, ops, server, storage, verification};

#[derive(Parser)]
#[command(
    name = "ca-appliance",
    version,
    about = "Self-hosted certificate-authority appliance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a self-contained appliance directory (SoftHSM2 token, database, TLS PKI, CAs).
    Init {
        /// Directory to create the appliance in.
        #[arg(long)]
        dir: PathBuf,
        /// Create the demo set-up (the only kind `init` makes today).
        #[arg(long)]
        demo: bool,
        /// mTLS API listener address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        api_addr: SocketAddr,
        /// Public (plain HTTP) listener address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        public_addr: SocketAddr,
        /// PKCS#11 module (default: SoftHSM2 where Debian installs it).
        #[arg(long)]
        module: Option<PathBuf>,
        /// Where the demo's verifier plugins reach vendor-sim (the vendor simulator).
        #[arg(long, default_value = "127.0.0.1:8099")]
        vendor_sim_addr: SocketAddr,
        /// Prometheus metrics listener (`GET /metrics`); demo: none unless given; production:
        /// 127.0.0.1:9466 unless given.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
        /// With --demo: the token is ca-softtoken and an SM2 hierarchy (sm2-root, sm2-personal)
        /// stands beside the ECDSA one (whose root becomes P-256: the soft token has no P-384).
        #[arg(long)]
        sm2: bool,
        /// With --demo: the database (`postgres://USER@HOST/DB`, password from PGPASSFILE or
        /// PGPASSWORD) instead of the embedded SQLite file.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// With --demo: a second node sharing DIR1's token, PINs, TLS, profiles, CAs and
        /// (PostgreSQL) database, with its own listeners and CRL directory.
        #[arg(long, value_name = "DIR1")]
        join: Option<PathBuf>,
        /// Production set-up (without --demo).
        #[command(flatten)]
        production: Box<ProductionArgs>,
    },
    /// Run the appliance.
    Serve {
        /// The appliance configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Create the CAs of the ceremony file in the HSM (existing ones are left alone): review
    /// the plan with --dry-run, then run it with --approve DIGEST.
    Ceremony {
        /// The appliance configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The ceremony file (`[[ca]]` tables) instead of the one the configuration names.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        /// Print the plan and its digest; touch neither the HSM nor the database.
        #[arg(long, conflicts_with = "approve")]
        dry_run: bool,
        /// The digest `--dry-run` printed: the plan as reviewed (required to change anything).
        #[arg(long, value_name = "DIGEST")]
        approve: Option<String>,
        /// Create a new generation (new key, new certificate) of this CA; repeatable.
        #[arg(long = "new-generation", value_name = "CA")]
        new_generation: Vec<String>,
    },
    /// Validate the configuration and profiles without starting anything.
    CheckConfig {
        /// The appliance configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Verification plugins (dynamic libraries).
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Take a consistent online backup (database snapshot, config, profiles, channels, CA
    /// certificates, a manifest of SHA-256 digests; never HSM keys or secret files).
    Backup {
        /// The appliance configuration file.
        #[arg(long)]
        config: PathBuf,
        /// New (or empty) directory to write the backup into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into a new appliance directory (digests checked first).
    Restore {
        /// The backup directory (written by `backup`).
        #[arg(long)]
        from: PathBuf,
        /// New (or empty) directory for the restored appliance.
        #[arg(long)]
        dir: PathBuf,
    },
    /// The personal-data keys (wrapped by the HSM, kept in the database).
    DataKey {
        #[command(subcommand)]
        command: DataKeyCommand,
    },
    /// The audit log: verify its chain and signed checkpoints, or export it.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Issuing CAs: revoke a generation (listed on the root CRL at once).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The root: sign its CRL (the only use of an offline root key besides the ceremony).
    Root {
        #[command(subcommand)]
        command: RootCommand,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Revoke a generation of an issuing CA and re-sign its parent's CRL.
    Revoke {
        /// The CA's name.
        name: String,
        /// The generation (default: the newest).
        #[arg(long)]
        generation: Option<i64>,
        /// RFC 5280 reason (keyCompromise, cACompromise, superseded, cessationOfOperation, ...).
        #[arg(long)]
        reason: String,
        /// The appliance configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum RootCommand {
    /// Sign and write the CRL of every root generation (run before its nextUpdate when
    /// `[status] root_offline = true`).
    SignCrl {
        /// The appliance configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and every signed checkpoint; exit non-zero naming the first bad
    /// sequence number.
    Verify {
        /// The appliance configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Write the log (and its checkpoints and audit keys) as JSON lines to stdout.
    Export {
        /// The appliance configuration file.
        #[arg(long)]
        config: PathBuf,
        /// First sequence number to export.
        #[arg(long, default_value_t = 1)]
        since: i64,
    },
}

/// `init` without `--demo`: a production configuration for a real token.
#[derive(clap::Args)]
struct ProductionArgs {
    /// Production: the HSM token's label.
    #[arg(long)]
    token_label: Option<String>,
    /// Production: the PIN comes from this systemd credential (LoadCredentialEncrypted).
    #[arg(long, group = "pin_source")]
    pin_credential: Option<String>,
    /// Production: the PIN comes from this environment variable.
    #[arg(long, group = "pin_source")]
    pin_env: Option<String>,
    /// Production: the PIN comes from this 0600 file.
    #[arg(long, group = "pin_source")]
    pin_file: Option<PathBuf>,
    /// Production: the URL relying parties reach the public listener at.
    #[arg(long)]
    public_url: Option<String>,
    /// Production: the state directory (database, CA certificates, CRLs).
    #[arg(long, default_value = "/var/lib/ca-appliance")]
    state_dir: PathBuf,
}

#[derive(Subcommand)]
enum DataKeyCommand {
    /// Make a new personal-data key active and re-seal every verification under it, while the
    /// server runs; the old keys are deleted once nothing refers to them. Creates the HSM
    /// wrapping key and the first data key on first use.
    Rotate {
        /// The appliance configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run the conformance suite against a plugin library (in a worker process); prints one
    /// PASS/FAIL line per check and exits 0 only if every check passes.
    Check {
        /// Path of the plugin's shared library.
        path: PathBuf,
        /// The plugin's config as a JSON file.
        #[arg(long, conflicts_with = "config_json")]
        config: Option<PathBuf>,
        /// The plugin's config as inline JSON.
        #[arg(long)]
        config_json: Option<String>,
    },
}

fn main() -> ExitCode {
    let hardening = hardening::apply();
    let cli = Cli::parse();
    logging::init(log_format(&cli));
    hardening.log();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `serve` logs as its configuration's `[log] format` says; everything else picks by terminal.
fn log_format(cli: &Cli) -> logging::LogFormat {
    match &cli.command {
        Command::Serve { config } => ApplianceConfig::load(config)
            .map(|c| c.log.format)
            .unwrap_or_default(),
        _ => logging::LogFormat::Auto,
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Init {
            dir,
            demo,
            api_addr,
            public_addr,
            module,
            vendor_sim_addr,
            metrics_addr,
            sm2,
            database_url,
            join,
            production,
        } => {
            if let Some(first) = join {
                if !demo || database_url.is_some() {
                    return Err(
                        "--join goes with --demo and takes DIR1's database (no --database-url)"
                            .into(),
                    );
                }
                let path =
                    demo::join(&first, &dir, api_addr, public_addr).map_err(|e| e.to_string())?;
                println!(
                    "node created in {} sharing {}",
                    dir.display(),
                    first.display()
                );
                println!(
                    "start it with: ca-appliance serve --config {}",
                    path.display()
                );
                return Ok(());
            }
            if !demo {
                let ProductionArgs {
                    token_label,
                    pin_credential,
                    pin_env,
                    pin_file,
                    public_url,
                    state_dir,
                } = *production;
                let token_label = token_label.ok_or("production init needs --token-label")?;
                let public_url = public_url
                    .ok_or("production init needs --public-url (written into certificates)")?;
                let pin = match (pin_credential, pin_env, pin_file) {
                    (Some(c), _, _) => ops::setup::PinFrom::Credential(c),
                    (_, Some(e), _) => ops::setup::PinFrom::Env(e),
                    (_, _, Some(f)) => ops::setup::PinFrom::File(f),
                    _ => return Err("production init needs where the HSM PIN comes from: --pin-credential NAME (systemd LoadCredentialEncrypted), --pin-env VAR or --pin-file PATH".into()),
                };
                let module =
                    module.ok_or("production init needs --module (the HSM's PKCS#11 library)")?;
                let production = ops::setup::Production {
                    module,
                    token_label,
                    pin,
                    public_url,
                    api_addr,
                    public_addr,
                    metrics_addr: metrics_addr.unwrap_or_else(ops::metrics::default_metrics_addr),
                    state_dir,
                };
                let path = ops::setup::write(&dir, &production).map_err(|e| e.to_string())?;
                println!(
                    "wrote {} and its profiles; the HSM was not touched",
                    path.display()
                );
                println!("next: add the TLS files under {}, run `ca-appliance check-config --config {p}`, review the ceremony plan {} and `ca-appliance ceremony --config {p} --dry-run`, then run it with --approve DIGEST", dir.join("tls").display(), dir.join("ceremony.toml").display(), p = path.display());
                return Ok(());
            }
            let module = match (sm2, module) {
                (true, None) => Some(demo::find_softtoken_module().map_err(|e| e.to_string())?),
                (_, module) => module,
            };
            if let Some(url) = &database_url {
                demo::check_database_url(url).map_err(|e| e.to_string())?;
            }
            let layout = demo::prepare(&dir, module).map_err(|e| e.to_string())?;
            export_softhsm_conf(Some(&layout.softhsm2_conf));
            let config_path = demo::write_demo(&layout, api_addr, public_addr, vendor_sim_addr)
                .map_err(|e| e.to_string())?;
            if sm2 {
                demo::add_sm2(&layout, &config_path).map_err(|e| e.to_string())?;
            }
            if let Some(url) = &database_url {
                demo::set_database_url(&config_path, url).map_err(|e| e.to_string())?;
            }
            if let Some(addr) = metrics_addr {
                ops::metrics::append_to_config(&config_path, addr)
                    .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
            }
            let config = ApplianceConfig::load(&config_path).map_err(|e| e.to_string())?;
            runtime()?.block_on(run_ceremony(&config, &[], "cli:init", Review::Demo))?;
            runtime()?.block_on(data_key_rotate(&config, "cli:init"))?;
            println!("demo appliance created in {}", layout.dir.display());
            if !config.plugins.is_empty() {
                println!(
                    "verifier plugins: {}; they expect vendor-sim: vendor-sim --addr {vendor_sim_addr} --api-key \"$(cat {})\"",
                    config
                        .plugins
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    layout.dir.join(demo::VENDOR_SIM_KEY_FILE).display()
                );
            }
            println!(
                "start it with: ca-appliance serve --config {}",
                config_path.display()
            );
            Ok(())
        }
        Command::Serve { config } => {
            let config = ApplianceConfig::load(&config).map_err(|e| e.to_string())?;
            export_softhsm_conf(config.hsm.softhsm2_conf.as_deref());
            let runtime = runtime()?;
            let served = runtime.block_on(server::serve(config));
            // Bounded exit: a blocking task (an HSM call) still running is not waited for.
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            served.map_err(|e| e.to_string())
        }
        Command::Ceremony {
            config,
            plan,
            dry_run,
            approve,
            new_generation,
        } => {
            let mut config = ApplianceConfig::load(&config).map_err(|e| e.to_string())?;
            if let Some(plan) = plan {
                config = config
                    .with_ceremony_plan(&plan)
                    .map_err(|e| e.to_string())?;
            }
            export_softhsm_conf(config.hsm.softhsm2_conf.as_deref());
            let review = if dry_run {
                Review::DryRun
            } else {
                Review::Approved(approve)
            };
            runtime()?.block_on(run_ceremony(
                &config,
                &new_generation,
                "cli:ceremony",
                review,
            ))
        }
        Command::CheckConfig { config: path } => {
            let config = match ApplianceConfig::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}", ops::check::load_refusal(&path, &e));
                    return Err("1 refusal; fix it and run check-config again".into());
                }
            };
            let mut refusals = ops::check::check_files(&config, &path);
            // Channel plugins named by channels: loaded (as configured) to read their manifests.
            let channel_plugins =
                match runtime()?.block_on(ca_appliance::notify::check_channel_plugins(&config)) {
                    Ok(n) => n,
                    Err(problem) => {
                        refusals.push(ops::check::Refusal {
                            key: "[[channel]] plugins / notifier".into(),
                            file: config.channels_dir.clone().unwrap_or_else(|| path.clone()),
                            problem,
                            fix: "name a [[plugin]] whose manifest kind is channel (and, for a \
                                  notifier, that sends SMS), or remove it from the channel"
                                .into(),
                        });
                        0
                    }
                };
            if !refusals.is_empty() {
                for r in &refusals {
                    eprintln!("{r}");
                }
                return Err(format!(
                    "{} refusal(s); fix them and run check-config again",
                    refusals.len()
                ));
            }
            let profiles = config.load_profiles().map_err(|e| e.to_string())?;
            println!(
                "configuration OK: {} CA(s), {} profile(s), {} client(s), {} channel(s), {} plugin(s), {channel_plugins} of them channel plugin(s)",
                config.cas.len(),
                profiles.len(),
                config.clients.len(),
                config.channels.len(),
                config.plugins.len()
            );
            Ok(())
        }
        Command::Plugin {
            command:
                PluginCommand::Check {
                    path,
                    config,
                    config_json,
                },
        } => plugin_check(&path, config.as_deref(), config_json.as_deref()),
        Command::Audit { command } => audit_command(command),
        Command::Ca {
            command:
                CaCommand::Revoke {
                    name,
                    generation,
                    reason,
                    config,
                },
        } => {
            let config = ApplianceConfig::load(&config).map_err(|e| e.to_string())?;
            export_softhsm_conf(config.hsm.softhsm2_conf.as_deref());
            runtime()?.block_on(async {
                let (hsm, storage) = open_both(&config).await?;
                let root = open_root(&config).await?;
                let generation = offline::revoke_ca(
                    &hsm,
                    root.as_ref(),
                    &storage,
                    &config,
                    &name,
                    generation,
                    &reason,
                    "cli:ca-revoke",
                )
                .await
                .map_err(|e| e.to_string())?;
                seal_audit(&hsm, &storage).await?;
                println!(
                    "CA {name} generation {generation} revoked; its parent's CRL re-signed in {} \
                     (a running server issues nothing more under it after a restart)",
                    config.status.crl_dir.display()
                );
                Ok(())
            })
        }
        Command::Root {
            command: RootCommand::SignCrl { config },
        } => {
            let config = ApplianceConfig::load(&config).map_err(|e| e.to_string())?;
            export_softhsm_conf(config.hsm.softhsm2_conf.as_deref());
            runtime()?.block_on(async {
                let (hsm, storage) = open_both(&config).await?;
                let root = open_root(&config).await?;
                let signed = offline::sign_root_crls(&hsm, root.as_ref(), &storage, &config)
                    .await
                    .map_err(|e| e.to_string())?;
                seal_audit(&hsm, &storage).await?;
                for (stem, number) in signed {
                    println!(
                        "root CRL {stem}.crl number {number} written to {}",
                        config.status.crl_dir.display()
                    );
                }
                Ok(())
            })
        }
        Command::Backup { config, out } => {
            let m = runtime()?
                .block_on(ops::backup::backup(&config, &out))
                .map_err(|e| format!("backup: {e}"))?;
            println!(
                "backup written to {}: {} certificate(s), {} audit row(s) (chain verified), CRL number {}, {} file(s) in {}",
                out.display(),
                m.certificates,
                m.audit_rows,
                m.crl_number,
                m.files.len(),
                ops::backup::MANIFEST
            );
            for line in &m.not_included {
                println!("not included: {line}");
            }
            Ok(())
        }
        Command::Restore { from, dir } => {
            let m = runtime()?
                .block_on(ops::backup::restore(&from, &dir))
                .map_err(|e| format!("restore: {e}"))?;
            println!(
                "restored {} certificate(s), {} audit row(s) (chain verified) into {}; start it with: ca-appliance serve --config {}",
                m.certificates,
                m.audit_rows,
                dir.display(),
                dir.join("appliance.toml").display()
            );
            println!("it listens on the original addresses: edit [server] (and [metrics]) first if the original still runs on this host");
            Ok(())
        }
        Command::DataKey {
            command: DataKeyCommand::Rotate { config },
        } => {
            let config = ApplianceConfig::load(&config).map_err(|e| e.to_string())?;
            export_softhsm_conf(config.hsm.softhsm2_conf.as_deref());
            runtime()?.block_on(data_key_rotate(&config, "cli:data-key"))
        }
    }
}

fn audit_command(command: AuditCommand) -> Result<(), String> {
    let (AuditCommand::Verify { config } | AuditCommand::Export { config, .. }) = &command;
    let config = ApplianceConfig::load(config).map_err(|e| e.to_string())?;
    export_softhsm_conf(config.hsm.softhsm2_conf.as_deref());
    runtime()?.block_on(async {
        let storage = storage::Storage::open(&config.database.url)
            .await
            .map_err(|e| e.to_string())?;
        match command {
            AuditCommand::Verify { .. } => {
                let hsm = hsm::Hsm::open(&config.hsm_config())
                    .await
                    .map_err(|e| format!("HSM: {e}"))?;
                let report = audit::verify(&hsm, &storage, false)
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "audit log intact: {} row(s) up to seq {}, {} signed checkpoint(s)",
                    report.rows, report.last_seq, report.checkpoints
                );
                Ok(())
            }
            AuditCommand::Export { since, .. } => {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                audit::export(&storage, since, &mut out)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    })
}

/// The offline root token (`[root_hsm]`), when configured.
async fn open_root(config: &ApplianceConfig) -> Result<Option<hsm::Hsm>, String> {
    match config.root_hsm_config() {
        None => Ok(None),
        Some(c) => hsm::Hsm::open(&c)
            .await
            .map(Some)
            .map_err(|e| format!("root HSM token: {e}")),
    }
}

async fn open_both(config: &ApplianceConfig) -> Result<(hsm::Hsm, storage::Storage), String> {
    let hsm = hsm::Hsm::open(&config.hsm_config())
        .await
        .map_err(|e| format!("HSM: {e}"))?;
    let storage = storage::Storage::open(&config.database.url)
        .await
        .map_err(|e| e.to_string())?;
    Ok((hsm, storage))
}

/// Signs an audit checkpoint after an operator command (when an audit key exists).
async fn seal_audit(hsm: &hsm::Hsm, storage: &storage::Storage) -> Result<(), String> {
    match audit::Sealer::load(hsm, storage).await {
        Ok(sealer) => sealer
            .checkpoint()
            .await
            .map(|_| ())
            .map_err(|e| format!("audit checkpoint: {e}")),
        Err(audit::AuditError::NoKey) => Ok(()),
        Err(e) => Err(format!("audit checkpoint: {e}")),
    }
}

async fn data_key_rotate(config: &ApplianceConfig, actor: &str) -> Result<(), String> {
    let hsm = hsm::Hsm::open(&config.hsm_config())
        .await
        .map_err(|e| format!("HSM: {e}"))?;
    let storage = storage::Storage::open(&config.database.url)
        .await
        .map_err(|e| e.to_string())?;
    let label = &config.verification.wrapping_key;
    let report = verification::rotation::rotate(&hsm, &storage, label, actor)
        .await
        .map_err(|e| format!("data-key rotate: {e}"))?;
    seal_audit(&hsm, &storage).await?;
    if report.created_wrapping_key {
        println!("created the HSM wrapping key {}", hsm.key_uri(label));
    }
    println!(
        "personal-data key {} active; {} verification(s) re-sealed; key(s) destroyed: {:?}",
        report.new_key, report.resealed, report.destroyed
    );
    Ok(())
}

fn plugin_check(
    path: &std::path::Path,
    config_file: Option<&std::path::Path>,
    config_json: Option<&str>,
) -> Result<(), String> {
    let text = match (config_file, config_json) {
        (Some(f), _) => {
            std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?
        }
        (None, Some(j)) => j.to_owned(),
        (None, None) => "{}".to_owned(),
    };
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("plugin config is not JSON: {e}"))?;
    // The worker runs elsewhere: hand it an absolute path.
    let path = &std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let report = runtime()?.block_on(plugin_host::conformance::check(path, config));
    print!("{report}");
    if report.passed() {
        Ok(())
    } else {
        Err(format!("{} failed the conformance suite", path.display()))
    }
}

/// How a ceremony run was reviewed.
enum Review {
    /// `init --demo`: the demo's own plan, nothing to review.
    Demo,
    /// `--dry-run`: print the plan, change nothing.
    DryRun,
    /// A real run: `--approve` must repeat the digest of the plan as it is now.
    Approved(Option<String>),
}

/// The CAs (name → newest generation) and whether an audit key exists, read without creating
/// the database: a database file that does not exist yet holds nothing.
async fn ceremony_state(
    config: &ApplianceConfig,
) -> Result<(std::collections::BTreeMap<String, i64>, bool), String> {
    let url = &config.database.url;
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let file = rest.split('?').next().unwrap_or(rest);
        if !std::path::Path::new(file).exists() {
            return Ok((Default::default(), false));
        }
    }
    let storage = storage::Storage::open(url)
        .await
        .map_err(|e| e.to_string())?;
    let mut existing = std::collections::BTreeMap::new();
    for ca in storage
        .authorities()
        .all()
        .await
        .map_err(|e| e.to_string())?
    {
        let g = existing.entry(ca.name).or_insert(ca.generation);
        *g = (*g).max(ca.generation);
    }
    let audit_key = !storage
        .audit()
        .keys()
        .await
        .map_err(|e| e.to_string())?
        .is_empty();
    Ok((existing, audit_key))
}

async fn run_ceremony(
    config: &ApplianceConfig,
    new_generation: &[String],
    actor: &str,
    review: Review,
) -> Result<(), String> {
    if !matches!(review, Review::Demo) {
        let (existing, audit_key) = ceremony_state(config).await?;
        let plan = ca_appliance::ca::plan::Plan::new(
            &config.cas,
            &existing,
            new_generation,
            audit_key,
            &config.hsm.token_label,
            config.root_hsm.as_ref().map(|r| r.token_label.as_str()),
        )
        .map_err(|e| e.to_string())?;
        match review {
            Review::DryRun => {
                let source = config
                    .ceremony
                    .as_ref()
                    .map_or("the [[ca]] tables of the configuration".to_owned(), |f| {
                        f.display().to_string()
                    });
                println!("ceremony plan from {source} (dry run: nothing was done)");
                print!("{}", plan.render());
                if plan.is_irreversible() {
                    println!("plan digest: {}", plan.digest());
                    println!(
                        "to carry it out exactly as shown: ca-appliance ceremony --config FILE{} --approve {}",
                        new_generation
                            .iter()
                            .map(|n| format!(" --new-generation {n}"))
                            .collect::<String>(),
                        plan.digest()
                    );
                } else {
                    println!("nothing to do: every CA and the audit key exist");
                }
                return Ok(());
            }
            Review::Approved(approved) => plan.check_approval(approved.as_deref())?,
            Review::Demo => {}
        }
    }
    let hsm = hsm::Hsm::open(&config.hsm_config())
        .await
        .map_err(|e| format!("HSM: {e}"))?;
    let storage = storage::Storage::open(&config.database.url)
        .await
        .map_err(|e| e.to_string())?;
    let root = open_root(config).await?;
    let outcomes = ceremony::run(
        &hsm,
        root.as_ref(),
        &storage,
        &config.cas,
        new_generation,
        &config.ca_output_dir,
        actor,
        &config.server.public_url,
    )
    .await
    .map_err(|e| e.to_string())?;
    if config.status.root_offline {
        // The first root CRL, while the root key is at hand.
        offline::sign_root_crls(&hsm, root.as_ref(), &storage, config)
            .await
            .map_err(|e| e.to_string())?;
    }
    seal_audit(&hsm, &storage).await?;
    for outcome in outcomes {
        match outcome {
            CeremonyOutcome::Created {
                name,
                generation,
                made,
            } => {
                let not_after = time::OffsetDateTime::from_unix_timestamp(made.not_after)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| made.not_after.to_string());
                println!("created CA {name} (generation {generation})");
                println!("  key: label {} ({})", made.key_label, made.key_uri);
                println!(
                    "  certificate: serial {}, SHA-256 fingerprint {}",
                    made.serial, made.fingerprint_sha256
                );
                println!("  subject {}, valid until {not_after}", made.subject);
            }
            CeremonyOutcome::AuditKey { key_uri } => {
                println!("created the audit key ({key_uri})")
            }
            CeremonyOutcome::Existing { name, generation } => println!(
                "CA {name} exists (generation {generation}); left alone (use --new-generation {name} to re-key)"
            ),
        }
    }
    println!(
        "CA certificates written to {}",
        config.ca_output_dir.display()
    );
    Ok(())
}

/// SoftHSM2 reads `SOFTHSM2_CONF` when the module initialises; set it before any thread starts.
fn export_softhsm_conf(conf: Option<&std::path::Path>) {
    if let Some(conf) = conf {
        std::env::set_var("SOFTHSM2_CONF", conf);
        // ca-softtoken (the SM2 demo token) reads the same file's `directories.tokendir`.
        std::env::set_var("CA_SOFTTOKEN_CONF", conf);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
