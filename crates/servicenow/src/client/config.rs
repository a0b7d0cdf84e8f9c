//! How to reach and authenticate against one ServiceNow instance, and how hard to push it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::retry::RetryEvent;

/// Rows per Table API page when nothing else is configured. Large pages mean fewer round
/// trips; ServiceNow's transaction quota is what pushes back (see [`ClientConfig::min_page_size`]).
pub const DEFAULT_PAGE_SIZE: usize = 1000;
/// Smallest page the automatic halving goes down to.
pub const DEFAULT_MIN_PAGE_SIZE: usize = 10;
/// Requests in flight per instance. ServiceNow serves REST from a small semaphore pool per
/// node; more parallelism mostly queues there and invites "transaction cancelled".
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// Whole-request timeout (connect, send, read the full body).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Retries of one request after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 8;
/// First backoff step; each further retry doubles it.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Ceiling of the exponential backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest server-requested wait (`Retry-After`, `X-RateLimit-Reset`) that is honoured as
/// is; ServiceNow's rate-limit windows are hourly, so a full hour is plausible.
pub const DEFAULT_MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);
/// Largest response body read, by default: a 1000-row page of `display_value=all` records with
/// long journals and descriptions stays well under it, and a runaway body cannot exhaust memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// Path of ServiceNow's OAuth token endpoint, relative to the instance.
pub const TOKEN_PATH: &str = "/oauth_token.do";
/// Path of ServiceNow's OAuth authorization endpoint, relative to the instance.
pub const AUTHORIZE_PATH: &str = "/oauth_auth.do";

/// Everything [`Client::new`](super::Client::new) needs. Build it with
/// [`ClientConfig::new`] and adjust fields; [`ClientConfig::validate`] runs when the client
/// is built.
#[derive(Clone)]
pub struct ClientConfig {
    /// Base URL of the instance, e.g. `https://acme.service-now.com`.
    pub instance_url: Url,
    /// How requests authenticate.
    pub auth: Auth,
    /// Rows per page of a keyset scan (`sysparm_limit`).
    pub page_size: usize,
    /// Floor of the automatic page-size halving on "maximum execution time exceeded".
    pub min_page_size: usize,
    /// Requests in flight at once against this instance, across all clones of the client.
    pub max_concurrency: usize,
    /// Largest response body read. The body is read in chunks and reading stops past it (no
    /// unbounded buffer); a scan then asks for half the page, down to a single row.
    pub max_response_bytes: u64,
    /// Whole-request timeout; a timed-out request is retried.
    pub request_timeout: Duration,
    /// Retries of one request after its first attempt (429, 5xx, timeouts, broken bodies).
    pub max_retries: u32,
    /// First step of the jittered exponential backoff.
    pub initial_backoff: Duration,
    /// Ceiling of the exponential backoff.
    pub max_backoff: Duration,
    /// Longest `Retry-After` / `X-RateLimit-Reset` wait honoured; longer ones are cut to this.
    pub max_rate_limit_wait: Duration,
    /// HTTP(S) proxy for every request. `None` means no proxy at all: proxy environment
    /// variables are deliberately ignored so that what the config says is what happens.
    pub proxy: Option<Url>,
    /// `User-Agent` header; ServiceNow admins see it in the transaction log.
    pub user_agent: String,
    /// PEM files whose certificates are trusted in addition to the built-in web roots
    /// (corporate TLS-inspecting proxies, private instances). Verification is never off.
    pub extra_ca_certificates: Vec<PathBuf>,
    /// Allow `http://` instance, token and proxy URLs (simulator, local tests). Off in
    /// production: basic auth over plain HTTP would expose the password.
    pub allow_http: bool,
    /// Called on every retry (metrics are recorded regardless).
    pub retry_observer: Option<RetryObserver>,
    /// Called when the token endpoint issues a refresh token other than the one in use, so it
    /// can be persisted: providers that rotate refresh tokens (RFC 9700, OAuth 2.1) revoke the
    /// old one, which a restarted process would otherwise still start from.
    pub refresh_token_observer: Option<RefreshTokenObserver>,
}

impl ClientConfig {
    /// A config with the defaults above.
    pub fn new(instance_url: Url, auth: Auth) -> Self {
        ClientConfig {
            instance_url,
            auth,
            page_size: DEFAULT_PAGE_SIZE,
            min_page_size: DEFAULT_MIN_PAGE_SIZE,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_rate_limit_wait: DEFAULT_MAX_RATE_LIMIT_WAIT,
            proxy: None,
            user_agent: format!("nowstream/{}", env!("CARGO_PKG_VERSION")),
            extra_ca_certificates: Vec::new(),
            allow_http: false,
            retry_observer: None,
            refresh_token_observer: None,
        }
    }

    /// Checks that span fields; run once before anything is sent.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_endpoint("instance_url", &self.instance_url)?;
        if self.instance_url.query().is_some() || self.instance_url.fragment().is_some() {
            return Err(invalid(
                "instance_url",
                "must not have a query or fragment (give the instance base URL only)",
            ));
        }
        if let Auth::OAuth {
            token_url: Some(url),
            ..
        } = &self.auth
        {
            self.check_endpoint("auth.token_url", url)?;
        }
        if let Some(proxy) = &self.proxy {
            if !matches!(proxy.scheme(), "http" | "https") {
                return Err(invalid(
                    "proxy",
                    format!(
                        "scheme {:?} is not supported (use http or https)",
                        proxy.scheme()
                    ),
                ));
            }
            if proxy.host_str().is_none() {
                return Err(invalid("proxy", "has no host"));
            }
        }
        match &self.auth {
            Auth::Basic { username, .. } if username.trim().is_empty() => {
                return Err(invalid("auth.username", "must not be empty"));
            }
            Auth::OAuth { client_id, .. } if client_id.trim().is_empty() => {
                return Err(invalid("auth.client_id", "must not be empty"));
            }
            Auth::OAuth {
                grant: OAuthGrant::Password { username, .. },
                ..
            } if username.trim().is_empty() => {
                return Err(invalid("auth.grant.username", "must not be empty"));
            }
            _ => {}
        }
        if self.min_page_size == 0 {
            return Err(invalid("min_page_size", "must be at least 1"));
        }
        if self.page_size < self.min_page_size {
            return Err(invalid(
                "page_size",
                format!(
                    "{} is below min_page_size {}",
                    self.page_size, self.min_page_size
                ),
            ));
        }
        if self.max_concurrency == 0 {
            return Err(invalid("max_concurrency", "must be at least 1"));
        }
        if self.max_response_bytes == 0 {
            return Err(invalid("max_response_bytes", "must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be above zero"));
        }
        if self.initial_backoff.is_zero() {
            return Err(invalid("initial_backoff", "must be above zero"));
        }
        if self.max_backoff < self.initial_backoff {
            return Err(invalid(
                "max_backoff",
                format!(
                    "{:?} is below initial_backoff {:?}",
                    self.max_backoff, self.initial_backoff
                ),
            ));
        }
        if self.user_agent.trim().is_empty() {
            return Err(invalid("user_agent", "must not be empty"));
        }
        Ok(())
    }

    /// `url` is safe to send credentials to under this config.
    pub(crate) fn check_endpoint(&self, field: &'static str, url: &Url) -> Result<(), ConfigError> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(invalid(
                    field,
                    format!(
                        "{url} uses plain http; credentials would travel unencrypted \
                         (set allow_http only for local test instances)"
                    ),
                ));
            }
            other => return Err(invalid(field, format!("scheme {other:?} is not http(s)"))),
        }
        if url.host_str().is_none() {
            return Err(invalid(field, "has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                field,
                "must not carry credentials in the URL (configure them under auth)",
            ));
        }
        Ok(())
    }

    /// The token endpoint: the configured one, else `<instance>/oauth_token.do`.
    pub(crate) fn token_url(&self, configured: Option<&Url>) -> Url {
        match configured {
            Some(url) => url.clone(),
            None => instance_endpoint(&self.instance_url, TOKEN_PATH),
        }
    }
}

/// `path` (starting with `/`) under the instance base URL, keeping any path prefix the base
/// has (an instance behind a gateway). The path is set, never joined, so no input can
/// change the scheme or host that credentials are sent to.
pub(crate) fn instance_endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}/{}", path.trim_start_matches('/')));
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// The proxy URL with any password replaced, for Debug output.
fn redacted_proxy(proxy: &Url) -> String {
    let mut shown = proxy.clone();
    if shown.password().is_some() && shown.set_password(Some("[REDACTED]")).is_err() {
        return "[proxy URL with credentials]".to_owned();
    }
    shown.to_string()
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("instance_url", &self.instance_url.as_str())
            .field("auth", &self.auth)
            .field("page_size", &self.page_size)
            .field("min_page_size", &self.min_page_size)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_rate_limit_wait", &self.max_rate_limit_wait)
            .field("proxy", &self.proxy.as_ref().map(redacted_proxy))
            .field("user_agent", &self.user_agent)
            .field("extra_ca_certificates", &self.extra_ca_certificates)
            .field("allow_http", &self.allow_http)
            .field("retry_observer", &self.retry_observer.is_some())
            .field(
                "refresh_token_observer",
                &self.refresh_token_observer.is_some(),
            )
            .finish()
    }
}

/// How Table API requests authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// HTTP basic auth on every request.
    Basic {
        username: String,
        password: SecretString,
    },
    /// OAuth 2 bearer tokens from the instance's `/oauth_token.do`.
    OAuth {
        client_id: String,
        client_secret: SecretString,
        /// How the first token is obtained; later ones come from the refresh token when the
        /// instance issued one, falling back to this grant.
        grant: OAuthGrant,
        /// Token endpoint; `None` means `<instance_url>/oauth_token.do`.
        token_url: Option<Url>,
        /// `scope` sent with token requests (e.g. `table_read`); `None` sends none and the
        /// instance applies its default (`useraccount`).
        scope: Option<String>,
    },
}

impl Auth {
    /// The OAuth application part of an OAuth config (what the authorization-code flow needs).
    pub fn oauth_app(&self) -> Option<OAuthApp> {
        match self {
            Auth::Basic { .. } => None,
            Auth::OAuth {
                client_id,
                client_secret,
                token_url,
                scope,
                ..
            } => Some(OAuthApp {
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                token_url: token_url.clone(),
                scope: scope.clone(),
            }),
        }
    }

    /// Every secret in this config, so error text can be scrubbed of them.
    pub(crate) fn secrets(&self) -> Vec<SecretString> {
        match self {
            Auth::Basic { password, .. } => vec![password.clone()],
            Auth::OAuth {
                client_secret,
                grant,
                ..
            } => {
                let mut secrets = vec![client_secret.clone()];
                match grant {
                    OAuthGrant::Password { password, .. } => secrets.push(password.clone()),
                    OAuthGrant::RefreshToken { refresh_token } => {
                        secrets.push(refresh_token.clone());
                    }
                    OAuthGrant::ClientCredentials => {}
                }
                secrets
            }
        }
    }
}

/// The OAuth grant a client starts from.
#[derive(Debug, Clone)]
pub enum OAuthGrant {
    /// Resource-owner password grant for the integration user.
    Password {
        username: String,
        password: SecretString,
    },
    /// `client_credentials` (the instance maps the client to an "OAuth application user").
    ClientCredentials,
    /// A refresh token obtained earlier, e.g. by `oauth login` (authorization-code flow).
    RefreshToken { refresh_token: SecretString },
}

impl OAuthGrant {
    /// The `grant_type` form value.
    pub fn grant_type(&self) -> &'static str {
        match self {
            OAuthGrant::Password { .. } => "password",
            OAuthGrant::ClientCredentials => "client_credentials",
            OAuthGrant::RefreshToken { .. } => "refresh_token",
        }
    }
}

/// An OAuth application registered on the instance ("Application Registry").
#[derive(Debug, Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: SecretString,
    /// Token endpoint; `None` means `<instance_url>/oauth_token.do`.
    pub token_url: Option<Url>,
    /// `scope` to request; `None` requests none.
    pub scope: Option<String>,
}

/// Called with every retry the client makes (after metrics are recorded), e.g. to count
/// them in a test or feed a custom dashboard.
#[derive(Clone)]
pub struct RetryObserver(Arc<dyn Fn(&RetryEvent) + Send + Sync>);

impl RetryObserver {
    /// Wraps a callback.
    pub fn new(callback: impl Fn(&RetryEvent) + Send + Sync + 'static) -> Self {
        RetryObserver(Arc::new(callback))
    }

    pub(crate) fn notify(&self, event: &RetryEvent) {
        (self.0)(event);
    }
}

impl fmt::Debug for RetryObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RetryObserver")
    }
}

/// Called with each refresh token the token endpoint issues that differs from the one in use
/// (the last one issued, else the configured [`OAuthGrant::RefreshToken`]), e.g. to write it
/// back to the file the client was configured from. ServiceNow returns the same refresh token
/// on every refresh grant, so against it this fires at most once (a password or
/// authorization-code grant's first token); a provider that rotates refresh tokens makes it
/// fire on every renewal.
///
/// The callback runs while the client's token state is locked, so calls arrive one at a time
/// and in the order the tokens were issued (the last call carries the token that is valid).
/// It should be quick; requests waiting for a token wait for it.
#[derive(Clone)]
pub struct RefreshTokenObserver(Arc<dyn Fn(&SecretString) + Send + Sync>);

impl RefreshTokenObserver {
    /// Wraps a callback.
    pub fn new(callback: impl Fn(&SecretString) + Send + Sync + 'static) -> Self {
        RefreshTokenObserver(Arc::new(callback))
    }

    pub(crate) fn notify(&self, refresh_token: &SecretString) {
        (self.0)(refresh_token);
    }
}

impl fmt::Debug for RefreshTokenObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshTokenObserver")
    }
}

/// A configuration value that cannot work. Names the field and what is wrong with it; never
/// carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ServiceNow client config `{field}`: {reason}")]
pub struct ConfigError {
    /// Field path, e.g. `auth.token_url`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

/// The proxy's password, if its URL carries one (scrubbed from error text like the others).
pub(crate) fn proxy_secret(proxy: Option<&Url>) -> Option<SecretString> {
    proxy
        .and_then(Url::password)
        .map(|p| SecretString::from(p.to_owned()))
        .filter(|p| !p.expose_secret().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic() -> Auth {
        Auth::Basic {
            username: "integration".to_owned(),
            password: SecretString::from("hunter2-password"),
        }
    }

    fn config(url: &str) -> ClientConfig {
        ClientConfig::new(Url::parse(url).unwrap(), basic())
    }

    #[test]
    fn defaults_are_valid_for_an_https_instance() {
        assert_eq!(config("https://acme.service-now.com").validate(), Ok(()));
    }

    #[test]
    fn plain_http_is_refused_unless_allowed() {
        let mut c = config("http://127.0.0.1:8080");
        let err = c.validate().unwrap_err();
        assert_eq!(err.field, "instance_url");
        assert!(err.to_string().contains("plain http"), "{err}");
        c.allow_http = true;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn credentials_in_the_instance_url_are_refused() {
        let err = config("https://user:pw@acme.service-now.com")
            .validate()
            .unwrap_err();
        assert_eq!(err.field, "instance_url");
        assert!(!err.to_string().contains("pw@"), "{err}");
    }

    #[test]
    fn a_page_size_below_the_floor_names_both_values() {
        let mut c = config("https://acme.service-now.com");
        c.page_size = 5;
        let err = c.validate().unwrap_err();
        assert_eq!(err.field, "page_size");
        assert!(
            err.to_string().contains("5 is below min_page_size 10"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_hides_passwords_and_proxy_credentials() {
        let mut c = config("https://acme.service-now.com");
        c.proxy = Some(Url::parse("http://proxyuser:proxy-secret-pw@proxy.local:3128").unwrap());
        c.auth = Auth::OAuth {
            client_id: "id".to_owned(),
            client_secret: SecretString::from("client-secret-value"),
            grant: OAuthGrant::Password {
                username: "u".to_owned(),
                password: SecretString::from("hunter2-password"),
            },
            token_url: None,
            scope: None,
        };
        let text = format!("{c:?}");
        for secret in ["proxy-secret-pw", "client-secret-value", "hunter2-password"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert!(text.contains("proxy.local"), "{text}");
    }

    #[test]
    fn the_token_url_defaults_to_the_instance_oauth_endpoint() {
        let c = config("https://acme.service-now.com");
        assert_eq!(
            c.token_url(None).as_str(),
            "https://acme.service-now.com/oauth_token.do"
        );
    }

    #[test]
    fn endpoints_keep_the_host_and_any_path_prefix() {
        let root = Url::parse("https://acme.service-now.com").unwrap();
        let prefixed = Url::parse("https://gw.example/servicenow/").unwrap();
        assert_eq!(
            instance_endpoint(&root, "/api/now/table/incident").as_str(),
            "https://acme.service-now.com/api/now/table/incident"
        );
        assert_eq!(
            instance_endpoint(&prefixed, "/oauth_token.do").as_str(),
            "https://gw.example/servicenow/oauth_token.do"
        );
        for hostile in ["//evil.example/x", "/https://evil.example/x", "/x?y=1#z"] {
            let url = instance_endpoint(&root, hostile);
            assert_eq!(url.host_str(), Some("acme.service-now.com"), "{hostile}");
            assert_eq!(url.query(), None, "{hostile}");
        }
    }
}
