//! The Table API client: authentication, retries, rate limits, and keyset scans.
//!
//! One [`Client`] talks to one instance. Clones share the connection pool, the OAuth token
//! cache and the concurrency limit ([`ClientConfig::max_concurrency`]), so every table the
//! fetcher reads from an instance counts against the same limit.
//!
//! Every Table API read asks for `sysparm_display_value=all`, so each field arrives as
//! `{"value", "display_value", "link"}`: the raw topic keeps both the stored value and what a
//! user sees, and the reference links stay (`sysparm_exclude_reference_link` is never sent).
//! Records are kept as the JSON text they were returned as ([`Row`]), read on demand.
//!
//! Failure handling, in short: 429, 5xx, timeouts, dropped connections, malformed and
//! truncated bodies are retried ([`retry`]); 401 with OAuth renews the token once and retries
//! once; other 4xx are reported at once with what ServiceNow said; "maximum execution time
//! exceeded" during a scan halves the page size ([`scan`]).

mod config;
mod error;
mod oauth;
mod redact;
mod response;
pub mod retry;
pub mod scan;
mod transport;

use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::de::IgnoredAny;
use serde_json::{Map, Value};
use url::Url;

use crate::row::Row;

pub use config::{
    AUTHORIZE_PATH, Auth, ClientConfig, ConfigError, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_RATE_LIMIT_WAIT, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES, DEFAULT_MIN_PAGE_SIZE, DEFAULT_PAGE_SIZE, DEFAULT_REQUEST_TIMEOUT,
    OAuthApp, OAuthGrant, RefreshTokenObserver, RetryObserver, TOKEN_PATH,
};
pub use error::{ClientError, RequestContext};
pub use oauth::{AuthorizationCodeFlow, TokenSet, authorize_url};
pub use retry::{RetryEvent, RetryReason, WaitSource, describe_metrics};
pub use scan::{
    Cursor, CursorError, KeysetScan, OversizedRecord, ScanPage, ScanRequest, ScanStart,
};

use crate::table::ErrorBody;
use config::instance_endpoint;
use oauth::{Bearer, TokenEndpoint, TokenManager};
use response::{describe, error_object, error_text, has_next_link, is_transaction_cancelled};
use retry::{Retrier, RetryReason as Reason, Transient, rate_limit_hint};
use transport::{Exchange, Failure, Transport};

/// Base path of the Table API.
pub const TABLE_API_PATH: &str = "/api/now/table";

/// A ServiceNow Table API client for one instance. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    instance_url: Url,
    transport: Transport,
    auth: Authenticator,
    page_size: usize,
    min_page_size: usize,
}

#[derive(Debug)]
enum Authenticator {
    Basic {
        username: String,
        password: SecretString,
    },
    OAuth(Box<TokenManager>),
}

/// What one attempt authenticated with.
enum Credential {
    Basic,
    Bearer(Bearer),
}

/// What to do with "maximum execution time exceeded".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnCancel {
    /// Hand it back: the caller can shrink the request.
    Return,
    /// Treat it as a transient failure of this exact request.
    Retry,
}

/// A successful read.
pub(crate) enum Reply {
    /// A body checked to be JSON and not an error object. It stays text: a list page is
    /// read into [`Row`]s, anything else into a `Value` ([`json_body`]).
    Json { headers: HeaderMap, body: Vec<u8> },
    /// The transaction was cancelled for running too long (message kept for reporting).
    Cancelled(String),
}

/// One `GET /api/now/table/{table}` list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    pub table: String,
    /// Encoded query (`sysparm_query`); empty for all rows.
    pub query: String,
    /// `sysparm_limit`.
    pub limit: usize,
    /// `sysparm_offset`.
    pub offset: usize,
    /// `sysparm_fields`; `None` returns every field.
    pub fields: Option<Vec<String>>,
}

/// One page of a list request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TablePage {
    /// The records as returned (row ACLs may have removed some: a page can be short or
    /// empty while rows remain).
    pub records: Vec<Row>,
    /// `X-Total-Count`: rows matching the query before row ACLs.
    pub total: Option<u64>,
    /// Whether the `Link` header had `rel="next"`; `None` without a `Link` header.
    pub has_next: Option<bool>,
}

impl TablePage {
    /// Whether rows remain after this page *by count*, never by how many records came back:
    /// `X-Total-Count` when present, else the `Link` header's `next`; `None` when the
    /// instance sent neither.
    pub fn rows_remain_after(&self, offset: usize, limit: usize) -> Option<bool> {
        match self.total {
            Some(total) => {
                let seen = u64::try_from(offset.saturating_add(limit)).unwrap_or(u64::MAX);
                Some(seen < total)
            }
            None => self.has_next,
        }
    }
}

impl Client {
    /// Validates `config` and sets up the HTTP client. Sends nothing yet.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let transport = Transport::new(&config, Vec::new())?;
        let auth = match &config.auth {
            Auth::Basic { username, password } => Authenticator::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            Auth::OAuth {
                client_id,
                client_secret,
                grant,
                token_url,
                scope,
            } => Authenticator::OAuth(Box::new(TokenManager::new(
                TokenEndpoint {
                    url: config.token_url(token_url.as_ref()),
                    client_id: client_id.clone(),
                    client_secret: client_secret.clone(),
                    scope: scope.clone(),
                },
                grant.clone(),
                config.refresh_token_observer.clone(),
            ))),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                instance_url: config.instance_url,
                transport,
                auth,
                page_size: config.page_size,
                min_page_size: config.min_page_size,
            }),
        })
    }

    /// The instance this client talks to.
    pub fn instance_url(&self) -> &Url {
        &self.inner.instance_url
    }

    /// The configured page size of scans.
    pub fn page_size(&self) -> usize {
        self.inner.page_size
    }

    /// A keyset scan over a table; nothing is sent until [`KeysetScan::next_page`].
    pub fn scan(&self, request: ScanRequest) -> KeysetScan {
        KeysetScan::new(self.clone(), request, self.inner.min_page_size)
    }

    /// One list page. A cancelled transaction is retried as is (scans halve the page
    /// instead; use [`Client::scan`] for paging).
    pub async fn list_page(&self, request: &ListRequest) -> Result<TablePage, ClientError> {
        match self.fetch_list(request, OnCancel::Retry).await? {
            ListReply::Page(page) => Ok(page),
            // `OnCancel::Retry` turns cancellations into retries, so none comes back.
            ListReply::Cancelled(message) => Err(ClientError::BadResponse {
                request: self.list_context(request)?,
                reason: message,
            }),
        }
    }

    /// One record by sys_id, or `None` when ServiceNow answers 404 (absent, or hidden by
    /// an ACL — ServiceNow does not say which).
    pub async fn get_record(
        &self,
        table: &str,
        sys_id: &str,
    ) -> Result<Option<Map<String, Value>>, ClientError> {
        check_name("table", table, false)?;
        check_name("sys_id", sys_id, false)?;
        let url = instance_endpoint(
            &self.inner.instance_url,
            &format!("{TABLE_API_PATH}/{table}/{sys_id}"),
        );
        let context = RequestContext::table(url.as_str(), table, &format!("sys_id={sys_id}"));
        let params = [("sysparm_display_value", "all".to_owned())];
        let reply = match self.get(&url, &params, &context, OnCancel::Retry).await {
            Ok(reply) => reply,
            Err(ClientError::Rejected { status: 404, .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let body = json_body(reply, &context)?.1;
        match body {
            Value::Object(mut envelope) => match envelope.remove("result") {
                Some(Value::Object(record)) => Ok(Some(record)),
                _ => Err(bad_response(&context, "no `result` object in the response")),
            },
            _ => Err(bad_response(&context, "the response is not a JSON object")),
        }
    }

    /// Rows matching `query` in `table`, by `X-Total-Count` of a one-row request (counted
    /// before row ACLs, as all ServiceNow counts are).
    pub async fn count(&self, table: &str, query: &str) -> Result<u64, ClientError> {
        let request = ListRequest {
            table: table.to_owned(),
            query: query.to_owned(),
            limit: 1,
            offset: 0,
            fields: Some(vec![nowstream_model::table_api::query::SYS_ID.to_owned()]),
        };
        let context = self.list_context(&request)?;
        let page = self.list_page(&request).await?;
        page.total
            .ok_or_else(|| bad_response(&context, "no X-Total-Count header in the response"))
    }

    /// `GET <instance><path>?<query>` through authentication and retries, for endpoints
    /// this client has no dedicated method for (preflight checks, stats). `path` starts
    /// with `/`; parameters go in `query`, not in `path`.
    pub async fn get_json(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, ClientError> {
        if !path.starts_with('/') {
            return Err(ClientError::InvalidArgument {
                what: "path",
                reason: format!("{path:?} must start with '/'"),
            });
        }
        let url = instance_endpoint(&self.inner.instance_url, path);
        let context = RequestContext::other("GET", url.as_str());
        let params: Vec<(&str, String)> =
            query.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let reply = self.get(&url, &params, &context, OnCancel::Retry).await?;
        Ok(json_body(reply, &context)?.1)
    }

    /// A list request; cancellations handled per `on_cancel`.
    pub(crate) async fn fetch_list(
        &self,
        request: &ListRequest,
        on_cancel: OnCancel,
    ) -> Result<ListReply, ClientError> {
        let context = self.list_context(request)?;
        if let Some(fields) = &request.fields {
            for field in fields {
                check_name("field", field, true)?;
            }
        }
        let url = self.table_url(&request.table);
        let mut params = vec![
            ("sysparm_query", request.query.clone()),
            ("sysparm_display_value", "all".to_owned()),
            ("sysparm_limit", request.limit.to_string()),
        ];
        if request.offset > 0 {
            params.push(("sysparm_offset", request.offset.to_string()));
        }
        if let Some(fields) = &request.fields {
            params.push(("sysparm_fields", fields.join(",")));
        }
        let (headers, body) = match self.get(&url, &params, &context, on_cancel).await? {
            Reply::Cancelled(message) => return Ok(ListReply::Cancelled(message)),
            Reply::Json { headers, body } => (headers, body),
        };
        // The rows are ranges of the body, which moves into them.
        let records = Row::page(body).map_err(|e| bad_response(&context, &e.to_string()))?;
        Ok(ListReply::Page(TablePage {
            records,
            total: response::total_count(&headers),
            has_next: has_next_link(&headers),
        }))
    }

    pub(crate) fn retry_policy(&self) -> &retry::RetryPolicy {
        &self.inner.transport.retry
    }

    pub(crate) fn list_context(
        &self,
        request: &ListRequest,
    ) -> Result<RequestContext, ClientError> {
        check_name("table", &request.table, false)?;
        Ok(RequestContext::table(
            self.table_url(&request.table).as_str(),
            &request.table,
            &request.query,
        ))
    }

    fn table_url(&self, table: &str) -> Url {
        instance_endpoint(
            &self.inner.instance_url,
            &format!("{TABLE_API_PATH}/{table}"),
        )
    }

    /// A GET with retries: the unit every read goes through.
    async fn get(
        &self,
        url: &Url,
        params: &[(&str, String)],
        context: &RequestContext,
        on_cancel: OnCancel,
    ) -> Result<Reply, ClientError> {
        let mut retrier = Retrier::new(&self.inner.transport.retry, context);
        // Once per logical request, across its retries: a token the instance refuses right
        // after issuing it means the credentials are wrong, not stale.
        let mut renewed_token = false;
        loop {
            match self.attempt(url, params, context, &mut renewed_token).await {
                Ok(Reply::Cancelled(message)) if on_cancel == OnCancel::Retry => {
                    retrier
                        .pause(Transient::new(Reason::TransactionCancelled, message))
                        .await?;
                }
                Ok(reply) => return Ok(reply),
                Err(Failure::Fatal(err)) => return Err(err),
                Err(Failure::Transient(transient)) => retrier.pause(transient).await?,
            }
        }
    }

    /// One attempt, plus at most one resend with a renewed OAuth token after a 401.
    async fn attempt(
        &self,
        url: &Url,
        params: &[(&str, String)],
        context: &RequestContext,
        renewed_token: &mut bool,
    ) -> Result<Reply, Failure> {
        let transport = &self.inner.transport;
        loop {
            let credential = match &self.inner.auth {
                Authenticator::Basic { .. } => Credential::Basic,
                Authenticator::OAuth(tokens) => Credential::Bearer(tokens.bearer(transport).await?),
            };
            let mut builder = transport
                .http
                .get(url.clone())
                .query(params)
                .header(ACCEPT, "application/json");
            builder = match (&credential, &self.inner.auth) {
                (Credential::Bearer(bearer), _) => {
                    builder.bearer_auth(bearer.token.expose_secret())
                }
                (Credential::Basic, Authenticator::Basic { username, password }) => {
                    builder.basic_auth(username, Some(password.expose_secret()))
                }
                (Credential::Basic, Authenticator::OAuth(_)) => builder,
            };
            let exchange = transport.exchange(builder).await?;
            if exchange.status == StatusCode::UNAUTHORIZED {
                if let (Credential::Bearer(bearer), Authenticator::OAuth(tokens)) =
                    (&credential, &self.inner.auth)
                {
                    if !*renewed_token {
                        *renewed_token = true;
                        tracing::info!(request = %context, "access token refused; renewing it once");
                        tokens.invalidate(bearer.generation).await;
                        continue;
                    }
                }
                return Err(ClientError::Unauthorized {
                    request: context.clone(),
                    message: transport.redactor.clean(&error_text(&exchange.body)),
                }
                .into());
            }
            return self.classify(exchange, context);
        }
    }

    fn classify(&self, exchange: Exchange, context: &RequestContext) -> Result<Reply, Failure> {
        let redactor = &self.inner.transport.redactor;
        let Exchange {
            status,
            headers,
            body,
            over_limit,
        } = exchange;
        if status.is_success() && over_limit {
            return Err(ClientError::ResponseTooLarge {
                request: context.clone(),
                limit: self.inner.transport.max_response_bytes,
            }
            .into());
        }
        if status.is_success() {
            // Checked as JSON without building it: a list page is read into rows afterwards,
            // and a tree of it here would double the page's memory for nothing.
            serde_json::from_slice::<IgnoredAny>(&body).map_err(|e| {
                let content_type = headers
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none");
                // Only the parse position is kept: the body is record data.
                Transient::new(
                    Reason::MalformedJson,
                    format!(
                        "HTTP {status} body ({} bytes, content-type {content_type}) is not valid \
                         JSON: {} at line {}, column {}",
                        body.len(),
                        json_error_kind(&e),
                        e.line(),
                        e.column()
                    ),
                )
            })?;
            if let Some(error) = error_in_body(&body) {
                let message = redactor.clean(&describe(&error));
                if is_transaction_cancelled(&error) {
                    return Ok(Reply::Cancelled(message));
                }
                return Err(ClientError::Rejected {
                    request: context.clone(),
                    status: status.as_u16(),
                    message,
                }
                .into());
            }
            return Ok(Reply::Json { headers, body });
        }
        let message = redactor.clean(&error_text(&body));
        match status.as_u16() {
            403 => Err(ClientError::Forbidden {
                request: context.clone(),
                message,
            }
            .into()),
            429 => {
                let mut transient =
                    Transient::new(Reason::RateLimited, format!("HTTP 429: {message}"));
                transient.hint = rate_limit_hint(&headers, std::time::SystemTime::now());
                Err(transient.into())
            }
            408 => Err(Transient::new(Reason::Timeout, format!("HTTP 408: {message}")).into()),
            500..=599 => {
                let cancelled = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .as_ref()
                    .and_then(error_object)
                    .is_some_and(|e| is_transaction_cancelled(&e));
                if cancelled {
                    return Ok(Reply::Cancelled(message));
                }
                Err(Transient::new(Reason::ServerError, format!("HTTP {status}: {message}")).into())
            }
            _ => Err(ClientError::Rejected {
                request: context.clone(),
                status: status.as_u16(),
                message,
            }
            .into()),
        }
    }
}

/// A list request's outcome.
pub(crate) enum ListReply {
    Page(TablePage),
    Cancelled(String),
}

fn json_body(reply: Reply, context: &RequestContext) -> Result<(HeaderMap, Value), ClientError> {
    match reply {
        Reply::Json { headers, body } => {
            // `classify` checked the body as JSON; a number beyond f64 is what can still fail.
            let value = serde_json::from_slice(&body).map_err(|e| {
                bad_response(
                    context,
                    &format!(
                        "the body cannot be read: {} at line {}, column {}",
                        json_error_kind(&e),
                        e.line(),
                        e.column()
                    ),
                )
            })?;
            Ok((headers, value))
        }
        Reply::Cancelled(message) => Err(bad_response(context, &message)),
    }
}

/// The `error` object of a JSON body that is an object, read without building the rest.
fn error_in_body(body: &[u8]) -> Option<ErrorBody> {
    #[derive(serde::Deserialize)]
    struct Probe {
        error: Option<Value>,
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    let mut envelope = Map::new();
    envelope.insert("error".to_owned(), probe.error?);
    error_object(&Value::Object(envelope))
}

fn bad_response(context: &RequestContext, reason: &str) -> ClientError {
    ClientError::BadResponse {
        request: context.clone(),
        reason: reason.to_owned(),
    }
}

/// What kind of JSON problem, without quoting the input.
fn json_error_kind(err: &serde_json::Error) -> &'static str {
    match err.classify() {
        serde_json::error::Category::Eof => "it ends early",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "read error",
    }
}

/// Table names, sys_ids and field names go into URL paths and parameters: only
/// ServiceNow's identifier characters are allowed (fields may dot-walk).
fn check_name(what: &'static str, name: &str, dots: bool) -> Result<(), ClientError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dots && c == '.'));
    if valid {
        Ok(())
    } else {
        Err(ClientError::InvalidArgument {
            what,
            reason: format!(
                "{name:?} is not a ServiceNow {what} name (letters, digits, underscores{})",
                if dots { ", dots" } else { "" }
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_remain_by_count_not_by_page_length() {
        let page = TablePage {
            records: Vec::new(),
            total: Some(250),
            has_next: Some(false),
        };
        assert_eq!(page.rows_remain_after(0, 100), Some(true));
        assert_eq!(page.rows_remain_after(100, 100), Some(true));
        assert_eq!(page.rows_remain_after(200, 100), Some(false));
        assert_eq!(page.rows_remain_after(150, 100), Some(false));
    }

    #[test]
    fn without_a_count_the_next_link_decides() {
        let mut page = TablePage {
            records: Vec::new(),
            total: None,
            has_next: Some(true),
        };
        assert_eq!(page.rows_remain_after(0, 100), Some(true));
        page.has_next = None;
        assert_eq!(page.rows_remain_after(0, 100), None);
    }

    #[test]
    fn names_that_could_escape_the_path_are_refused() {
        assert!(check_name("table", "incident", false).is_ok());
        assert!(check_name("table", "x_acme_app_ticket", false).is_ok());
        assert!(check_name("field", "assigned_to.department", true).is_ok());
        for bad in ["", "incident/../sys_user", "incident?x=1", "a b", "a.b"] {
            let err = check_name("table", bad, false).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
