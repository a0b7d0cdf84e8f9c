//! What every stage binary does before and after its own work, in one place: load the
//! configuration, start logging and metrics, serve the probes, and turn SIGTERM/SIGINT into a
//! cancellation token.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::{Config, ConfigError, Health, ServeError, ServeHandle, serve, shutdown, telemetry};

/// Why a stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot start logging: {0}")]
    Telemetry(#[from] telemetry::TelemetryError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Loads `config_path` (or the environment alone when `None`) and starts logging, without the
/// probe server: for one-shot commands (`validate`, `oauth login`, `replay`) that may run beside
/// the stage on the same host and port. [`Service::start`] begins the same way.
pub fn load_for_command(config_path: Option<&Path>) -> Result<Config, ServiceError> {
    let config = match config_path {
        Some(path) => Config::load(path)?,
        None => Config::from_env()?,
    };
    telemetry::init(&config.telemetry)?;
    Ok(config)
}

/// A started stage process: its configuration, health, shutdown token and probe server.
#[derive(Debug)]
pub struct Service {
    pub config: Config,
    pub health: Health,
    /// Cancelled on SIGTERM/SIGINT; hand child tokens to tasks.
    pub shutdown: CancellationToken,
    server: ServeHandle,
}

impl Service {
    /// Loads `config_path` (or the environment alone when `None`), initialises telemetry and
    /// serves `/healthz`, `/readyz` and `/metrics` on `http.listen`.
    pub async fn start(config_path: Option<&Path>) -> Result<Self, ServiceError> {
        let config = load_for_command(config_path)?;
        let health = Health::new();
        let shutdown = shutdown::on_signal();
        let stop = shutdown.clone();
        let server = serve(config.http.listen, health.clone(), async move {
            stop.cancelled().await;
        })
        .await?;
        Ok(Self {
            config,
            health,
            shutdown,
            server,
        })
    }

    /// The probe server's address.
    pub fn probe_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// Stops the probe server (after the stage's own work has ended).
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Err(error) = self.server.stopped().await {
            tracing::warn!(%error, "probe server ended with an error");
        }
    }
}
