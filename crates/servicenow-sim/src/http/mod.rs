//! The HTTP surface: Table API, OAuth endpoints, and the `/sim/*` admin API.

mod admin;
mod error;
mod middleware;
mod oauth;
mod table_api;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use chrono::FixedOffset;
use std::sync::Arc;

use crate::auth::AuthState;
use crate::faults::FaultEngine;
use crate::stats::Stats;
use crate::store::Store;

pub use middleware::PageFaults;

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The data.
    pub store: RwLock<Store>,
    /// Accounts, clients, tokens.
    pub auth: AuthState,
    /// Active fault rules.
    pub faults: Mutex<FaultEngine>,
    /// Request counters.
    pub stats: Mutex<Stats>,
    /// Base of links (`Link` header, reference links).
    pub instance_url: String,
    /// Users' time zone for date-time display values.
    pub display_offset: FixedOffset,
    /// `sysparm_limit` when none is given.
    pub default_limit: usize,
    /// How long each list request waits before it is handled, in milliseconds.
    pub page_delay_ms: AtomicU64,
    /// Pages (list requests for more than one row) being handled right now, per path; their
    /// maximum goes to the stats.
    pub pages_in_flight: Mutex<HashMap<String, usize>>,
}

/// One page request being handled: counted in [`AppState::pages_in_flight`] until dropped,
/// so a request whose client went away is uncounted too.
#[derive(Debug)]
pub struct PageInFlight<'a> {
    state: &'a AppState,
    path: String,
}

impl Drop for PageInFlight<'_> {
    fn drop(&mut self) {
        if let Some(count) = self.state.pages_in_flight().get_mut(&self.path) {
            *count = count.saturating_sub(1);
        }
    }
}

// A panic while holding a lock must not turn every later request into a panic: the data is
// plain strings and stays usable, so poisoned locks are entered anyway.
impl AppState {
    /// Shared read access to the store.
    pub fn read_store(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exclusive access to the store.
    pub fn write_store(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fault engine.
    pub fn faults(&self) -> MutexGuard<'_, FaultEngine> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request counters.
    pub fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The delay before each list request is answered.
    pub fn page_delay(&self) -> Duration {
        Duration::from_millis(self.page_delay_ms.load(Ordering::SeqCst))
    }

    fn pages_in_flight(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.pages_in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a page request to `path` as in flight until the guard drops, and records the
    /// most that were ever in flight at once on that path.
    pub fn page_started(&self, path: &str) -> PageInFlight<'_> {
        let now = {
            let mut in_flight = self.pages_in_flight();
            let count = in_flight.entry(path.to_owned()).or_default();
            *count += 1;
            *count
        };
        self.stats().note_concurrent_pages(path, now);
        PageInFlight {
            state: self,
            path: path.to_owned(),
        }
    }
}

/// The full router. Faults and stats wrap the ServiceNow-facing routes only, never `/sim/*`,
/// so a test can always reach the admin API.
pub fn router(state: Arc<AppState>) -> Router {
    let table_api = Router::new()
        .route(
            "/api/now/table/{table}",
            get(table_api::list).post(table_api::create),
        )
        .route(
            "/api/now/table/{table}/{sys_id}",
            get(table_api::read)
                .put(table_api::update)
                .patch(table_api::update)
                .delete(table_api::remove),
        )
        .route_layer(from_fn_with_state(state.clone(), middleware::require_auth));
    let oauth = Router::new()
        .route("/oauth_token.do", post(oauth::token))
        .route("/oauth_auth.do", get(oauth::authorize));
    let instance = table_api
        .merge(oauth)
        .layer(from_fn_with_state(state.clone(), middleware::inject_faults))
        .layer(from_fn_with_state(
            state.clone(),
            middleware::count_requests,
        ));
    let admin = Router::new()
        .route(
            "/sim/faults",
            get(admin::get_faults)
                .post(admin::set_faults)
                .delete(admin::clear_faults),
        )
        .route(
            "/sim/stats",
            get(admin::get_stats).delete(admin::reset_stats),
        )
        .route("/sim/clock", post(admin::set_clock))
        .route("/sim/tokens/expire", post(admin::expire_tokens))
        .route("/sim/tables/{table}", get(admin::snapshot));
    instance.merge(admin).with_state(state)
}
