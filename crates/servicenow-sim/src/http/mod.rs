//! The HTTP surface: Table API, OAuth endpoints, and the `/sim/*` admin API.

mod admin;
mod error;
mod middleware;
mod oauth;
mod table_api;

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

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
