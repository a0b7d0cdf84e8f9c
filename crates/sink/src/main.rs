//! `nowstream-sink`: loads SEI entities from Kafka into SEI. Thin on purpose: the work is in
//! the library's [`nowstream_sink::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use nowstream_runtime::allocator::{self, MallocSettings};
use nowstream_runtime::{SecretScope, Service};

/// Loads SEI entities from the sei.servicenow.* topics into a receiver of nowstream's ingestion
/// contract.
#[derive(Debug, Parser)]
#[command(name = "nowstream-sink", version)]
struct Args {
    /// Configuration file (TOML or YAML). Without it, configuration comes from
    /// NOWSTREAM__… environment variables alone.
    #[arg(long, env = "NOWSTREAM_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    allocator::run(MallocSettings::STAGE, sink(args)).unwrap_or_else(|error| {
        eprintln!("nowstream-sink: cannot start the async runtime: {error}");
        ExitCode::FAILURE
    })
}

async fn sink(args: Args) -> ExitCode {
    let service = match Service::start(args.config.as_deref(), SecretScope::SINK).await {
        Ok(service) => service,
        Err(error) => {
            // Logging may not be set up yet: stderr is the one place sure to be seen.
            eprintln!("nowstream-sink: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = nowstream_sink::run(
        service.config.clone(),
        service.health.clone(),
        service.shutdown.clone(),
    )
    .await;
    if let Err(error) = &result {
        tracing::error!(%error, "sink stopped with an error");
    }
    service.finish(&result).await;
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
