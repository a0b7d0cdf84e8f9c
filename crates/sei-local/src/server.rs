//! Starting, steering and stopping sei-local.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nowstream_model::Entity;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::ApiKeys;
use crate::config::{ConfigError, SeiLocalConfig};
use crate::faults::{FaultEngine, FaultRule, RuleReport};
use crate::http::{AppState, SharedState, router};
use crate::stats::Stats;
use crate::store::{Scope, Store, StoreError, StoredRecord};

/// How long a shutdown waits for in-flight requests before cutting connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why sei-local could not start, or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum SeiLocalError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("sei-local server on {addr} failed: {source}")]
    Serve {
        /// Bound address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
}

/// Entry point.
#[derive(Debug)]
pub struct SeiLocal;

impl SeiLocal {
    /// Validates `config`, opens the database, binds `config.listen` and serves in a
    /// background task until [`RunningSeiLocal::shutdown`] or drop.
    pub async fn start(config: SeiLocalConfig) -> Result<RunningSeiLocal, SeiLocalError> {
        config.validate()?;
        let store = Arc::new(Store::open(&config.database)?);
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| SeiLocalError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SeiLocalError::Bind {
                addr: config.listen,
                source,
            })?;
        let state = Arc::new(AppState {
            store,
            keys: ApiKeys::new(&config.api_keys),
            faults: Mutex::new(FaultEngine::new(config.faults.clone())),
            stats: Mutex::new(Stats::default()),
            max_body_bytes: config.max_body_bytes,
            idempotency_keys_kept: config.idempotency_keys_kept,
        });
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // A dropped sender is a shutdown too.
                    let _ = shutdown_rx.await;
                })
                .await
        });
        tracing::info!(
            %addr,
            database = %config.database,
            tenants = config.api_keys.len(),
            "sei-local listening"
        );
        Ok(RunningSeiLocal {
            addr,
            base_url: format!("http://{addr}"),
            state,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// Serves until `shutdown` resolves, then stops gracefully: what a binary calls.
    pub async fn run(
        config: SeiLocalConfig,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), SeiLocalError> {
        let running = Self::start(config).await?;
        shutdown.await;
        running.shutdown().await
    }
}

/// sei-local serving in the background. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningSeiLocal {
    addr: SocketAddr,
    base_url: String,
    state: SharedState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSeiLocal {
    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: what a sink's `sei.url` is set to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The store, for queries the HTTP API does not offer.
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Every stored record of one tenant, integration and entity, tombstones included,
    /// ordered by sys_id.
    pub fn records(
        &self,
        tenant: &str,
        integration_id: &str,
        entity: Entity,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.state
            .store
            .records(&Scope::new(tenant, integration_id, entity))
    }

    /// Replaces the fault rules (counters restart).
    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        self.state.faults().replace(rules);
    }

    /// Fault rules with their counters.
    pub fn faults(&self) -> Vec<RuleReport> {
        self.state.faults().report()
    }

    /// Request counters so far.
    pub fn stats(&self) -> Stats {
        self.state.stats().clone()
    }

    /// Zeroes the request counters.
    pub fn reset_stats(&self) {
        *self.state.stats() = Stats::default();
    }

    /// Stops accepting connections and waits (up to a few seconds) for in-flight requests.
    pub async fn shutdown(mut self) -> Result<(), SeiLocalError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(source))) => Err(SeiLocalError::Serve {
                addr: self.addr,
                source,
            }),
            Ok(Err(join)) => Err(SeiLocalError::Serve {
                addr: self.addr,
                source: std::io::Error::other(join.to_string()),
            }),
            Err(_) => {
                // Idle keep-alive connections can hold a graceful shutdown open; cut them.
                task.abort();
                tracing::warn!(addr = %self.addr, "sei-local connections cut after the shutdown grace period");
                Ok(())
            }
        }
    }
}

impl Drop for RunningSeiLocal {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            // Without a runtime to wait on, make sure the port is released.
            task.abort();
        }
    }
}
