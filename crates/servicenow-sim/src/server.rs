//! Starting, steering and stopping a simulator.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::AuthState;
use crate::config::{ConfigError, SimConfig};
use crate::faults::{FaultEngine, FaultRule, RuleReport};
use crate::generator::{Account, generate};
use crate::http::{AppState, router};
use crate::stats::Stats;
use crate::store::{Actor, Record, Store, StoreError};

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
}

/// Entry point.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Generate the data, bind `config.listen` and serve in a background task.
    pub async fn start(config: SimConfig) -> Result<RunningSim, SimError> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.listen,
            source,
        })?;
        let base_url = format!("http://{addr}");
        let instance_url = config
            .instance_url
            .clone()
            .unwrap_or_else(|| base_url.clone());
        let accounts: Vec<Account> = config
            .users
            .iter()
            .map(|u| Account {
                user_name: u.user_name.clone(),
                name: u.display_name(),
                roles: u.roles.clone(),
                time_zone: u.time_zone.clone(),
            })
            .collect();
        let dataset = generate(&config.data, &accounts);
        let display_offset = FixedOffset::east_opt(config.display_utc_offset_minutes * 60)
            .ok_or_else(|| ConfigError {
                field: "display_utc_offset_minutes".to_owned(),
                reason: "out of range".to_owned(),
            })?;
        let state = Arc::new(AppState {
            store: RwLock::new(Store::new(dataset, config.data.seed)),
            auth: AuthState::new(&config),
            faults: Mutex::new(FaultEngine::new(config.faults.clone())),
            stats: Mutex::new(Stats::default()),
            instance_url: instance_url.trim_end_matches('/').to_owned(),
            display_offset,
            default_limit: config.default_limit,
            page_delay_ms: AtomicU64::new(config.page_delay_ms),
            pages_in_flight: Mutex::new(std::collections::HashMap::new()),
        });
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = shutdown_rx.await;
                })
                .await;
            if let Err(err) = &result {
                tracing::error!(error = %err, "simulator server stopped with an error");
            }
            result
        });
        tracing::info!(%addr, instance_url = %state.instance_url, "servicenow simulator listening");
        Ok(RunningSim {
            addr,
            base_url,
            state,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }
}

/// A simulator serving in the background. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningSim {
    addr: SocketAddr,
    base_url: String,
    state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

fn object(table: &str, values: Value) -> Result<serde_json::Map<String, Value>, StoreError> {
    match values {
        Value::Object(map) => Ok(map),
        _ => Err(StoreError::NotAnObject {
            table: table.to_owned(),
        }),
    }
}

impl RunningSim {
    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: where clients connect.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// URL used in links (the configured instance URL, else [`Self::base_url`]).
    pub fn instance_url(&self) -> &str {
        &self.state.instance_url
    }

    /// Create a record as the Table API would, acting as the `system` user.
    pub fn insert(&self, table: &str, values: Value) -> Result<Record, StoreError> {
        let values = object(table, values)?;
        self.state
            .write_store()
            .insert(table, &values, &Actor::system())
    }

    /// Update a record as the Table API would (bumps `sys_mod_count`, stamps `sys_updated_on`).
    pub fn update(&self, table: &str, sys_id: &str, values: Value) -> Result<Record, StoreError> {
        let values = object(table, values)?;
        self.state
            .write_store()
            .update(table, sys_id, &values, &Actor::system())
    }

    /// Delete a record, leaving its `sys_audit_delete` row.
    pub fn delete(&self, table: &str, sys_id: &str) -> Result<Record, StoreError> {
        self.state
            .write_store()
            .delete(table, sys_id, &Actor::system())
    }

    /// One stored record.
    pub fn get(&self, table: &str, sys_id: &str) -> Result<Option<Record>, StoreError> {
        Ok(self
            .state
            .read_store()
            .get(table, sys_id)?
            .map(|(_, r)| r.clone()))
    }

    /// Every stored row of a table, in storage order.
    pub fn snapshot(&self, table: &str) -> Result<Vec<Record>, StoreError> {
        self.state.read_store().snapshot(table)
    }

    /// Run `f` with read access to the store (for checks the methods above do not cover).
    pub fn with_store<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(&self.state.read_store())
    }

    /// Run `f` with write access to the store.
    pub fn with_store_mut<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.state.write_store())
    }

    /// Freeze the clock used for `sys_created_on`/`sys_updated_on` (`None`: wall clock).
    pub fn set_now(&self, now: Option<DateTime<Utc>>) {
        self.state.write_store().set_now(now);
    }

    /// Replace the fault rules (counters restart).
    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        self.state.faults().replace(rules);
    }

    /// Add one fault rule.
    pub fn add_fault(&self, rule: FaultRule) {
        self.state.faults().add(rule);
    }

    /// Fault rules with their counters.
    pub fn faults(&self) -> Vec<RuleReport> {
        self.state.faults().report()
    }

    /// Answer each page (a list request for more than one row) after `delay` from now on.
    pub fn set_page_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.page_delay_ms.store(millis, Ordering::SeqCst);
    }

    /// Request counters so far.
    pub fn stats(&self) -> Stats {
        self.state.stats().clone()
    }

    /// Zero the request counters.
    pub fn reset_stats(&self) {
        *self.state.stats() = Stats::default();
    }

    /// Expire every OAuth access token now.
    pub fn expire_all_tokens(&self) {
        self.state.auth.expire_all_access_tokens();
    }

    /// Stop accepting connections and wait (briefly) for in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                // Idle keep-alive connections hold graceful shutdown open; cut them.
                task.abort();
            }
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
