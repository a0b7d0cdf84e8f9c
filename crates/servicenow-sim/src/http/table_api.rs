//! `/api/now/table/{table}[/{sys_id}]`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nowstream_model::table_api::query::EncodedQuery;
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::{
    TRANSACTION_CANCELLED, TRANSACTION_CANCELLED_DETAIL, bad_payload, error_body, invalid_table,
    no_record, read_denied, sn_error, store_error,
};
use super::middleware::PageFaults;
use crate::auth::Principal;
use crate::display::{DisplayMode, RenderOptions, raw_value, render_record};
use crate::listing;
use crate::store::{Actor, Store};

/// The `sysparm_*` parameters of a request, plus the raw pairs for building `Link` URLs.
#[derive(Debug, Clone)]
struct Params {
    pairs: Vec<(String, String)>,
    query: String,
    limit: usize,
    offset: usize,
    fields: Option<Vec<String>>,
    display: DisplayMode,
    exclude_reference_link: bool,
    no_count: bool,
    suppress_pagination_header: bool,
}

impl Params {
    fn parse(raw: Option<&str>, default_limit: usize) -> Self {
        let pairs: Vec<(String, String)> = raw
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let flag = |name: &str| get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let fields = get("sysparm_fields").map(|f| {
            f.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
        Self {
            query: get("sysparm_query").unwrap_or_default().to_owned(),
            limit: get("sysparm_limit")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(default_limit),
            offset: get("sysparm_offset")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            fields: fields.filter(|f| !f.is_empty()),
            display: DisplayMode::from_param(get("sysparm_display_value")),
            exclude_reference_link: flag("sysparm_exclude_reference_link"),
            no_count: flag("sysparm_no_count"),
            suppress_pagination_header: flag("sysparm_suppress_pagination_header"),
            pairs,
        }
    }

    fn render_options(&self, state: &AppState) -> RenderOptions {
        RenderOptions {
            mode: self.display,
            exclude_reference_link: self.exclude_reference_link,
            fields: self.fields.clone(),
            instance_url: state.instance_url.clone(),
            display_offset: state.display_offset,
        }
    }
}

/// `GET /api/now/table/{table}`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(table): Path<String>,
    Extension(principal): Extension<Principal>,
    page_faults: Option<Extension<PageFaults>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = Params::parse(raw.as_deref(), state.default_limit);
    let faults = page_faults.map(|Extension(f)| f).unwrap_or_default();
    let access = state.auth.access(&principal.user_name);
    let store = state.read_store();
    if !store.has_table(&table) {
        return invalid_table(&table);
    }
    if access.is_some_and(|a| !a.can_read(&table)) {
        return read_denied();
    }
    let query = match EncodedQuery::parse(&params.query) {
        Ok(query) => query,
        Err(err) => {
            return sn_error(
                StatusCode::BAD_REQUEST,
                "Invalid query",
                Some(&err.to_string()),
            );
        }
    };
    let page = match listing::list(&store, &table, &query, params.offset, params.limit) {
        Ok(page) => page,
        Err(err) => return store_error(&err),
    };
    let hidden = access.and_then(|a| a.hidden_rows.get(&table));
    let keep = faults.keep.unwrap_or(usize::MAX);
    let options = params.render_options(&state);
    let rows: Vec<Value> = page
        .rows
        .iter()
        .enumerate()
        .filter(|(i, (concrete, record))| {
            *i < keep
                && !hidden
                    .is_some_and(|q| q.matches(&|f: &str| raw_value(&store, concrete, record, f)))
        })
        .map(|(_, (concrete, record))| {
            Value::Object(render_record(&store, &table, concrete, record, &options))
        })
        .collect();
    let total = page.total;
    drop(page);
    drop(store);

    let mut headers = HeaderMap::new();
    if !params.no_count {
        headers.insert("X-Total-Count", HeaderValue::from(total));
    }
    let link = link_header(&state.instance_url, &table, &params, total)
        .filter(|_| !params.suppress_pagination_header)
        .and_then(|link| HeaderValue::from_str(&link).ok());
    if let Some(value) = link {
        headers.insert(header::LINK, value);
    }
    if let Some(status) = faults.cancel_status {
        return cancelled(status, headers, rows);
    }
    (headers, Json(json!({ "result": rows }))).into_response()
}

/// The transaction-quota cancellation: with 200 the page is cut and the error appended (the
/// transaction had started streaming); otherwise the error alone.
fn cancelled(status: u16, headers: HeaderMap, mut rows: Vec<Value>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error = error_body(TRANSACTION_CANCELLED, Some(TRANSACTION_CANCELLED_DETAIL));
    if status != StatusCode::OK {
        return sn_error(
            status,
            TRANSACTION_CANCELLED,
            Some(TRANSACTION_CANCELLED_DETAIL),
        );
    }
    rows.truncate(rows.len() / 2);
    let body = json!({ "result": rows, "error": error.error, "status": error.status });
    (status, headers, Json(body)).into_response()
}

/// `Link` header as ServiceNow sends it: first, prev, next, last, each keeping the request's
/// other parameters.
fn link_header(instance_url: &str, table: &str, params: &Params, total: usize) -> Option<String> {
    let limit = params.limit;
    if limit == 0 {
        return None;
    }
    let base = format!(
        "{}/api/now/table/{table}",
        instance_url.trim_end_matches('/')
    );
    let url_at = |offset: usize| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params
            .pairs
            .iter()
            .filter(|(k, _)| k != "sysparm_offset" && k != "sysparm_limit")
        {
            query.append_pair(k, v);
        }
        query.append_pair("sysparm_limit", &limit.to_string());
        query.append_pair("sysparm_offset", &offset.to_string());
        format!("<{base}?{}>", query.finish())
    };
    let offset = params.offset;
    let mut links = vec![format!("{};rel=\"first\"", url_at(0))];
    if offset > 0 {
        links.push(format!(
            "{};rel=\"prev\"",
            url_at(offset.saturating_sub(limit))
        ));
    }
    if offset.saturating_add(limit) < total {
        links.push(format!("{};rel=\"next\"", url_at(offset + limit)));
    }
    let last = total.saturating_sub(1) / limit * limit;
    links.push(format!("{};rel=\"last\"", url_at(last)));
    Some(links.join(","))
}

fn check_readable(
    state: &AppState,
    store: &Store,
    principal: &Principal,
    table: &str,
) -> Option<Response> {
    if !store.has_table(table) {
        return Some(invalid_table(table));
    }
    if state
        .auth
        .access(&principal.user_name)
        .is_some_and(|a| !a.can_read(table))
    {
        return Some(read_denied());
    }
    None
}

/// `GET /api/now/table/{table}/{sys_id}`.
pub async fn read(
    State(state): State<Arc<AppState>>,
    Path((table, sys_id)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = Params::parse(raw.as_deref(), state.default_limit);
    let store = state.read_store();
    if let Some(refusal) = check_readable(&state, &store, &principal, &table) {
        return refusal;
    }
    match store.get(&table, &sys_id) {
        Ok(Some((concrete, record))) => {
            let result = render_record(
                &store,
                &table,
                concrete,
                record,
                &params.render_options(&state),
            );
            Json(json!({ "result": result })).into_response()
        }
        Ok(None) => no_record(),
        Err(err) => store_error(&err),
    }
}

/// The request body as a JSON object, or why it is not one.
fn parse_object(body: &Bytes) -> Result<Map<String, Value>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("The payload must be a JSON object.".to_owned()),
        Err(err) => Err(format!("The payload is not valid JSON: {err}")),
    }
}

fn written(state: &AppState, table: &str, record: &crate::store::Record, params: &Params) -> Value {
    let store = state.read_store();
    let concrete = store.schema(table).map(|s| s.name).unwrap_or_default();
    Value::Object(render_record(
        &store,
        table,
        concrete,
        record,
        &params.render_options(state),
    ))
}

/// `POST /api/now/table/{table}`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Path(table): Path<String>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let params = Params::parse(raw.as_deref(), state.default_limit);
    let values = match parse_object(&body) {
        Ok(values) => values,
        Err(detail) => return bad_payload(&detail),
    };
    let inserted = state.write_store().insert(
        &table,
        &values,
        &Actor {
            user_name: principal.user_name.clone(),
        },
    );
    match inserted {
        Ok(record) => {
            let location = format!(
                "{}/api/now/table/{table}/{}",
                state.instance_url.trim_end_matches('/'),
                record.get("sys_id").map_or("", String::as_str)
            );
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&location) {
                headers.insert(header::LOCATION, value);
            }
            let result = written(&state, &table, &record, &params);
            (
                StatusCode::CREATED,
                headers,
                Json(json!({ "result": result })),
            )
                .into_response()
        }
        Err(err) => store_error(&err),
    }
}

/// `PUT`/`PATCH /api/now/table/{table}/{sys_id}`.
pub async fn update(
    State(state): State<Arc<AppState>>,
    Path((table, sys_id)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let params = Params::parse(raw.as_deref(), state.default_limit);
    let values = match parse_object(&body) {
        Ok(values) => values,
        Err(detail) => return bad_payload(&detail),
    };
    let updated = state.write_store().update(
        &table,
        &sys_id,
        &values,
        &Actor {
            user_name: principal.user_name.clone(),
        },
    );
    match updated {
        Ok(record) => {
            Json(json!({ "result": written(&state, &table, &record, &params) })).into_response()
        }
        Err(err) => store_error(&err),
    }
}

/// `DELETE /api/now/table/{table}/{sys_id}`.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path((table, sys_id)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
) -> Response {
    match state.write_store().delete(
        &table,
        &sys_id,
        &Actor {
            user_name: principal.user_name.clone(),
        },
    ) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => store_error(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_has_first_prev_next_last_and_keeps_the_query() {
        let params = Params::parse(
            Some("sysparm_query=active%3Dtrue&sysparm_limit=10&sysparm_offset=10"),
            10_000,
        );
        let link = link_header("https://x.example", "incident", &params, 35).unwrap();
        let rels: Vec<&str> = link.split(',').collect();
        assert_eq!(rels.len(), 4, "{link}");
        assert!(
            rels[0].ends_with("sysparm_offset=0>;rel=\"first\""),
            "{link}"
        );
        assert!(
            rels[1].ends_with("sysparm_offset=0>;rel=\"prev\""),
            "{link}"
        );
        assert!(
            rels[2].ends_with("sysparm_offset=20>;rel=\"next\""),
            "{link}"
        );
        assert!(
            rels[3].ends_with("sysparm_offset=30>;rel=\"last\""),
            "{link}"
        );
        assert!(rels[2].contains("sysparm_query=active%3Dtrue"), "{link}");
    }

    #[test]
    fn last_page_has_no_next_link() {
        let params = Params::parse(Some("sysparm_limit=10&sysparm_offset=30"), 10_000);
        let link = link_header("https://x.example", "incident", &params, 35).unwrap();
        assert!(!link.contains("rel=\"next\""), "{link}");
    }
}
