//! `nowstream`: the product's front door. `nowstream demo` runs the whole pipeline on this
//! machine with no external service.

use clap::{Parser, Subcommand};

use nowstream::demo::{BrokerChoice, DemoOptions};
use nowstream_runtime::allocator::{self, MallocSettings};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "ServiceNow ITSM data into Harness SEI, through Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline locally: ServiceNow simulator → fetcher → Kafka → normalizer →
    /// sink → sei-local, then print what arrived and the MTTR by priority.
    Demo {
        /// Kafka for the demo: a bootstrap address (`host:port`) of a running Kafka; without
        /// it, librdkafka's in-process mock cluster, with nothing to install.
        #[arg(long, value_name = "BOOTSTRAP")]
        broker: Option<String>,
        /// Incidents the simulator generates.
        #[arg(long, default_value_t = 2_000)]
        incidents: usize,
        /// Change requests the simulator generates.
        #[arg(long, default_value_t = 500)]
        change_requests: usize,
        /// Users the simulator generates.
        #[arg(long, default_value_t = 200)]
        users: usize,
        /// Seed of the generated data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Keep the pipeline and sei-local running after the summary, for browsing its API and
        /// its DORA dashboard (the URL is printed).
        #[arg(long)]
        keep_running: bool,
        /// Log level of the stages (tracing filter); progress lines are printed regardless.
        #[arg(long, default_value = "warn")]
        log_level: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    allocator::run(MallocSettings::STAGE, demo(cli))?
}

async fn demo(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo {
            broker,
            incidents,
            change_requests,
            users,
            seed,
            keep_running,
            log_level,
        } => {
            let options = DemoOptions {
                broker: broker.map_or(BrokerChoice::Mock, BrokerChoice::Bootstrap),
                incidents,
                change_requests,
                users,
                seed,
                keep_running,
                log_level,
            };
            let summary = nowstream::demo::run(options, std::io::stdout()).await?;
            if !summary.complete {
                anyhow::bail!("the demo did not deliver every record; see the summary above");
            }
            Ok(())
        }
    }
}
