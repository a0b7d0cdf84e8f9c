//! `POST /v1/ingest/servicenow/{integration_id}/{entity}`.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chrono::Utc;
use nowstream_model::Entity;
use sha2::{Digest, Sha256};

use super::body::{ContentEncoding, read_limited};
use super::{ApiError, SharedState};
use crate::auth::Tenant;
use crate::batch::{Batch, IngestResult};
use crate::store::{IdempotencyKey, KeyUse, Scope};

/// Header carrying the batch's stable id.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Longest `Idempotency-Key` kept; longer ones are a sender bug, not an id.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 512;

/// Loads one batch: checks every record, then applies it in one transaction.
pub(super) async fn ingest_batch(
    State(state): State<SharedState>,
    tenant: Tenant,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResult>, ApiError> {
    let Path((integration_id, entity)) = path.map_err(|rejection| ApiError::BadPath {
        reason: rejection.body_text(),
    })?;
    let entity = Entity::from_api_path(&entity)?;
    let key = idempotency_key(&headers)?;
    let encoding = ContentEncoding::from_headers(&headers)?;
    let raw = read_limited(&headers, body, state.max_body_bytes).await?;
    let scope = Scope::new(tenant.as_str(), &integration_id, entity);
    let worker_state = state.clone();
    let worker_scope = scope.clone();
    // Decoding, parsing and SQLite are CPU or blocking work: keep them off the reactor.
    let outcome = tokio::task::spawn_blocking(move || {
        let state = worker_state;
        let decoded = encoding.decode(raw, state.max_body_bytes)?;
        let key = IdempotencyKey {
            key,
            body_sha256: Sha256::digest(&decoded).into(),
        };
        let batch = Batch::parse(&decoded, entity, &worker_scope.integration_id)?;
        Ok::<_, ApiError>(state.store.ingest(
            &worker_scope,
            &key,
            &batch,
            Utc::now(),
            state.idempotency_keys_kept,
        )?)
    })
    .await
    .map_err(|_| ApiError::WorkerFailed)??;
    let result = outcome.result;
    match outcome.key_use {
        KeyUse::Fresh => tracing::info!(
            tenant = %scope.tenant, integration_id = %scope.integration_id, entity = %entity,
            upserted = result.upserted, deleted = result.deleted, stale = result.stale,
            "batch applied"
        ),
        KeyUse::Replayed => tracing::info!(
            tenant = %scope.tenant, integration_id = %scope.integration_id, entity = %entity,
            "batch replayed under a known Idempotency-Key; stored response returned"
        ),
        KeyUse::ReusedWithOtherBody => tracing::warn!(
            tenant = %scope.tenant, integration_id = %scope.integration_id, entity = %entity,
            upserted = result.upserted, deleted = result.deleted, stale = result.stale,
            "Idempotency-Key reused for a different batch; applied as a new batch"
        ),
    }
    Ok(Json(result))
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN)
        .map(str::to_owned)
        .ok_or(ApiError::MissingIdempotencyKey)
}
