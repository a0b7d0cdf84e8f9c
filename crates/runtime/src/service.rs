//! What every stage binary does before and after its own work, in one place: load the
//! configuration, start logging and metrics, serve the probes, and turn SIGTERM/SIGINT into a
//! cancellation token.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::config::{ConfigLoader, SecretScope};
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

/// Loads `config_path` (or the environment alone when `None`), reading only the secrets of
/// `scope` (the stage's own), and starts logging, without the probe server: for one-shot
/// commands (`validate`, `oauth login`, `replay`) that may run beside the stage on the same host
/// and port. [`Service::start`] begins the same way.
pub fn load_for_command(
    config_path: Option<&Path>,
    scope: SecretScope,
) -> Result<Config, ServiceError> {
    let mut loader = ConfigLoader::new();
    if let Some(path) = config_path {
        loader = loader.file(path);
    }
    let config = loader.process_env().secret_scope(scope).load()?;
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
    /// Loads `config_path` (or the environment alone when `None`) with the secrets of `scope`,
    /// initialises telemetry and serves `/healthz`, `/readyz` and `/metrics` on `http.listen`.
    pub async fn start(
        config_path: Option<&Path>,
        scope: SecretScope,
    ) -> Result<Self, ServiceError> {
        let config = load_for_command(config_path, scope)?;
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
