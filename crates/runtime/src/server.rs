//! The probe and metrics listener: `/healthz`, `/readyz`, `/metrics`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::health::Health;
use crate::process_memory;
use crate::prometheus::{self, MetricsError};

/// How often histogram windows are rolled when nobody scrapes, so memory stays bounded.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The listener could not be started or failed while running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// Why binding failed.
        source: io::Error,
    },
    /// The metrics recorder is not available.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// Accepting or serving connections failed.
    #[error("probe server on {addr} failed: {source}")]
    Serve {
        /// The bound address.
        addr: SocketAddr,
        /// The I/O failure.
        source: io::Error,
    },
    /// The server task panicked or was aborted.
    #[error("probe server on {addr} stopped abnormally: {source}")]
    Task {
        /// The bound address.
        addr: SocketAddr,
        /// The join failure.
        source: tokio::task::JoinError,
    },
}

/// A running listener.
#[derive(Debug)]
pub struct ServeHandle {
    local_addr: SocketAddr,
    task: JoinHandle<Result<(), ServeError>>,
}

impl ServeHandle {
    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has stopped (after the shutdown future resolved and open
    /// requests finished).
    pub async fn stopped(self) -> Result<(), ServeError> {
        let addr = self.local_addr;
        self.task
            .await
            .map_err(|source| ServeError::Task { addr, source })?
    }
}

/// Binds `addr` and serves the probes and metrics until `shutdown` resolves.
///
/// Installs the metrics recorder if that has not happened yet (see
/// [`prometheus::install`]). Must be called within a tokio runtime.
pub async fn serve<F>(
    addr: SocketAddr,
    health: Health,
    shutdown: F,
) -> Result<ServeHandle, ServeError>
where
    F: Future + Send + 'static,
{
    let metrics = prometheus::install()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let app = router(health, metrics.clone());

    let task = tokio::spawn(async move {
        let upkeep = tokio::spawn(async move {
            let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                interval.tick().await;
                metrics.run_upkeep();
            }
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
            })
            .await;
        upkeep.abort();
        served.map_err(|source| ServeError::Serve {
            addr: local_addr,
            source,
        })
    });
    tracing::info!(%local_addr, "serving /healthz, /readyz and /metrics");
    Ok(ServeHandle { local_addr, task })
}

/// The routes, for a binary that wants to serve them on a listener of its own.
pub fn router(health: Health, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { render_metrics(&metrics) }
            }),
        )
}

async fn healthz(State(health): State<Health>) -> Response {
    let liveness = health.liveness();
    let status = if liveness.alive {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(liveness)).into_response()
}

async fn readyz(State(health): State<Health>) -> Response {
    let readiness = health.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

fn render_metrics(metrics: &PrometheusHandle) -> Response {
    process_memory::record();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}
