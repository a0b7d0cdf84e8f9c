//! `nowstream-fetcher oauth login --integration ID`: the one interactive step of the OAuth
//! authorization-code grant.
//!
//! ServiceNow only hands out an authorization code to a browser in which a person approved the
//! client, so the fetcher cannot log in by itself the first time. This module prints the
//! instance's `/oauth_auth.do` URL, listens on the redirect URI for the browser to come back
//! with `code` and `state`, trades the code for tokens and keeps the refresh token in the
//! integration's `refresh_token_file`. From then on the fetcher starts from that refresh token
//! (see [`crate::token_file`]), writes back any refresh token the token endpoint rotates to, and
//! nobody needs to be at a browser again.
//!
//! The refresh token is a long-lived credential: it never reaches the terminal, logs or error
//! messages, and the file is created with mode 0600 and swapped in by rename, so it never
//! exists with wider permissions or half written ([`store_refresh_token`]).

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use rand::Rng;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use url::Url;

use nowstream_runtime::{AuthConfig, Config, IntegrationConfig, OAuthGrant};
use nowstream_servicenow::client::{AuthorizationCodeFlow, ClientError};

use crate::instance;
use crate::token_file::store_refresh_token;

/// Where the browser is sent back to unless the caller says otherwise. It must be registered
/// as the redirect URL of the OAuth entry in ServiceNow's Application Registry.
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:8765/oauth/callback";

/// How long to wait for the browser by default: long enough to find the password for the
/// instance, short enough that a forgotten terminal does not keep the port bound for ever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the callback listener may take to finish serving the browser's last response.
const SERVER_DRAIN: Duration = Duration::from_secs(2);

/// Length of the `state` value; 32 alphanumerics are ~190 bits, far beyond guessing.
const STATE_LEN: usize = 32;

/// Settings of one login that do not come from the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOptions {
    /// The redirect URI sent to ServiceNow and listened on (plain `http`; port 0 picks a free
    /// port, for tests). It must match the Application Registry entry exactly.
    pub redirect_uri: String,
    /// How long to wait for the browser to come back.
    pub timeout: Duration,
}

impl Default for LoginOptions {
    fn default() -> Self {
        Self {
            redirect_uri: DEFAULT_REDIRECT_URI.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Why `oauth login` did not store a refresh token. No variant carries a code or token.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "no integration with id {integration_id:?} in the configuration (configured: {})",
        known.join(", ")
    )]
    IntegrationNotFound {
        integration_id: String,
        known: Vec<String>,
    },
    #[error(
        "integration {integration_id} uses basic authentication; `oauth login` needs \
         auth.type = \"oauth\" with grant = \"authorization_code\""
    )]
    NotOAuth { integration_id: String },
    #[error(
        "integration {integration_id} uses the {grant} grant, which does not read a refresh \
         token file; set grant = \"authorization_code\" to use `oauth login`"
    )]
    WrongGrant {
        integration_id: String,
        grant: &'static str,
    },
    #[error(
        "integration {integration_id} has no auth.refresh_token_file: set it to where the \
         refresh token should be kept"
    )]
    NoRefreshTokenFile { integration_id: String },
    #[error("integration {integration_id}: {reason}")]
    Config {
        integration_id: String,
        reason: String,
    },
    #[error("redirect URI {uri:?} cannot be listened on: {reason}")]
    RedirectUri { uri: String, reason: String },
    #[error("cannot listen on {addr} for the OAuth redirect: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot print the authorization URL: {0}")]
    Prompt(#[source] std::io::Error),
    #[error(
        "the redirect to {redirect_uri} carried a state that does not belong to this login \
         (an old browser tab, another login, or a forged request); run `oauth login` again"
    )]
    StateMismatch { redirect_uri: String },
    #[error("ServiceNow refused the authorization: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        error: String,
        description: Option<String>,
    },
    #[error("the redirect to {redirect_uri} carried neither `code` nor `error`")]
    MissingCode { redirect_uri: String },
    #[error(
        "no browser came back to {redirect_uri} within {} s; open the printed URL and approve \
         the request, or check that this redirect URI is registered for the OAuth client",
        waited.as_secs()
    )]
    Timeout {
        redirect_uri: String,
        waited: Duration,
    },
    #[error("the callback listener on {redirect_uri} stopped before the browser came back")]
    ListenerStopped { redirect_uri: String },
    #[error("integration {integration_id}: exchanging the authorization code failed: {source}")]
    Exchange {
        integration_id: String,
        /// Boxed: a `ClientError` is large and this is the rare path.
        #[source]
        source: Box<ClientError>,
    },
    #[error(
        "integration {integration_id}: ServiceNow issued no refresh token; check the refresh \
         token lifespan of the OAuth entry in the Application Registry"
    )]
    NoRefreshToken { integration_id: String },
    #[error("cannot store the refresh token in {}: {source}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the whole login for `integration_id`: prints the authorization URL to `prompt`, waits
/// for the browser, and stores the refresh token. Returns the token file's path.
pub async fn login<W: Write>(
    config: &Config,
    integration_id: &str,
    options: LoginOptions,
    mut prompt: W,
) -> Result<PathBuf, LoginError> {
    let integration = config
        .integrations
        .iter()
        .find(|i| i.id == integration_id)
        .ok_or_else(|| LoginError::IntegrationNotFound {
            integration_id: integration_id.to_owned(),
            known: config.integrations.iter().map(|i| i.id.clone()).collect(),
        })?;
    let token_file = token_file(integration)?;
    let flow = code_flow(integration, config)?;

    let listener = CallbackListener::bind(&options.redirect_uri).await?;
    let redirect_uri = listener.redirect_uri.to_string();
    let state = random_state();
    let authorize_url = flow.authorize_url(&redirect_uri, &state);
    writeln!(
        prompt,
        "Open this URL in a browser and approve access for integration {integration_id}:\n\n  \
         {authorize_url}\n\nWaiting up to {} s for the redirect to {redirect_uri} ...",
        options.timeout.as_secs()
    )
    .and_then(|()| prompt.flush())
    .map_err(LoginError::Prompt)?;

    let callback = listener.wait(state, options.timeout).await?;
    let code = match callback {
        Callback::Code(code) => code,
        Callback::StateMismatch => return Err(LoginError::StateMismatch { redirect_uri }),
        Callback::Denied { error, description } => {
            return Err(LoginError::Denied { error, description });
        }
        Callback::MissingCode => return Err(LoginError::MissingCode { redirect_uri }),
    };
    let tokens = flow
        .exchange_code(code.expose_secret(), &redirect_uri)
        .await
        .map_err(|source| LoginError::Exchange {
            integration_id: integration_id.to_owned(),
            source: Box::new(source),
        })?;
    let refresh_token = tokens
        .refresh_token
        .ok_or_else(|| LoginError::NoRefreshToken {
            integration_id: integration_id.to_owned(),
        })?;
    store_refresh_token(&token_file, &refresh_token).map_err(|source| LoginError::Store {
        path: token_file.clone(),
        source,
    })?;
    tracing::info!(
        integration_id,
        path = %token_file.display(),
        "stored the OAuth refresh token"
    );
    writeln!(
        prompt,
        "Stored the refresh token for integration {integration_id} in {} (mode 0600).",
        token_file.display()
    )
    .map_err(LoginError::Prompt)?;
    Ok(token_file)
}

/// The integration's settings with a grant that reads no file, for the steps that need the
/// instance URL, proxy and OAuth client but not the stored refresh token: the login that
/// creates that file in the first place, and the preflight checks of URL and network, which
/// must work (and report a missing token file as an authentication problem) when it is absent.
pub(crate) fn without_stored_token(integration: &IntegrationConfig) -> IntegrationConfig {
    let mut settings = integration.clone();
    if let AuthConfig::Oauth(oauth) = &mut settings.auth {
        if matches!(
            oauth.grant,
            OAuthGrant::RefreshToken | OAuthGrant::AuthorizationCode
        ) {
            oauth.grant = OAuthGrant::ClientCredentials;
        }
    }
    settings
}

fn token_file(integration: &IntegrationConfig) -> Result<PathBuf, LoginError> {
    let integration_id = integration.id.clone();
    let AuthConfig::Oauth(oauth) = &integration.auth else {
        return Err(LoginError::NotOAuth { integration_id });
    };
    let grant = match oauth.grant {
        OAuthGrant::AuthorizationCode | OAuthGrant::RefreshToken => None,
        OAuthGrant::Password => Some("password"),
        OAuthGrant::ClientCredentials => Some("client_credentials"),
    };
    if let Some(grant) = grant {
        return Err(LoginError::WrongGrant {
            integration_id,
            grant,
        });
    }
    oauth
        .refresh_token_file
        .clone()
        .ok_or(LoginError::NoRefreshTokenFile { integration_id })
}

fn code_flow(
    integration: &IntegrationConfig,
    config: &Config,
) -> Result<AuthorizationCodeFlow, LoginError> {
    let invalid = |reason: String| LoginError::Config {
        integration_id: integration.id.clone(),
        reason,
    };
    let client_config =
        instance::client_config(&without_stored_token(integration), &config.fetcher)
            .map_err(|error| invalid(error.to_string()))?;
    let app = client_config
        .auth
        .oauth_app()
        .ok_or_else(|| invalid("the OAuth client settings are missing".to_owned()))?;
    AuthorizationCodeFlow::new(&client_config, app).map_err(|error| invalid(error.to_string()))
}

fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The CSRF token of one login (RFC 6749 §10.12): only a redirect carrying it is accepted.
fn random_state() -> String {
    random_alphanumeric(STATE_LEN)
}

/// What the browser brought back, already checked against the expected state.
enum Callback {
    Code(SecretString),
    StateMismatch,
    Denied {
        error: String,
        description: Option<String>,
    },
    MissingCode,
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Callback::Code(_) => f.write_str("Code([REDACTED])"),
            Callback::StateMismatch => f.write_str("StateMismatch"),
            Callback::Denied { error, .. } => write!(f, "Denied({error})"),
            Callback::MissingCode => f.write_str("MissingCode"),
        }
    }
}

impl Callback {
    /// Reads the redirect's query. The state is checked first: a response to somebody else's
    /// request must not be acted on, not even as an error from ServiceNow.
    fn from_query(query: Option<&str>, expected_state: &str) -> Callback {
        let mut state = None;
        let mut code = None;
        let mut error = None;
        let mut description = None;
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "state" => state = Some(value.into_owned()),
                "code" => code = Some(SecretString::from(value.into_owned())),
                "error" => error = Some(value.into_owned()),
                "error_description" => description = Some(value.into_owned()),
                _ => {}
            }
        }
        if state.as_deref() != Some(expected_state) {
            return Callback::StateMismatch;
        }
        if let Some(error) = error {
            return Callback::Denied { error, description };
        }
        match code.filter(|c| !c.expose_secret().is_empty()) {
            Some(code) => Callback::Code(code),
            None => Callback::MissingCode,
        }
    }

    /// The page the browser shows; it never echoes what the request carried.
    fn page(&self) -> Response {
        let (status, text) = match self {
            Callback::Code(_) => (
                StatusCode::OK,
                "Authorization received. Return to the terminal: nowstream is storing the \
                 refresh token. You can close this window.",
            ),
            Callback::StateMismatch => (
                StatusCode::BAD_REQUEST,
                "This redirect does not belong to the running login (state mismatch). Start \
                 `nowstream-fetcher oauth login` again.",
            ),
            Callback::Denied { .. } => (
                StatusCode::OK,
                "ServiceNow did not authorize nowstream. The terminal shows why.",
            ),
            Callback::MissingCode => (
                StatusCode::BAD_REQUEST,
                "The redirect carried no authorization code.",
            ),
        };
        (
            status,
            Html(format!(
                "<!doctype html><title>nowstream OAuth login</title><p>{text}</p>"
            )),
        )
            .into_response()
    }
}

/// What the callback handler needs.
struct CallbackState {
    path: String,
    expected_state: String,
    results: mpsc::Sender<Callback>,
}

/// The one-shot HTTP server on the redirect URI.
struct CallbackListener {
    /// The redirect URI with the port actually bound (differs when port 0 was asked for).
    redirect_uri: Url,
    listener: TcpListener,
}

impl CallbackListener {
    async fn bind(redirect_uri: &str) -> Result<CallbackListener, LoginError> {
        let invalid = |reason: &str| LoginError::RedirectUri {
            uri: redirect_uri.to_owned(),
            reason: reason.to_owned(),
        };
        let mut url = Url::parse(redirect_uri).map_err(|e| invalid(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(invalid(
                "only http:// can be listened on (the browser is sent to this machine; use a \
                 loopback address such as 127.0.0.1)",
            ));
        }
        if url.fragment().is_some() {
            return Err(invalid("a redirect URI must not have a fragment"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("it has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| invalid(&format!("cannot resolve {host}: {e}")))?
            .collect();
        let mut last_error = None;
        for addr in &addrs {
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    let bound = listener.local_addr().map_err(|source| LoginError::Bind {
                        addr: addr.to_string(),
                        source,
                    })?;
                    if url.port() == Some(0) {
                        url.set_port(Some(bound.port()))
                            .map_err(|()| invalid("its port cannot be set"))?;
                    }
                    return Ok(CallbackListener {
                        redirect_uri: url,
                        listener,
                    });
                }
                Err(error) => last_error = Some((addr, error)),
            }
        }
        match last_error {
            Some((addr, source)) => Err(LoginError::Bind {
                addr: addr.to_string(),
                source,
            }),
            None => Err(invalid(&format!("{host} resolves to no address"))),
        }
    }

    /// Serves until the first request on the redirect path, or until `timeout`.
    async fn wait(self, expected_state: String, timeout: Duration) -> Result<Callback, LoginError> {
        let redirect_uri = self.redirect_uri.to_string();
        let (results, mut received) = mpsc::channel(1);
        let state = Arc::new(CallbackState {
            path: self.redirect_uri.path().to_owned(),
            expected_state,
            results,
        });
        let app = Router::new().fallback(handle_callback).with_state(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let mut server = tokio::spawn(async move {
            axum::serve(self.listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        let outcome = tokio::time::timeout(timeout, received.recv()).await;
        let _ = stop.send(());
        // Let the browser's response go out; then cut idle keep-alive connections.
        if tokio::time::timeout(SERVER_DRAIN, &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        match outcome {
            Ok(Some(callback)) => Ok(callback),
            Ok(None) => Err(LoginError::ListenerStopped { redirect_uri }),
            Err(_) => Err(LoginError::Timeout {
                redirect_uri,
                waited: timeout,
            }),
        }
    }
}

async fn handle_callback(State(state): State<Arc<CallbackState>>, uri: Uri) -> Response {
    if uri.path() != state.path {
        // Browsers ask for /favicon.ico and the like; those are not the redirect.
        return (StatusCode::NOT_FOUND, "not the OAuth redirect URI").into_response();
    }
    let callback = Callback::from_query(uri.query(), &state.expected_state);
    let page = callback.page();
    if state.results.try_send(callback).is_err() {
        return (
            StatusCode::CONFLICT,
            Html("<!doctype html><p>This login already received its redirect.</p>"),
        )
            .into_response();
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_with_the_wrong_state_is_refused_even_when_it_reports_an_error() {
        assert!(matches!(
            Callback::from_query(Some("code=abc&state=other"), "expected"),
            Callback::StateMismatch
        ));
        assert!(matches!(
            Callback::from_query(Some("error=access_denied&state=other"), "expected"),
            Callback::StateMismatch
        ));
        assert!(matches!(
            Callback::from_query(Some("code=abc"), "expected"),
            Callback::StateMismatch
        ));
    }

    #[test]
    fn a_callback_with_the_right_state_yields_its_code_or_error() {
        match Callback::from_query(Some("code=the-code&state=s1"), "s1") {
            Callback::Code(code) => assert_eq!(code.expose_secret(), "the-code"),
            other => panic!("expected a code, got {other:?}"),
        }
        match Callback::from_query(
            Some("error=access_denied&error_description=user+said+no&state=s1"),
            "s1",
        ) {
            Callback::Denied { error, description } => {
                assert_eq!(error, "access_denied");
                assert_eq!(description.as_deref(), Some("user said no"));
            }
            other => panic!("expected a denial, got {other:?}"),
        }
        assert!(matches!(
            Callback::from_query(Some("state=s1&code="), "s1"),
            Callback::MissingCode
        ));
    }

    #[test]
    fn callback_debug_output_hides_the_code() {
        let callback = Callback::from_query(Some("code=secret-code&state=s"), "s");
        assert!(!format!("{callback:?}").contains("secret-code"));
    }

    #[test]
    fn states_are_long_and_differ_between_logins() {
        let (a, b) = (random_state(), random_state());
        assert_eq!(a.len(), STATE_LEN);
        assert_ne!(a, b);
    }
}
