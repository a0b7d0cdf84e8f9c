//! `nowstream-fetcher`: polls ServiceNow and publishes raw records to Kafka.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use nowstream_fetcher::{oauth_login, preflight};
use nowstream_runtime::allocator::{self, MallocSettings};
use nowstream_runtime::{SecretScope, Service, load_for_command};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Polls ServiceNow incrementally and publishes raw records to Kafka"
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
    /// Fetch continuously (the default).
    Run,
    /// Check every integration like SEI's "Validate connection": URL, TLS, authentication,
    /// roles, table access and clock skew. Exits 1 when a check fails.
    Validate,
    /// OAuth set-up.
    Oauth {
        #[command(subcommand)]
        command: OauthCommand,
    },
}

#[derive(Debug, Subcommand)]
enum OauthCommand {
    /// Run the authorization-code flow once and store the refresh token in the integration's
    /// `refresh_token_file` (mode 0600).
    Login {
        /// The integration id whose OAuth settings to use.
        #[arg(long)]
        integration: String,
        /// Redirect URI registered in ServiceNow's Application Registry; the command listens on it.
        #[arg(long, default_value = oauth_login::DEFAULT_REDIRECT_URI)]
        redirect_uri: String,
        /// How long to wait for the browser, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    allocator::run(MallocSettings::FETCHER, fetcher(cli))
        .context("cannot start the async runtime")?
}

async fn fetcher(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config.as_deref()).await.map(|()| ExitCode::SUCCESS),
        Command::Validate => {
            let config = load_for_command(cli.config.as_deref(), SecretScope::FETCHER)?;
            let report = preflight::validate(&config).await;
            print!("{}", report.render());
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Oauth {
            command:
                OauthCommand::Login {
                    integration,
                    redirect_uri,
                    timeout_secs,
                },
        } => {
            let config = load_for_command(cli.config.as_deref(), SecretScope::FETCHER)?;
            let options = oauth_login::LoginOptions {
                redirect_uri,
                timeout: Duration::from_secs(timeout_secs),
            };
            let path = oauth_login::login(&config, &integration, options, std::io::stdout())
                .await
                .context("OAuth login failed")?;
            println!("refresh token stored in {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run(config: Option<&Path>) -> anyhow::Result<()> {
    let service = Service::start(config, SecretScope::FETCHER)
        .await
        .context("cannot start the fetcher")?;
    let result = nowstream_fetcher::run(
        service.config.clone(),
        service.health.clone(),
        service.shutdown.clone(),
    )
    .await;
    service.finish(&result).await;
    result.context("the fetcher stopped")
}
