//! Authentication: basic auth against configured accounts, and ServiceNow's OAuth endpoints
//! (`/oauth_token.do` grants, `/oauth_auth.do` authorization codes) with expiring tokens.
//!
//! Tokens are random strings kept only in memory; they never reach logs or Debug output.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use nowstream_model::table_api::query::EncodedQuery;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{AUDIT_READ_ROLE, OAuthClient, SimConfig, SimUser};

/// How long an authorization code can be exchanged.
const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Scope reported when the client asks for none (ServiceNow's default).
const DEFAULT_SCOPE: &str = "useraccount";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `sys_user.user_name`.
    pub user_name: String,
    /// Came with a Bearer token (rather than basic auth).
    pub via_bearer: bool,
}

/// Why a Table API request is not authenticated; all answer 401 "User Not Authenticated".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No (usable) `Authorization` header.
    #[error("no Authorization header")]
    Missing,
    /// Basic auth with an unknown user or wrong password.
    #[error("basic auth credentials rejected")]
    BadCredentials,
    /// Bearer token unknown, revoked or past its lifetime.
    #[error("bearer token unknown or expired")]
    BadToken,
}

/// Why an OAuth request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// Unknown client or wrong secret.
    #[error("client authentication failed")]
    InvalidClient,
    /// Wrong user credentials, unknown/expired refresh token or code.
    #[error("access denied: {0}")]
    AccessDenied(&'static str),
    /// A grant type the simulator does not implement.
    #[error("unsupported grant_type {0:?}")]
    UnsupportedGrant(String),
    /// A required parameter is missing or malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl OAuthError {
    /// HTTP status ServiceNow answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidClient | Self::AccessDenied(_) => 401,
            Self::UnsupportedGrant(_) | Self::InvalidRequest(_) => 400,
        }
    }

    /// Response body: ServiceNow answers bad credentials with a fixed, uninformative body.
    pub fn body(&self) -> Value {
        match self {
            Self::InvalidClient | Self::AccessDenied(_) => {
                json!({"error_description": "access_denied", "error": "server_error"})
            }
            Self::UnsupportedGrant(grant) => {
                json!({"error": "unsupported_grant_type", "error_description": format!("grant_type {grant:?} is not supported")})
            }
            Self::InvalidRequest(reason) => {
                json!({"error": "invalid_request", "error_description": reason})
            }
        }
    }
}

/// `/oauth_token.do` success body.
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    /// New access token.
    pub access_token: String,
    /// Refresh token; absent for `client_credentials` (RFC 6749 §4.4.3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Granted scope.
    pub scope: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A configured account plus its pre-parsed row ACLs.
#[derive(Debug, Clone)]
pub struct UserAccess {
    /// The account.
    pub user: SimUser,
    /// Table → rows hidden from this user after limit/offset.
    pub hidden_rows: BTreeMap<String, EncodedQuery>,
}

/// Tables whose read ACL requires a role, as on a default instance: without one of these
/// roles (or `admin`) every list and record read answers 403. `sys_audit_delete` is readable by
/// `admin` only unless an administrator adds an ACL (modelled by [`AUDIT_READ_ROLE`]); none of
/// SEI's documented roles grants it. `sys_properties` is admin-only.
pub const TABLE_READ_ROLES: [(&str, &[&str]); 2] = [
    ("sys_audit_delete", &[AUDIT_READ_ROLE]),
    ("sys_properties", &[]),
];

impl UserAccess {
    /// Whether the table-level ACLs let this user read `table`: `admin` reads everything;
    /// otherwise the table must not be denied to the user and, where [`TABLE_READ_ROLES`]
    /// names roles for it, the user must hold one of them.
    pub fn can_read(&self, table: &str) -> bool {
        let holds = |role: &str| self.user.roles.iter().any(|r| r == role);
        if holds("admin") {
            return true;
        }
        if self.user.denied_tables.contains(table) {
            return false;
        }
        TABLE_READ_ROLES
            .iter()
            .find(|(name, _)| *name == table)
            .is_none_or(|(_, roles)| roles.iter().any(|role| holds(role)))
    }
}

struct Grant {
    user_name: String,
    client_id: String,
    scope: String,
    expires_at: Instant,
}

struct CodeGrant {
    grant: Grant,
    redirect_uri: String,
}

/// Live tokens and codes. Keys are secrets: Debug shows only counts.
#[derive(Default)]
struct TokenBook {
    access: HashMap<String, Grant>,
    refresh: HashMap<String, Grant>,
    codes: HashMap<String, CodeGrant>,
}

impl fmt::Debug for TokenBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBook")
            .field("access_tokens", &self.access.len())
            .field("refresh_tokens", &self.refresh.len())
            .field("codes", &self.codes.len())
            .finish()
    }
}

/// Accounts, clients and issued tokens.
#[derive(Debug)]
pub struct AuthState {
    users: BTreeMap<String, UserAccess>,
    clients: BTreeMap<String, OAuthClient>,
    access_lifetime: Duration,
    refresh_lifetime: Duration,
    /// See [`SimConfig::rotate_refresh_tokens`].
    rotate_refresh_tokens: bool,
    book: Mutex<TokenBook>,
}

fn random_token() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(64)
        .map(char::from)
        .collect()
}

impl AuthState {
    /// Auth state for a validated config (unparseable row-ACL queries are skipped).
    pub fn new(config: &SimConfig) -> Self {
        let users = config
            .users
            .iter()
            .map(|user| {
                let hidden_rows = user
                    .hidden_rows
                    .iter()
                    .filter_map(|(table, q)| {
                        EncodedQuery::parse(q).ok().map(|q| (table.clone(), q))
                    })
                    .collect();
                (
                    user.user_name.clone(),
                    UserAccess {
                        user: user.clone(),
                        hidden_rows,
                    },
                )
            })
            .collect();
        let clients = config
            .oauth_clients
            .iter()
            .map(|c| (c.client_id.clone(), c.clone()))
            .collect();
        Self {
            users,
            clients,
            access_lifetime: Duration::from_secs(config.access_token_lifetime_secs),
            refresh_lifetime: Duration::from_secs(config.refresh_token_lifetime_secs),
            rotate_refresh_tokens: config.rotate_refresh_tokens,
            book: Mutex::new(TokenBook::default()),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, TokenBook> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The account called `user_name`.
    pub fn access(&self, user_name: &str) -> Option<&UserAccess> {
        self.users.get(user_name)
    }

    /// Authenticate a Table API request from its `Authorization` header.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let (scheme, rest) = header.split_once(' ').ok_or(AuthError::Missing)?;
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, password) = decode_basic(rest).ok_or(AuthError::BadCredentials)?;
            return self
                .check_password(&user, &password)
                .map_err(|_| AuthError::BadCredentials);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let book = self.book();
            let grant = book.access.get(rest.trim()).ok_or(AuthError::BadToken)?;
            if grant.expires_at <= Instant::now() {
                return Err(AuthError::BadToken);
            }
            return Ok(Principal {
                user_name: grant.user_name.clone(),
                via_bearer: true,
            });
        }
        Err(AuthError::Missing)
    }

    fn check_password(&self, user: &str, password: &str) -> Result<Principal, OAuthError> {
        match self.users.get(user) {
            Some(access) if access.user.password_matches(password) => Ok(Principal {
                user_name: user.to_owned(),
                via_bearer: false,
            }),
            _ => Err(OAuthError::AccessDenied("bad user credentials")),
        }
    }

    /// Make the access token in this `Authorization` header expire now (the "tokens expiring
    /// early" fault).
    pub fn expire_presented_token(&self, authorization: Option<&str>) {
        let Some((scheme, token)) = authorization.and_then(|h| h.split_once(' ')) else {
            return;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return;
        }
        if let Some(grant) = self.book().access.get_mut(token.trim()) {
            grant.expires_at = Instant::now();
        }
    }

    /// Expire every access token now (refresh tokens stay valid).
    pub fn expire_all_access_tokens(&self) {
        let now = Instant::now();
        for grant in self.book().access.values_mut() {
            grant.expires_at = now;
        }
    }

    fn client(&self, id: Option<&str>, secret: Option<&str>) -> Result<&OAuthClient, OAuthError> {
        let client = id
            .and_then(|id| self.clients.get(id))
            .ok_or(OAuthError::InvalidClient)?;
        match secret {
            Some(secret) if client.secret_matches(secret) => Ok(client),
            _ => Err(OAuthError::InvalidClient),
        }
    }

    /// Handle a `POST /oauth_token.do` form. Client credentials come from the form or, failing
    /// that, from HTTP basic auth.
    pub fn token(
        &self,
        form: &BTreeMap<String, String>,
        authorization: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let basic = authorization
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, rest)| decode_basic(rest));
        let (client_id, client_secret) = match (param("client_id"), param("client_secret"), &basic)
        {
            (Some(id), Some(secret), _) => (Some(id.to_owned()), Some(secret.to_owned())),
            (_, _, Some((id, secret))) => (Some(id.clone()), Some(secret.clone())),
            (id, secret, None) => (id.map(str::to_owned), secret.map(str::to_owned)),
        };
        let client = self.client(client_id.as_deref(), client_secret.as_deref())?;
        let grant_type = param("grant_type")
            .ok_or_else(|| OAuthError::InvalidRequest("grant_type is required".into()))?;
        let requested_scope = param("scope").unwrap_or(DEFAULT_SCOPE).to_owned();
        match grant_type {
            "password" => {
                let user = param("username")
                    .ok_or_else(|| OAuthError::InvalidRequest("username is required".into()))?;
                let password = param("password").unwrap_or_default();
                let principal = self.check_password(user, password)?;
                Ok(self.issue(
                    &principal.user_name,
                    &client.client_id,
                    requested_scope,
                    true,
                ))
            }
            "refresh_token" => {
                let token = param("refresh_token").ok_or_else(|| {
                    OAuthError::InvalidRequest("refresh_token is required".into())
                })?;
                let (user, scope) = {
                    let mut book = self.book();
                    let grant = book
                        .refresh
                        .get(token)
                        .filter(|g| {
                            g.client_id == client.client_id && g.expires_at > Instant::now()
                        })
                        .ok_or(OAuthError::AccessDenied("unknown or expired refresh token"))?;
                    let found = (grant.user_name.clone(), grant.scope.clone());
                    // Revoked under the same lock it was checked under, so two requests
                    // presenting it at once cannot both succeed.
                    if self.rotate_refresh_tokens {
                        book.refresh.remove(token);
                    }
                    found
                };
                if self.rotate_refresh_tokens {
                    return Ok(self.issue(&user, &client.client_id, scope, true));
                }
                let mut response = self.issue(&user, &client.client_id, scope, false);
                // ServiceNow keeps the refresh token until it expires.
                response.refresh_token = Some(token.to_owned());
                Ok(response)
            }
            "client_credentials" => {
                let user =
                    client
                        .client_credentials_user
                        .clone()
                        .ok_or(OAuthError::AccessDenied(
                            "client has no OAuth application user",
                        ))?;
                Ok(self.issue(&user, &client.client_id, requested_scope, false))
            }
            "authorization_code" => {
                let code = param("code")
                    .ok_or_else(|| OAuthError::InvalidRequest("code is required".into()))?;
                let entry = self
                    .book()
                    .codes
                    .remove(code)
                    .ok_or(OAuthError::AccessDenied("unknown or used code"))?;
                let redirect_ok = param("redirect_uri").is_none_or(|uri| uri == entry.redirect_uri);
                if entry.grant.client_id != client.client_id
                    || entry.grant.expires_at <= Instant::now()
                    || !redirect_ok
                {
                    return Err(OAuthError::AccessDenied(
                        "code does not match client, redirect_uri or is expired",
                    ));
                }
                Ok(self.issue(
                    &entry.grant.user_name,
                    &client.client_id,
                    entry.grant.scope,
                    true,
                ))
            }
            other => Err(OAuthError::UnsupportedGrant(other.to_owned())),
        }
    }

    fn issue(
        &self,
        user: &str,
        client_id: &str,
        scope: String,
        with_refresh: bool,
    ) -> TokenResponse {
        let now = Instant::now();
        let access_token = random_token();
        let refresh_token = with_refresh.then(random_token);
        let mut book = self.book();
        let grant = |lifetime| Grant {
            user_name: user.to_owned(),
            client_id: client_id.to_owned(),
            scope: scope.clone(),
            expires_at: now + lifetime,
        };
        book.access
            .insert(access_token.clone(), grant(self.access_lifetime));
        if let Some(refresh) = &refresh_token {
            book.refresh
                .insert(refresh.clone(), grant(self.refresh_lifetime));
        }
        TokenResponse {
            access_token,
            refresh_token,
            scope,
            token_type: "Bearer",
            expires_in: self.access_lifetime.as_secs(),
        }
    }

    /// Handle `GET /oauth_auth.do`: approve at once (there is no login page) and return the
    /// URL to redirect to, carrying `code` and `state`. The approving user is the one in a
    /// basic-auth header, else the client's `auto_approve_user`.
    pub fn authorize(
        &self,
        params: &BTreeMap<String, String>,
        authorization: Option<&str>,
    ) -> Result<String, OAuthError> {
        let param = |name: &str| {
            params
                .get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        if param("response_type") != Some("code") {
            return Err(OAuthError::InvalidRequest(
                "response_type must be \"code\"".into(),
            ));
        }
        let client = param("client_id")
            .and_then(|id| self.clients.get(id))
            .ok_or(OAuthError::InvalidClient)?;
        let redirect_uri = match param("redirect_uri") {
            Some(uri) => uri.to_owned(),
            None => client
                .redirect_uris
                .first()
                .cloned()
                .ok_or_else(|| OAuthError::InvalidRequest("redirect_uri is required".into()))?,
        };
        if !client.redirect_uris.is_empty() && !client.redirect_uris.contains(&redirect_uri) {
            return Err(OAuthError::InvalidRequest(format!(
                "redirect_uri {redirect_uri:?} is not registered"
            )));
        }
        let user = match self.authenticate(authorization) {
            Ok(principal) if !principal.via_bearer => principal.user_name,
            _ => client
                .auto_approve_user
                .clone()
                .ok_or(OAuthError::AccessDenied("no user to approve as"))?,
        };
        let mut url = url::Url::parse(&redirect_uri).map_err(|e| {
            OAuthError::InvalidRequest(format!("redirect_uri {redirect_uri:?} is not a URL: {e}"))
        })?;
        let code = random_token();
        url.query_pairs_mut().append_pair("code", &code);
        if let Some(state) = param("state") {
            url.query_pairs_mut().append_pair("state", state);
        }
        let grant = Grant {
            user_name: user,
            client_id: client.client_id.clone(),
            scope: param("scope").unwrap_or(DEFAULT_SCOPE).to_owned(),
            expires_at: Instant::now() + CODE_LIFETIME,
        };
        self.book().codes.insert(
            code,
            CodeGrant {
                grant,
                redirect_uri,
            },
        );
        Ok(url.into())
    }
}

/// `user:password` from the base64 part of a basic `Authorization` header.
fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let bytes = BASE64.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_INTEGRATION_PASSWORD,
        DEFAULT_INTEGRATION_USER,
    };

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn client_form(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut f = form(&[
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ]);
        f.extend(form(extra));
        f
    }

    #[test]
    fn basic_auth_accepts_only_the_right_password() {
        let auth = AuthState::new(&SimConfig::default());
        let good = format!(
            "Basic {}",
            BASE64.encode(format!(
                "{DEFAULT_INTEGRATION_USER}:{DEFAULT_INTEGRATION_PASSWORD}"
            ))
        );
        let bad = format!(
            "Basic {}",
            BASE64.encode(format!("{DEFAULT_INTEGRATION_USER}:nope"))
        );
        assert_eq!(
            auth.authenticate(Some(&good)).unwrap().user_name,
            DEFAULT_INTEGRATION_USER
        );
        assert_eq!(
            auth.authenticate(Some(&bad)),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
    }

    #[test]
    fn password_grant_issues_a_bearer_token_that_can_be_expired() {
        let auth = AuthState::new(&SimConfig::default());
        let response = auth
            .token(
                &client_form(&[
                    ("grant_type", "password"),
                    ("username", DEFAULT_INTEGRATION_USER),
                    ("password", DEFAULT_INTEGRATION_PASSWORD),
                ]),
                None,
            )
            .unwrap();
        let header = format!("Bearer {}", response.access_token);
        assert!(auth.authenticate(Some(&header)).unwrap().via_bearer);
        auth.expire_presented_token(Some(&header));
        assert_eq!(auth.authenticate(Some(&header)), Err(AuthError::BadToken));
    }

    #[test]
    fn wrong_client_secret_is_rejected() {
        let auth = AuthState::new(&SimConfig::default());
        let f = form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", "x"),
        ]);
        assert_eq!(auth.token(&f, None).unwrap_err(), OAuthError::InvalidClient);
    }

    fn refresh(auth: &AuthState, token: &str) -> Result<TokenResponse, OAuthError> {
        auth.token(
            &client_form(&[("grant_type", "refresh_token"), ("refresh_token", token)]),
            None,
        )
    }

    fn password_login(auth: &AuthState) -> TokenResponse {
        auth.token(
            &client_form(&[
                ("grant_type", "password"),
                ("username", DEFAULT_INTEGRATION_USER),
                ("password", DEFAULT_INTEGRATION_PASSWORD),
            ]),
            None,
        )
        .unwrap()
    }

    #[test]
    fn by_default_a_refresh_grant_returns_the_same_refresh_token_and_keeps_it_valid() {
        let auth = AuthState::new(&SimConfig::default());
        let first = password_login(&auth).refresh_token.unwrap();
        let renewed = refresh(&auth, &first).unwrap();
        assert_eq!(renewed.refresh_token.as_deref(), Some(first.as_str()));
        assert!(refresh(&auth, &first).is_ok(), "the token stays usable");
    }

    #[test]
    fn a_rotating_simulator_issues_a_new_refresh_token_and_revokes_the_presented_one() {
        let auth = AuthState::new(&SimConfig {
            rotate_refresh_tokens: true,
            ..SimConfig::default()
        });
        let first = password_login(&auth).refresh_token.unwrap();
        let renewed = refresh(&auth, &first).unwrap();
        let second = renewed.refresh_token.unwrap();
        assert_ne!(second, first);
        let header = format!("Bearer {}", renewed.access_token);
        assert!(auth.authenticate(Some(&header)).is_ok());
        assert_eq!(
            refresh(&auth, &first).unwrap_err(),
            OAuthError::AccessDenied("unknown or expired refresh token"),
            "the presented token is revoked"
        );
        let third = refresh(&auth, &second).unwrap().refresh_token.unwrap();
        assert!(third != first && third != second);
    }

    #[test]
    fn token_response_debug_hides_tokens() {
        let auth = AuthState::new(&SimConfig::default());
        let response = auth
            .token(&client_form(&[("grant_type", "client_credentials")]), None)
            .unwrap();
        assert!(!format!("{response:?}").contains(&response.access_token));
        assert!(response.refresh_token.is_none());
    }
}
