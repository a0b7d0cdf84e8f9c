//! `nowstream-normalizer`: raw ServiceNow records in, SEI entities out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use nowstream_normalizer::{ReplayFrom, replay};
use nowstream_runtime::allocator::{self, MallocSettings};
use nowstream_runtime::{SecretScope, Service, load_for_command, shutdown};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Normalizes raw ServiceNow records from Kafka into SEI entities"
)]
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
    /// Normalize continuously as a member of the consumer group (the default).
    Run,
    /// Normalize the raw topics' history again, up to their end at the start, under the
    /// current configuration (e.g. after exclude_fields changed); then exit. Runs under its
    /// own consumer group, beside the running stage. Exits 1 when interrupted.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ReplayArgs {
    /// Every record the raw topics hold.
    #[arg(long)]
    from_beginning: bool,
    /// Only records the fetcher published at or after this RFC 3339 time
    /// (e.g. 2025-01-31T00:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    since: Option<DateTime<Utc>>,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    allocator::run(MallocSettings::STAGE, normalizer(cli))
        .context("cannot start the async runtime")?
}

async fn normalizer(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config.as_deref()).await.map(|()| ExitCode::SUCCESS),
        Command::Replay(args) => {
            let from = match args.since {
                Some(since) => ReplayFrom::Since(since),
                None => ReplayFrom::Beginning,
            };
            let config = load_for_command(cli.config.as_deref(), SecretScope::NORMALIZER)?;
            let report = replay(config, from, shutdown::on_signal())
                .await
                .context("the replay failed")?;
            println!(
                "replay {} ({} partitions, group {}): {}",
                if report.completed {
                    "complete"
                } else {
                    "interrupted"
                },
                report.partitions,
                report.group,
                report.summary
            );
            Ok(if report.completed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

async fn run(config: Option<&Path>) -> anyhow::Result<()> {
    let service = Service::start(config, SecretScope::NORMALIZER)
        .await
        .context("cannot start the normalizer")?;
    let result = nowstream_normalizer::run(
        service.config.clone(),
        service.health.clone(),
        service.shutdown.clone(),
    )
    .await;
    service.finish(&result).await;
    result.map(|_| ()).context("the normalizer stopped")
}
