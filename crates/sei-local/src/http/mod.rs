//! The HTTP surface: the contract's `/v1/` API and the `/admin/` endpoints tests steer
//! faults and read counters with.
//!
//! Every `/v1/` request passes through [`observe`] (faults, then counting) and
//! authenticates through the [`Tenant`] extractor before its body is read. `/admin/` and
//! `/dashboard` have no authentication and no faults: sei-local is a development server,
//! never exposed.

mod admin;
mod body;
mod dashboard;
mod dora;
mod error;
mod ingest;
mod mttr;
mod records;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use error::ApiError;

use crate::auth::{ApiKeys, Tenant};
use crate::faults::FaultEngine;
use crate::stats::Stats;
use crate::store::Store;

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub store: Arc<Store>,
    pub keys: ApiKeys,
    pub faults: Mutex<FaultEngine>,
    pub stats: Mutex<Stats>,
    pub max_body_bytes: usize,
    pub idempotency_keys_kept: usize,
}

impl AppState {
    /// Counters and rules stay usable after a panicking handler: they are plain numbers.
    pub fn faults(&self) -> MutexGuard<'_, FaultEngine> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`Self::faults`].
    pub fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) type SharedState = Arc<AppState>;

/// The whole application.
pub(crate) fn router(state: SharedState) -> Router {
    let api = Router::new()
        .route(
            "/v1/ingest/servicenow/{integration_id}/{entity}",
            post(ingest::ingest_batch),
        )
        .route(
            "/v1/servicenow/{integration_id}/{entity}",
            get(records::list_records),
        )
        .route(
            "/v1/servicenow/{integration_id}/{entity}/{sys_id}",
            get(records::get_record),
        )
        .route("/v1/metrics/mttr", get(mttr::get_mttr))
        .route("/v1/metrics/dora", get(dora::get_dora))
        .layer(middleware::from_fn_with_state(state.clone(), observe));
    let admin = Router::new()
        .route(
            "/admin/faults",
            get(admin::get_faults)
                .post(admin::set_faults)
                .delete(admin::clear_faults),
        )
        .route(
            "/admin/stats",
            get(admin::get_stats).delete(admin::reset_stats),
        )
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/assets/{name}", get(dashboard::asset));
    api.merge(admin).fallback(no_route).with_state(state)
}

/// Applies fault rules, then counts the answer by status.
async fn observe(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let verdict = crate::faults::decide(&mut state.faults(), &path);
    if !verdict.delay.is_zero() {
        tokio::time::sleep(verdict.delay).await;
    }
    let (response, injected) = match verdict.failure {
        Some(failure) => (ApiError::Injected(failure).into_response(), true),
        None => (next.run(request).await, false),
    };
    state
        .stats()
        .record(&path, response.status().as_u16(), injected);
    response
}

async fn no_route(request: Request) -> ApiError {
    ApiError::NoRoute {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    }
}

/// Authentication as an extractor, so a handler cannot forget it and it runs before the
/// body is read.
impl FromRequestParts<SharedState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        Ok(state.keys.authorize(&parts.headers)?)
    }
}
