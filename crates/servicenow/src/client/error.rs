//! What can go wrong talking to ServiceNow. Every error names the request (URL, table,
//! query) and what the server said; none ever carries a password, client secret or token:
//! credentials travel only in headers and form bodies, which errors never quote, and the
//! server's own text is scrubbed of known secrets before it is kept (see `redact`).

use std::fmt;

use super::config::ConfigError;
use super::retry::RetryReason;

/// The request an error is about: enough to find it in ServiceNow's transaction log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// Method and URL without the query string, e.g. `GET https://acme.service-now.com/api/now/table/incident`.
    pub target: String,
    /// The table, for Table API requests.
    pub table: Option<String>,
    /// The encoded query (`sysparm_query`), when there was one.
    pub query: Option<String>,
}

impl RequestContext {
    /// A Table API read.
    pub(crate) fn table(url: &str, table: &str, query: &str) -> Self {
        RequestContext {
            target: format!("GET {url}"),
            table: Some(table.to_owned()),
            query: (!query.is_empty()).then(|| query.to_owned()),
        }
    }

    /// Any other request.
    pub(crate) fn other(method: &str, url: &str) -> Self {
        RequestContext {
            target: format!("{method} {url}"),
            table: None,
            query: None,
        }
    }
}

impl fmt::Display for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target)?;
        match (&self.table, &self.query) {
            (Some(table), Some(query)) => write!(f, " (table {table}, query `{query}`)"),
            (Some(table), None) => write!(f, " (table {table})"),
            (None, Some(query)) => write!(f, " (query `{query}`)"),
            (None, None) => Ok(()),
        }
    }
}

/// A failed ServiceNow operation.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The HTTP client (TLS, proxy) could not be set up.
    #[error("cannot build the HTTP client for ServiceNow: {reason}")]
    Build { reason: String },

    /// A caller passed something that cannot be sent (bad table name, absolute path).
    #[error("invalid {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },

    /// 401: the credentials (or a freshly refreshed token) were rejected. Not retried.
    #[error(
        "{request}: authentication failed (HTTP 401): {message}; check the integration \
         user's credentials or the OAuth client"
    )]
    Unauthorized {
        request: RequestContext,
        message: String,
    },

    /// 403: authenticated, but ACLs or roles refuse the read. Not retried.
    #[error(
        "{request}: access denied (HTTP 403): {message}; the integration user lacks a role \
         or a table/field ACL"
    )]
    Forbidden {
        request: RequestContext,
        message: String,
    },

    /// Any other refusal that retrying cannot fix (400 "Invalid table", 404, ...), or an
    /// error object inside a 200 body.
    #[error("{request}: HTTP {status}: {message}")]
    Rejected {
        request: RequestContext,
        status: u16,
        message: String,
    },

    /// Transient failures kept happening until the retry budget was spent.
    #[error("{request}: gave up after {attempts} attempts; last failure ({reason}): {last}")]
    RetriesExhausted {
        request: RequestContext,
        attempts: u32,
        reason: RetryReason,
        last: String,
    },

    /// The response arrived but does not have the shape the Table API promises.
    #[error("{request}: unexpected response: {reason}")]
    BadResponse {
        request: RequestContext,
        reason: String,
    },

    /// The OAuth token endpoint refused a grant (wrong client secret, user password,
    /// expired refresh token or code). Not retried.
    #[error("{request}: OAuth {grant} grant refused (HTTP {status}): {message}")]
    TokenRejected {
        request: RequestContext,
        grant: &'static str,
        status: u16,
        message: String,
    },

    /// A successful response's body was larger than `max_response_bytes`; reading stopped
    /// there. Retrying the same request cannot help: ask for fewer rows.
    #[error(
        "{request}: the response body is larger than max_response_bytes ({limit} bytes); \
         reading stopped there"
    )]
    ResponseTooLarge { request: RequestContext, limit: u64 },

    /// The client's request limiter was closed; nothing more can be sent.
    #[error("the ServiceNow client is shut down")]
    Closed,
}

impl ClientError {
    /// Credentials or permissions are wrong: an operator must act, retrying will not help.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ClientError::Unauthorized { .. }
                | ClientError::Forbidden { .. }
                | ClientError::TokenRejected { .. }
        )
    }

    /// The failure may go away by itself (the server was overloaded, rate limited or
    /// unreachable); trying the whole operation again later is reasonable.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::RetriesExhausted { .. })
    }

    /// The HTTP status the server answered with, when the error is about one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Unauthorized { .. } => Some(401),
            ClientError::Forbidden { .. } => Some(403),
            ClientError::Rejected { status, .. } | ClientError::TokenRejected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The request the error is about, if it is about one.
    pub fn request(&self) -> Option<&RequestContext> {
        match self {
            ClientError::Unauthorized { request, .. }
            | ClientError::Forbidden { request, .. }
            | ClientError::Rejected { request, .. }
            | ClientError::RetriesExhausted { request, .. }
            | ClientError::BadResponse { request, .. }
            | ClientError::ResponseTooLarge { request, .. }
            | ClientError::TokenRejected { request, .. } => Some(request),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_errors_name_the_url_table_and_query() {
        let err = ClientError::Rejected {
            request: RequestContext::table(
                "https://acme.service-now.com/api/now/table/incidnt",
                "incidnt",
                "active=true",
            ),
            status: 400,
            message: "Invalid table incidnt".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "GET https://acme.service-now.com/api/now/table/incidnt (table incidnt, query \
             `active=true`): HTTP 400: Invalid table incidnt"
        );
        assert_eq!(err.status(), Some(400));
        assert!(!err.is_auth());
    }

    #[test]
    fn auth_errors_are_classified_as_such() {
        let err = ClientError::Unauthorized {
            request: RequestContext::other("GET", "https://x/api/now/table/incident"),
            message: "User Not Authenticated".to_owned(),
        };
        assert!(err.is_auth());
        assert!(!err.is_transient());
        assert!(err.to_string().contains("HTTP 401"), "{err}");
    }
}
