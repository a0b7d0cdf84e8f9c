//! `nowstream-servicenow-sim`: run the ServiceNow simulator as a process (demo, benchmarks).

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Parser;
use nowstream_servicenow_sim::{FaultRule, GeneratorConfig, SimConfig, Simulator};
use tracing_subscriber::EnvFilter;

/// ServiceNow Table API + OAuth simulator with deterministic data.
#[derive(Debug, Parser)]
#[command(name = "nowstream-servicenow-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SIM_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free port).
    #[arg(long, env = "SIM_PORT", default_value_t = 8080)]
    port: u16,
    /// Seed of the data generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Incidents to generate.
    #[arg(long, default_value_t = 200)]
    incidents: usize,
    /// Change requests to generate.
    #[arg(long, default_value_t = 50)]
    change_requests: usize,
    /// Ordinary users to generate.
    #[arg(long, default_value_t = 30)]
    users: usize,
    /// Give this many incidents the same `sys_updated_on` second.
    #[arg(long, default_value_t = 0)]
    same_second: usize,
    /// Lifetime of OAuth access tokens.
    #[arg(long, default_value_t = 1800)]
    token_lifetime_secs: u64,
    /// Issue a new refresh token on every refresh grant and revoke the old one, like an OAuth
    /// provider following RFC 9700 (ServiceNow itself keeps the refresh token).
    #[arg(long)]
    rotate_refresh_tokens: bool,
    /// Newest generated timestamp (RFC 3339); data spreads back from it.
    #[arg(long)]
    data_end: Option<DateTime<Utc>>,
    /// Days of history to spread incidents and changes over.
    #[arg(long, default_value_t = 180)]
    history_days: u32,
    /// URL clients see in links, when it differs from http://host:port (e.g. behind a proxy).
    #[arg(long)]
    instance_url: Option<String>,
    /// Answer each page (a Table API list request for more than one row) after this many
    /// milliseconds, as a real instance takes about a second per 1,000-row page (benchmarks of
    /// concurrent scans).
    #[arg(long, default_value_t = 0)]
    page_delay_ms: u64,
    /// JSON file with an array of fault rules active from the start.
    #[arg(long)]
    faults_file: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let faults: Vec<FaultRule> = match &args.faults_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("parsing fault rules in {}", path.display()))?
        }
        None => Vec::new(),
    };
    let defaults = GeneratorConfig::default();
    let config = SimConfig {
        listen: SocketAddr::new(args.host, args.port),
        instance_url: args.instance_url,
        data: GeneratorConfig {
            seed: args.seed,
            incidents: args.incidents,
            change_requests: args.change_requests,
            users: args.users,
            same_second: args.same_second,
            data_end: args.data_end.unwrap_or(defaults.data_end),
            history_days: args.history_days,
            ..defaults
        },
        access_token_lifetime_secs: args.token_lifetime_secs,
        rotate_refresh_tokens: args.rotate_refresh_tokens,
        faults,
        page_delay_ms: args.page_delay_ms,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config)
        .await
        .context("starting the simulator")?;
    tracing::info!(
        base_url = sim.base_url(),
        "ready; Ctrl-C or SIGTERM stops it"
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
