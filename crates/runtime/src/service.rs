//! What every stage binary does before and after its own work, in one place: load the
//! configuration, start logging and metrics, serve the probes, and turn SIGTERM/SIGINT into a
//! cancellation token.

use std::fmt;
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

    /// Ends a stage whose run returned `result`: a run that ended with an error (a fatal one:
    /// the stages recover from the others themselves) first marks the process dead, so
    /// `/healthz` fails with the error as its reason while the process winds down; then the
    /// probe server stops. Every stage binary ends this way, so none can forget the first step.
    pub async fn finish<T, E: fmt::Display>(self, result: &Result<T, E>) {
        if let Err(error) = result {
            self.health.set_dead(error.to_string());
        }
        self.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn service() -> Service {
        let health = Health::new();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let server = serve("127.0.0.1:0".parse().unwrap(), health.clone(), async move {
            stop.cancelled().await
        })
        .await
        .unwrap();
        Service {
            config: Config::default(),
            health,
            shutdown,
            server,
        }
    }

    #[tokio::test]
    async fn a_run_that_failed_marks_the_process_dead_with_its_error() {
        let service = service().await;
        let health = service.health.clone();
        let result: Result<(), &str> = Err("ServiceNow refused the credentials of every unit");
        service.finish(&result).await;
        assert_eq!(
            health.liveness().reason.as_deref(),
            Some("ServiceNow refused the credentials of every unit")
        );
    }

    #[tokio::test]
    async fn a_run_that_ended_cleanly_leaves_the_process_alive() {
        let service = service().await;
        let health = service.health.clone();
        service.finish(&Ok::<(), &str>(())).await;
        assert!(health.liveness().alive);
    }
}
