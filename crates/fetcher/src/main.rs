//! `nowstream-fetcher`: polls ServiceNow and publishes raw records to Kafka.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use nowstream_runtime::Service;

#[derive(Debug, Parser)]
#[command(version, about = "Polls ServiceNow incrementally and publishes raw records to Kafka")]
struct Cli {
    /// Configuration file (TOML or YAML). Without it, configuration comes from
    /// NOWSTREAM__SECTION__KEY environment variables alone.
    #[arg(long, short, env = "NOWSTREAM_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch continuously (the default).
    Run,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config).await,
    }
}

async fn run(config: Option<PathBuf>) -> anyhow::Result<()> {
    let service = Service::start(config.as_deref())
        .await
        .context("cannot start the fetcher")?;
    let result = nowstream_fetcher::run(
        service.config.clone(),
        service.health.clone(),
        service.shutdown.clone(),
    )
    .await;
    service.stop().await;
    result.context("the fetcher stopped")
}
