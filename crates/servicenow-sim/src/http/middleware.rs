//! Layers around the ServiceNow-facing routes: request counting, fault injection, auth.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::{StreamExt as _, stream};

use super::AppState;
use super::error::{not_authenticated, sn_error};
use crate::faults::{Fault, RequestFacts};
use crate::stats::RequestRecord;

/// Faults the list handler must apply itself, because they shape the page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageFaults {
    /// Rows of the page left visible (row ACL simulation).
    pub keep: Option<usize>,
    /// Cancel the transaction, answering with this status.
    pub cancel_status: Option<u16>,
}

/// How long a truncated body stalls before the connection breaks.
const TRUNCATION_PAUSE: Duration = Duration::from_millis(50);

/// Largest body the damaging faults will buffer.
const MAX_BUFFERED_BODY: usize = 512 * 1024 * 1024;

/// Count every request by path and final status. Pages (list requests for more than one row)
/// wait the configured page delay first and are counted while in flight: the stats keep the
/// most at once per path.
pub async fn count_requests(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    // A one-row list request is a count probe (`X-Total-Count`), quick on a real instance,
    // not a page of a scan.
    let is_page = request.method() == Method::GET
        && is_list_path(&path)
        && requested_limit(query.as_deref(), state.default_limit) > 1;
    let in_flight = is_page.then(|| state.page_started(&path));
    if is_page {
        let delay = state.page_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    let response = next.run(request).await;
    drop(in_flight);
    let status = response.status().as_u16();
    tracing::debug!(%method, %path, status, "request");
    state.stats().record(RequestRecord {
        method,
        path,
        query,
        status,
    });
    response
}

fn is_list_path(path: &str) -> bool {
    path.strip_prefix("/api/now/table/")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
}

fn requested_limit(query: Option<&str>, default: usize) -> usize {
    query
        .into_iter()
        .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
        .find(|(k, _)| k == "sysparm_limit")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

/// Decide and apply the faults for this request.
pub async fn inject_faults(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let facts = RequestFacts {
        path: &path,
        is_list: request.method() == Method::GET && is_list_path(&path),
        limit: requested_limit(request.uri().query(), state.default_limit),
        bearer: authorization
            .as_deref()
            .is_some_and(|h| h.len() > 7 && h[..7].eq_ignore_ascii_case("bearer ")),
    };
    let faults = state.faults().decide(&path, |fault| facts.admits(fault));
    if faults.is_empty() {
        return next.run(request).await;
    }
    tracing::info!(%path, ?faults, "injecting faults");
    let mut page = PageFaults::default();
    let mut early: Option<Response> = None;
    let mut damage: Option<Fault> = None;
    for fault in faults {
        match fault {
            Fault::Latency { millis } => tokio::time::sleep(Duration::from_millis(millis)).await,
            Fault::ExpireToken => state.auth.expire_presented_token(authorization.as_deref()),
            Fault::RateLimitRetryAfter { retry_after_secs } => {
                early.get_or_insert_with(|| rate_limited(Some(retry_after_secs), retry_after_secs));
            }
            Fault::RateLimitReset { reset_in_secs } => {
                early.get_or_insert_with(|| rate_limited(None, reset_in_secs));
            }
            Fault::ServerError { status } => {
                early.get_or_insert_with(|| server_error(status));
            }
            Fault::Unauthorized => {
                early.get_or_insert_with(|| {
                    sn_error(
                        StatusCode::UNAUTHORIZED,
                        "User Not Authenticated",
                        Some("Required to provide Auth information"),
                    )
                });
            }
            Fault::MalformedJson | Fault::TruncatedBody => damage = Some(fault),
            Fault::ShortPage { keep } => page.keep = Some(page.keep.map_or(keep, |k| k.min(keep))),
            Fault::TransactionCancelled { http_status, .. } => {
                page.cancel_status = Some(http_status)
            }
        }
    }
    if let Some(response) = early {
        return response;
    }
    request.extensions_mut().insert(page);
    let response = next.run(request).await;
    match damage {
        Some(Fault::MalformedJson) => malformed(response).await,
        Some(Fault::TruncatedBody) => truncated(response).await,
        _ => response,
    }
}

fn rate_limited(retry_after: Option<u64>, reset_in: u64) -> Response {
    let mut response = sn_error(
        StatusCode::TOO_MANY_REQUESTS,
        "Rate limit exceeded",
        Some("The rate limit rule for this user has been exceeded; retry later"),
    );
    let headers = response.headers_mut();
    let reset_at = Utc::now()
        .timestamp()
        .saturating_add(i64::try_from(reset_in).unwrap_or(i64::MAX));
    headers.insert("X-RateLimit-Reset", HeaderValue::from(reset_at));
    headers.insert("X-RateLimit-Limit", HeaderValue::from_static("100"));
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn server_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    sn_error(
        status,
        status.canonical_reason().unwrap_or("Server Error"),
        None,
    )
}

async fn buffered(response: Response) -> Result<(axum::http::response::Parts, Bytes), Response> {
    let (parts, body) = response.into_parts();
    match to_bytes(body, MAX_BUFFERED_BODY).await {
        Ok(bytes) => Ok((parts, bytes)),
        Err(err) => {
            tracing::warn!(error = %err, "could not buffer a response to damage it");
            Err(server_error(500))
        }
    }
}

/// Keep the status and headers, replace the body with something that is not JSON.
async fn malformed(response: Response) -> Response {
    let (mut parts, bytes) = match buffered(response).await {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    let mut damaged = bytes[..bytes.len() / 2].to_vec();
    damaged.extend_from_slice(b"<html><body>Instance unavailable</body></html>");
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(damaged))
}

/// Announce the full length, send half, then break the connection.
async fn truncated(response: Response) -> Response {
    let (mut parts, bytes) = match buffered(response).await {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let half = bytes.slice(..bytes.len() / 2);
    // The pause lets hyper flush the headers and the first half before the stream fails;
    // failing at once would abort the response before its status line is sent.
    let first = stream::once(async move { Ok::<Bytes, std::io::Error>(half) });
    let failure = stream::once(async {
        tokio::time::sleep(TRUNCATION_PAUSE).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated truncated body",
        ))
    });
    Response::from_parts(parts, Body::from_stream(first.chain(failure)))
}

/// Authenticate Table API requests; the principal goes into the request extensions.
pub async fn require_auth(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.auth.authenticate(authorization) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(reason) => {
            tracing::debug!(%reason, "request not authenticated");
            not_authenticated().into_response()
        }
    }
}
