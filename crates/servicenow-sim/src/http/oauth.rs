//! `/oauth_token.do` and `/oauth_auth.do`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::auth::OAuthError;

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

fn oauth_failure(err: &OAuthError) -> Response {
    tracing::info!(error = %err, "oauth request refused");
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(err.body())).into_response()
}

fn form_pairs(bytes: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

/// `POST /oauth_token.do` (form body).
pub async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    match state.auth.token(&form, authorization(&headers)) {
        Ok(response) => {
            tracing::info!(
                grant_type = form.get("grant_type").map(String::as_str),
                "issued access token"
            );
            let mut response = Json(response).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(err) => oauth_failure(&err),
    }
}

/// `GET /oauth_auth.do?response_type=code&client_id&redirect_uri&state`: approves at once.
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = form_pairs(raw.as_deref().unwrap_or_default().as_bytes());
    match state.auth.authorize(&params, authorization(&headers)) {
        Ok(location) => match HeaderValue::from_str(&location) {
            Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
            Err(_) => oauth_failure(&OAuthError::InvalidRequest(
                "redirect_uri cannot be used in a header".into(),
            )),
        },
        Err(err) => oauth_failure(&err),
    }
}
