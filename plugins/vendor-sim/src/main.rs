//! `vendor-sim`: run the vendor simulator. Prints `{"listening":"ADDR"}` on stdout once bound.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vendor_sim::{bind, Config};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "vendor-sim",
    about = "Simulated carrier, SMS, bank, face, payout and registry vendors"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// API key required in the `x-api-key` header of vendor endpoints.
    #[arg(long, default_value = "sim-key")]
    api_key: String,
    /// Base URL for links handed out (face page); default: the bound address.
    #[arg(long, default_value = "")]
    public_base: String,
    /// Milliseconds a payout stays `processing` before it settles.
    #[arg(long, default_value_t = 0)]
    payout_settle_ms: u64,
    /// File holding the secret that signs callbacks (HMAC-SHA256 over `timestamp.body`).
    #[arg(long)]
    callback_secret_file: Option<std::path::PathBuf>,
    /// File holding the secret the partner webhook sink (`/partner/{name}`) checks signatures
    /// (`x-ca-signature`) with.
    #[arg(long)]
    partner_secret_file: Option<std::path::PathBuf>,
}

/// Reads a non-empty secret file (trimmed).
fn read_secret(path: &std::path::Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Ok(_) => Err(format!("vendor-sim: {} is empty", path.display())),
        Err(e) => Err(format!("vendor-sim: cannot read {}: {e}", path.display())),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("info")
        .init();
    let args = Args::parse();
    let secrets = [&args.callback_secret_file, &args.partner_secret_file]
        .map(|f| f.as_deref().map(read_secret).transpose());
    let [callback_secret, partner_secret] = match secrets {
        [Ok(c), Ok(p)] => [c, p],
        [Err(e), _] | [_, Err(e)] => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let config = Config {
        api_key: args.api_key,
        public_base: args.public_base,
        payout_settle: Duration::from_millis(args.payout_settle_ms),
        callback_secret,
        partner_secret,
    };
    let bound = match bind(args.addr, config).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("vendor-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{}",
        serde_json::json!({"listening": bound.addr.to_string()})
    );
    match bound.serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vendor-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
