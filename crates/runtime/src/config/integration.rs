//! The `[[integrations]]` list: which ServiceNow instances to read and how to log in.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

/// One ServiceNow instance, known to SEI by its integration id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// SEI's integration id; it prefixes every Kafka key (`<id>:<sys_id>`) and names the
    /// integration in SEI's ingestion URL, so it must be unique and non-empty.
    pub id: String,
    /// Base URL of the instance, e.g. `https://acme.service-now.com`.
    pub url: String,
    /// How to authenticate against the instance's Table API.
    pub auth: AuthConfig,
    /// Field names that must never leave the normalizer (at any nesting level), e.g.
    /// `caller_id` or `u_internal_notes`. Excluded names are still listed on each entity,
    /// their values never are.
    #[serde(default)]
    pub exclude_fields: Vec<String>,
    /// Permit a plain `http://` URL (for the simulator and local tests). Off by default
    /// because credentials would otherwise travel in clear text.
    #[serde(default)]
    pub allow_http: bool,
    /// Ask ServiceNow only for fields that are not excluded (`sysparm_fields`), so excluded
    /// values never reach Kafka at all. Off by default: the raw topics then keep every field,
    /// which lets a changed exclusion policy be replayed without fetching again.
    #[serde(default)]
    pub exclude_at_source: bool,
}

/// Credentials for the Table API, chosen with `type = "basic"` or `type = "oauth"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// HTTP basic authentication with a ServiceNow user.
    Basic(BasicAuth),
    /// OAuth 2.0 via the instance's `/oauth_token.do`.
    Oauth(OAuthConfig),
}

/// Username and password sent as HTTP basic authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// ServiceNow user name (`user_name`, not the display name).
    pub username: String,
    /// That user's password.
    pub password: SecretString,
}

/// OAuth 2.0 client settings for an Application Registry entry in ServiceNow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// Client id of the OAuth application registry entry.
    pub client_id: String,
    /// Client secret of that entry.
    pub client_secret: SecretString,
    /// Which grant obtains the first access token.
    pub grant: OAuthGrant,
    /// Resource-owner user name; required by the `password` grant.
    #[serde(default)]
    pub username: Option<String>,
    /// Resource-owner password; required by the `password` grant.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// File holding the refresh token. Required by the `refresh_token` grant (the token
    /// is read from it) and the `authorization_code` grant (the token obtained once by
    /// the interactive flow is kept there); rotated tokens are written back so a
    /// restart does not need a new login.
    #[serde(default)]
    pub refresh_token_file: Option<PathBuf>,
    /// Token endpoint; defaults to `<url>/oauth_token.do`, the instance's own.
    #[serde(default)]
    pub token_url: Option<String>,
    /// OAuth scope requested with every token, e.g. `table_read` when the Application
    /// Registry entry limits the client to it. Absent: the instance's default scope.
    #[serde(default)]
    pub scope: Option<String>,
}

/// The OAuth 2.0 grant types ServiceNow's `/oauth_token.do` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthGrant {
    /// Resource-owner password credentials: needs `username` and `password`.
    Password,
    /// Client credentials: the client acts as itself (ServiceNow Washington DC and later).
    ClientCredentials,
    /// Starts from a refresh token read from `refresh_token_file`.
    RefreshToken,
    /// Authorization code obtained once through `/oauth_auth.do`; the resulting refresh
    /// token lives in `refresh_token_file`.
    AuthorizationCode,
}
