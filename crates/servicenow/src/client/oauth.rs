//! OAuth 2 against ServiceNow's `/oauth_token.do`: the token cache that keeps Table API
//! requests authenticated, and the authorization-code flow behind `oauth login`.
//!
//! Tokens are cached and replaced *before* they expire (at the earlier of 60 s or 10 % of
//! their lifetime before), so a long scan never sends a token that is about to lapse. When
//! the instance revokes a token early anyway, the Table API answers 401; the request path
//! then invalidates the token it used, fetches a new one and tries once more — a second 401
//! is reported, never looped on. A refresh token, when the instance issues one, is used for
//! renewals (it spares the user's password); if it is refused the configured grant is used.
//!
//! ServiceNow hands back the same refresh token on every refresh grant, but a separate
//! provider behind `token_url` may rotate it (issue a new one with every renewal and revoke
//! the old, as RFC 9700 recommends). The newest one is always what renewals use, and a
//! [`RefreshTokenObserver`] hears of each new one so that it outlives the process.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::config::{
    AUTHORIZE_PATH, ClientConfig, OAuthApp, OAuthGrant, RefreshTokenObserver, instance_endpoint,
};
use super::error::{ClientError, RequestContext};
use super::response::error_text;
use super::retry::{Retrier, RetryReason, Transient, rate_limit_hint};
use super::transport::{Failure, Transport};

/// Longest head start a token is renewed with.
const MAX_RENEWAL_MARGIN: Duration = Duration::from_secs(60);

/// Tokens from one successful grant.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    /// Present for the password, authorization-code and refresh-token grants on ServiceNow;
    /// absent for `client_credentials`.
    pub refresh_token: Option<SecretString>,
    /// Lifetime of the access token, as the instance stated it.
    pub expires_in: Option<Duration>,
    /// Scope granted.
    pub scope: Option<String>,
    /// Normally `Bearer`.
    pub token_type: Option<String>,
}

/// `/oauth_token.do`'s success body. `expires_in` is a number on ServiceNow, but some
/// gateways send it as a string, so both are accepted.
#[derive(Deserialize)]
struct TokenBody {
    access_token: SecretString,
    #[serde(default)]
    refresh_token: Option<SecretString>,
    #[serde(default)]
    expires_in: Option<Seconds>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Text(String),
}

impl Seconds {
    fn duration(&self) -> Option<Duration> {
        match self {
            Seconds::Number(n) => Some(Duration::from_secs(*n)),
            Seconds::Text(text) => text.trim().parse().ok().map(Duration::from_secs),
        }
    }
}

impl From<TokenBody> for TokenSet {
    fn from(body: TokenBody) -> Self {
        TokenSet {
            access_token: body.access_token,
            refresh_token: body.refresh_token.filter(|t| !t.expose_secret().is_empty()),
            expires_in: body.expires_in.as_ref().and_then(Seconds::duration),
            scope: body.scope,
            token_type: body.token_type,
        }
    }
}

/// The client side of one OAuth application: who we are and where to ask.
#[derive(Debug)]
pub(crate) struct TokenEndpoint {
    pub url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scope: Option<String>,
}

impl TokenEndpoint {
    /// POSTs one grant (form-encoded, client credentials in the body as ServiceNow expects)
    /// with the client's retry policy. Refusals (400/401/403) are not retried.
    pub(crate) async fn request(
        &self,
        transport: &Transport,
        grant_type: &'static str,
        params: &[(&'static str, &SecretString)],
        public_params: &[(&'static str, &str)],
    ) -> Result<TokenSet, ClientError> {
        let request = RequestContext::other("POST", self.url.as_str());
        let mut retrier = Retrier::new(&transport.retry, &request);
        loop {
            match self
                .attempt(transport, &request, grant_type, params, public_params)
                .await
            {
                Ok(tokens) => {
                    transport.redactor.learn(&tokens.access_token);
                    if let Some(refresh) = &tokens.refresh_token {
                        transport.redactor.learn(refresh);
                    }
                    return Ok(tokens);
                }
                Err(Failure::Fatal(err)) => return Err(err),
                Err(Failure::Transient(transient)) => retrier.pause(transient).await?,
            }
        }
    }

    async fn attempt(
        &self,
        transport: &Transport,
        request: &RequestContext,
        grant_type: &'static str,
        params: &[(&'static str, &SecretString)],
        public_params: &[(&'static str, &str)],
    ) -> Result<TokenSet, Failure> {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", grant_type),
            ("client_id", &self.client_id),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        form.extend(params.iter().map(|(k, v)| (*k, v.expose_secret())));
        form.extend(public_params.iter().copied());
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let builder = transport
            .http
            .post(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let exchange = transport.exchange(builder).await?;
        let status = exchange.status;
        if status.is_success() {
            // The body holds the tokens: a parse failure is described by position only.
            return serde_json::from_slice::<TokenBody>(&exchange.body)
                .map(TokenSet::from)
                .map_err(|e| {
                    Failure::Transient(Transient::new(
                        RetryReason::MalformedJson,
                        format!(
                            "token response (HTTP {status}) is not a token JSON object \
                             (line {}, column {})",
                            e.line(),
                            e.column()
                        ),
                    ))
                });
        }
        let message = transport.redactor.clean(&error_text(&exchange.body));
        if status.as_u16() == 429 {
            let mut transient =
                Transient::new(RetryReason::RateLimited, format!("HTTP 429: {message}"));
            transient.hint = rate_limit_hint(&exchange.headers, std::time::SystemTime::now());
            return Err(transient.into());
        }
        if status.is_server_error() {
            return Err(Transient::new(
                RetryReason::ServerError,
                format!("HTTP {status}: {message}"),
            )
            .into());
        }
        Err(ClientError::TokenRejected {
            request: request.clone(),
            grant: grant_type,
            status: status.as_u16(),
            message,
        }
        .into())
    }
}

/// An access token handed to a request, with the generation it belongs to (so a 401 can
/// invalidate exactly the token that failed, not one another request already renewed).
#[derive(Debug, Clone)]
pub(crate) struct Bearer {
    pub token: SecretString,
    pub generation: u64,
}

#[derive(Debug)]
struct Cached {
    bearer: Bearer,
    /// When to renew; `None` when the instance gave no lifetime (renewed only on 401).
    renew_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct TokenState {
    current: Option<Cached>,
    /// The latest refresh token the instance issued.
    refresh_token: Option<SecretString>,
    generation: u64,
}

/// Keeps one valid access token for a client. Renewal is single-flight: the state lock is
/// held while a token is fetched, so concurrent requests wait for one renewal.
#[derive(Debug)]
pub(crate) struct TokenManager {
    endpoint: TokenEndpoint,
    grant: OAuthGrant,
    /// Told about refresh tokens other than the one in use.
    observer: Option<RefreshTokenObserver>,
    state: Mutex<TokenState>,
}

impl TokenManager {
    pub(crate) fn new(
        endpoint: TokenEndpoint,
        grant: OAuthGrant,
        observer: Option<RefreshTokenObserver>,
    ) -> Self {
        TokenManager {
            endpoint,
            grant,
            observer,
            state: Mutex::new(TokenState::default()),
        }
    }

    /// The refresh token renewals start from: the last one issued, else the configured one.
    fn refresh_token_in_use<'a>(&'a self, state: &'a TokenState) -> Option<&'a SecretString> {
        state.refresh_token.as_ref().or(match &self.grant {
            OAuthGrant::RefreshToken { refresh_token } => Some(refresh_token),
            OAuthGrant::Password { .. } | OAuthGrant::ClientCredentials => None,
        })
    }

    /// A token that is not about to expire, fetching one if needed.
    pub(crate) async fn bearer(&self, transport: &Transport) -> Result<Bearer, ClientError> {
        let mut state = self.state.lock().await;
        if let Some(cached) = &state.current {
            if cached.renew_at.is_none_or(|at| Instant::now() < at) {
                return Ok(cached.bearer.clone());
            }
        }
        let tokens = self.obtain(transport, state.refresh_token.as_ref()).await?;
        state.generation += 1;
        let bearer = Bearer {
            token: tokens.access_token,
            generation: state.generation,
        };
        let renew_at = tokens
            .expires_in
            .map(|lifetime| Instant::now() + lifetime.saturating_sub(renewal_margin(lifetime)));
        if let Some(issued) = tokens.refresh_token {
            let rotated = self
                .refresh_token_in_use(&state)
                .is_none_or(|in_use| in_use.expose_secret() != issued.expose_secret());
            if let Some(observer) = self.observer.as_ref().filter(|_| rotated) {
                observer.notify(&issued);
            }
            state.refresh_token = Some(issued);
        }
        state.current = Some(Cached {
            bearer: bearer.clone(),
            renew_at,
        });
        tracing::debug!(
            generation = bearer.generation,
            lifetime_secs = tokens.expires_in.map(|d| d.as_secs()),
            "obtained a ServiceNow OAuth access token"
        );
        Ok(bearer)
    }

    /// Forgets the token of `generation` after the instance refused it, unless it was
    /// already replaced.
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|c| c.bearer.generation == generation)
        {
            state.current = None;
        }
    }

    async fn obtain(
        &self,
        transport: &Transport,
        refresh_token: Option<&SecretString>,
    ) -> Result<TokenSet, ClientError> {
        if let Some(refresh_token) = refresh_token {
            let result = self
                .endpoint
                .request(
                    transport,
                    "refresh_token",
                    &[("refresh_token", refresh_token)],
                    &[],
                )
                .await;
            match result {
                Err(err @ ClientError::TokenRejected { .. }) => {
                    let same_as_configured = matches!(
                        &self.grant,
                        OAuthGrant::RefreshToken { refresh_token: configured }
                            if configured.expose_secret() == refresh_token.expose_secret()
                    );
                    if same_as_configured {
                        return Err(err);
                    }
                    tracing::info!(
                        error = %err,
                        "ServiceNow refused the refresh token; using the configured grant"
                    );
                }
                other => return other,
            }
        }
        let grant_type = self.grant.grant_type();
        match &self.grant {
            OAuthGrant::Password { username, password } => {
                self.endpoint
                    .request(
                        transport,
                        grant_type,
                        &[("password", password)],
                        &[("username", username)],
                    )
                    .await
            }
            OAuthGrant::ClientCredentials => {
                self.endpoint.request(transport, grant_type, &[], &[]).await
            }
            OAuthGrant::RefreshToken { refresh_token } => {
                self.endpoint
                    .request(
                        transport,
                        grant_type,
                        &[("refresh_token", refresh_token)],
                        &[],
                    )
                    .await
            }
        }
    }
}

/// How long before expiry a token is renewed: 10 % of its lifetime, at most 60 s.
pub(crate) fn renewal_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(MAX_RENEWAL_MARGIN)
}

/// The URL to send a user's browser to so they approve this client
/// (`<instance>/oauth_auth.do?response_type=code&client_id=…&redirect_uri=…&state=…`).
pub fn authorize_url(
    instance_url: &Url,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    scope: Option<&str>,
) -> Url {
    let mut url = instance_endpoint(instance_url, AUTHORIZE_PATH);
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state);
        if let Some(scope) = scope {
            query.append_pair("scope", scope);
        }
    }
    url
}

/// The authorization-code flow (`oauth login`): send the user to [`Self::authorize_url`],
/// receive `code` on the redirect URI, trade it with [`Self::exchange_code`] for a
/// [`TokenSet`] whose refresh token then configures [`OAuthGrant::RefreshToken`].
#[derive(Debug)]
pub struct AuthorizationCodeFlow {
    instance_url: Url,
    endpoint: TokenEndpoint,
    transport: Transport,
}

impl AuthorizationCodeFlow {
    /// Uses `config` for the instance, TLS, proxy, timeouts and retries (its `auth` is not
    /// used) and `app` for the OAuth client.
    pub fn new(config: &ClientConfig, app: OAuthApp) -> Result<Self, ClientError> {
        if let Some(url) = &app.token_url {
            config.check_endpoint("app.token_url", url)?;
        }
        let transport = Transport::new(config, vec![app.client_secret.clone()])?;
        Ok(AuthorizationCodeFlow {
            instance_url: config.instance_url.clone(),
            endpoint: TokenEndpoint {
                url: config.token_url(app.token_url.as_ref()),
                client_id: app.client_id,
                client_secret: app.client_secret,
                scope: app.scope,
            },
            transport,
        })
    }

    /// Where to send the user's browser; `state` comes back on the redirect and must be
    /// checked by the caller (CSRF protection).
    pub fn authorize_url(&self, redirect_uri: &str, state: &str) -> Url {
        authorize_url(
            &self.instance_url,
            &self.endpoint.client_id,
            redirect_uri,
            state,
            self.endpoint.scope.as_deref(),
        )
    }

    /// Trades the `code` from the redirect for tokens. `redirect_uri` must be the one used
    /// in the authorization URL.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
    ) -> Result<TokenSet, ClientError> {
        let code = SecretString::from(code.to_owned());
        self.transport.redactor.learn(&code);
        self.endpoint
            .request(
                &self.transport,
                "authorization_code",
                &[("code", &code)],
                &[("redirect_uri", redirect_uri)],
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_ten_percent_early_but_at_most_a_minute() {
        assert_eq!(
            renewal_margin(Duration::from_secs(1800)),
            Duration::from_secs(60)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(300)),
            Duration::from_secs(30)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(5)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn token_bodies_accept_numeric_or_text_lifetimes_and_drop_empty_refresh_tokens() {
        let body: TokenBody = serde_json::from_str(
            r#"{"access_token":"a","refresh_token":"","scope":"useraccount","token_type":"Bearer","expires_in":"1799"}"#,
        )
        .unwrap();
        let tokens = TokenSet::from(body);
        assert_eq!(tokens.expires_in, Some(Duration::from_secs(1799)));
        assert!(tokens.refresh_token.is_none());
        let body: TokenBody =
            serde_json::from_str(r#"{"access_token":"a","refresh_token":"r","expires_in":1800}"#)
                .unwrap();
        let tokens = TokenSet::from(body);
        assert_eq!(tokens.expires_in, Some(Duration::from_secs(1800)));
        assert_eq!(tokens.refresh_token.unwrap().expose_secret(), "r");
    }

    #[test]
    fn token_set_debug_shows_no_tokens() {
        let tokens = TokenSet {
            access_token: SecretString::from("access-token-value"),
            refresh_token: Some(SecretString::from("refresh-token-value")),
            expires_in: None,
            scope: None,
            token_type: None,
        };
        let text = format!("{tokens:?}");
        assert!(!text.contains("access-token-value"), "{text}");
        assert!(!text.contains("refresh-token-value"), "{text}");
    }

    #[test]
    fn the_authorize_url_carries_client_redirect_state_and_scope() {
        let url = authorize_url(
            &Url::parse("https://acme.service-now.com").unwrap(),
            "client one",
            "http://127.0.0.1:8765/callback",
            "xyz",
            Some("table_read"),
        );
        assert_eq!(url.path(), "/oauth_auth.do");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let expected = [
            ("response_type", "code"),
            ("client_id", "client one"),
            ("redirect_uri", "http://127.0.0.1:8765/callback"),
            ("state", "xyz"),
            ("scope", "table_read"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(pairs, expected);
    }
}
