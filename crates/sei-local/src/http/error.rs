//! Every way a request is refused, and the contract's JSON error shape for each.
//!
//! One place turns an error into status, code, message and log line, so a refusal is
//! reported the same way wherever it comes from.

use axum::Json;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nowstream_model::{Entity, UnknownEntity};
use serde::Serialize;

use crate::auth::AuthError;
use crate::batch::BatchError;
use crate::faults::{HTML_BAD_REQUEST_PAGE, InjectedFailure};
use crate::store::StoreError;

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong credentials (401), or a key of another tenant (403).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// `{entity}` in the path is no entity.
    #[error(transparent)]
    UnknownEntity(#[from] UnknownEntity),
    /// No route has this path.
    #[error("no such endpoint: {method} {path}")]
    NoRoute {
        /// Method asked for.
        method: String,
        /// Path asked for.
        path: String,
    },
    /// A path segment is not valid UTF-8 text.
    #[error("bad path: {reason}")]
    BadPath {
        /// Why.
        reason: String,
    },
    /// An ingest request without `Idempotency-Key` (the contract requires it).
    #[error("missing Idempotency-Key header (a stable id of the batch)")]
    MissingIdempotencyKey,
    /// A `Content-Encoding` other than gzip.
    #[error("Content-Encoding `{encoding}` is not supported; send gzip or none")]
    UnsupportedEncoding {
        /// The header's value.
        encoding: String,
    },
    /// The body is larger than allowed.
    #[error("request body exceeds {limit} bytes{}", if *.decoded { " once gzip-decoded" } else { "" })]
    TooLarge {
        /// The limit.
        limit: usize,
        /// Whether the limit was hit while decoding gzip.
        decoded: bool,
    },
    /// The body cannot be read or decoded.
    #[error("unreadable request body: {reason}")]
    BadBody {
        /// Why.
        reason: String,
    },
    /// The batch or one of its records is bad.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// No such record.
    #[error("no {entity} `{sys_id}` is stored")]
    NotFound {
        /// Entity.
        entity: Entity,
        /// sys_id asked for.
        sys_id: String,
    },
    /// The record was deleted.
    #[error("{entity} `{sys_id}` was deleted")]
    Deleted {
        /// Entity.
        entity: Entity,
        /// sys_id asked for.
        sys_id: String,
    },
    /// A bad query parameter (or admin body).
    #[error("{reason}")]
    BadQuery {
        /// The parameter, when known.
        field: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking task died.
    #[error("internal error: a worker task failed")]
    WorkerFailed,
    /// A fault rule fired.
    #[error("injected fault: {}", describe_injected(.0))]
    Injected(InjectedFailure),
}

fn describe_injected(failure: &InjectedFailure) -> String {
    match failure {
        InjectedFailure::ServerError { status, .. } => format!("server error {status}"),
        InjectedFailure::RateLimited { retry_after_secs } => {
            format!("rate limited; retry after {retry_after_secs} s")
        }
        InjectedFailure::HtmlBadRequest => "400 with an HTML page".to_owned(),
    }
}

/// The contract's `Error` schema.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    /// Status and machine-readable code.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Auth(AuthError::WrongTenant { .. }) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Auth(AuthError::MissingTenant) => (StatusCode::UNAUTHORIZED, "missing_tenant"),
            Self::Auth(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::UnknownEntity(_) | Self::NoRoute { .. } | Self::NotFound { .. } => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            Self::Deleted { .. } => (StatusCode::NOT_FOUND, "deleted"),
            Self::BadPath { .. } => (StatusCode::BAD_REQUEST, "bad_path"),
            Self::MissingIdempotencyKey => (StatusCode::BAD_REQUEST, "missing_idempotency_key"),
            Self::UnsupportedEncoding { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding")
            }
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::BadBody { .. } => (StatusCode::BAD_REQUEST, "bad_body"),
            Self::Batch(BatchError::NotABatch { .. }) => (StatusCode::BAD_REQUEST, "bad_batch"),
            Self::Batch(_) => (StatusCode::BAD_REQUEST, "bad_record"),
            Self::BadQuery { .. } => (StatusCode::BAD_REQUEST, "bad_query"),
            Self::Store(_) | Self::WorkerFailed => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Self::Injected(InjectedFailure::ServerError { status, .. }) => (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "unavailable",
            ),
            Self::Injected(InjectedFailure::RateLimited { .. }) => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            }
            Self::Injected(InjectedFailure::HtmlBadRequest) => {
                (StatusCode::BAD_REQUEST, "html_bad_request")
            }
        }
    }

    fn record_index_and_field(&self) -> (Option<usize>, Option<String>) {
        match self {
            Self::Batch(BatchError::BadRecord { index, field, .. }) => {
                (Some(*index), field.clone())
            }
            Self::Batch(BatchError::BadDelete { index, .. }) => {
                (None, Some(format!("deletes[{index}]")))
            }
            Self::BadQuery { field, .. } => (None, field.clone()),
            _ => (None, None),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Injected(InjectedFailure::ServerError {
                retry_after_secs, ..
            }) => *retry_after_secs,
            Self::Injected(InjectedFailure::RateLimited { retry_after_secs }) => {
                Some(*retry_after_secs)
            }
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = self.to_string();
        match &self {
            Self::Store(_) | Self::WorkerFailed => {
                tracing::error!(status = status.as_u16(), code, error = %message, "request failed");
            }
            Self::Injected(_) => {
                tracing::debug!(status = status.as_u16(), code, "fault injected");
            }
            _ => {
                tracing::info!(status = status.as_u16(), code, error = %message, "request refused")
            }
        }
        if let Self::Injected(InjectedFailure::HtmlBadRequest) = &self {
            // Not the contract's shape on purpose: what a proxy or WAF in front of SEI sends.
            return (
                status,
                [(CONTENT_TYPE, "text/html; charset=utf-8")],
                HTML_BAD_REQUEST_PAGE,
            )
                .into_response();
        }
        let (record_index, field) = self.record_index_and_field();
        let retry_after = self.retry_after_secs();
        let mut response = (
            status,
            Json(ErrorBody {
                error: code,
                message,
                record_index,
                field,
            }),
        )
            .into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
