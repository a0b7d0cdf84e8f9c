//! `nowstream-sei-local`: parse arguments, then serve until SIGINT or SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use nowstream_sei_local::config::{DEFAULT_IDEMPOTENCY_KEYS_KEPT, DEFAULT_MAX_BODY_BYTES};
use nowstream_sei_local::{DatabaseLocation, FaultRule, SeiLocal, SeiLocalConfig};
use secrecy::SecretString;
use tracing_subscriber::EnvFilter;

/// The reference receiver of nowstream's ingestion contract (development, demos, tests).
#[derive(Debug, Parser)]
#[command(name = "nowstream-sei-local", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SEI_LOCAL_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// A tenant and its API key, as TENANT=KEY; repeat for more tenants.
    /// (Parsed after clap so that a malformed value is never echoed back.)
    #[arg(
        long = "api-key",
        env = "SEI_LOCAL_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        required = true
    )]
    api_keys: Vec<String>,
    /// SQLite database file, or `:memory:`.
    #[arg(long, env = "SEI_LOCAL_DATABASE", default_value = ":memory:")]
    database: String,
    /// Largest request body in bytes, as sent and after gzip decoding.
    #[arg(long, env = "SEI_LOCAL_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// How many recent Idempotency-Keys are remembered.
    #[arg(long, default_value_t = DEFAULT_IDEMPOTENCY_KEYS_KEPT)]
    idempotency_keys_kept: usize,
    /// JSON file with a list of fault rules active from the start (see docs/sei-local.md).
    #[arg(long)]
    faults: Option<PathBuf>,
}

fn parse_api_keys(values: &[String]) -> anyhow::Result<BTreeMap<String, SecretString>> {
    let mut keys = BTreeMap::new();
    for (index, value) in values.iter().enumerate() {
        let Some((tenant, key)) = value.split_once('=') else {
            // The value may be a bare key: say which argument, never what it held.
            bail!("--api-key #{} is not of the form TENANT=KEY", index + 1);
        };
        keys.insert(tenant.trim().to_owned(), SecretString::from(key.to_owned()));
    }
    Ok(keys)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let faults: Vec<FaultRule> = match &args.faults {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read fault rules from {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("bad fault rules in {}", path.display()))?
        }
        None => Vec::new(),
    };
    let config = SeiLocalConfig {
        listen: args.listen,
        api_keys: parse_api_keys(&args.api_keys)?,
        database: DatabaseLocation::from(args.database),
        max_body_bytes: args.max_body_bytes,
        idempotency_keys_kept: args.idempotency_keys_kept,
        faults,
    };
    SeiLocal::run(config, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
