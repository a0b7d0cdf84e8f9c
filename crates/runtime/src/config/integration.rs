//! The `[[integrations]]` list: which ServiceNow instances to read and how to log in.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use super::secret::{GivenTwice, value_or_file};

/// One ServiceNow instance, known to SEI by its integration id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// SEI's integration id; it prefixes every Kafka key (`<id>:<sys_id>`) and names the
    /// integration in the receiver's ingestion URL, so it must be unique and non-empty.
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
    /// SEI's per-integration `metadata` (`[integrations.metadata]`), with the keys SEI's
    /// satellite.yml uses, so a block can be copied over as it is.
    #[serde(default)]
    pub metadata: IntegrationMetadata,
}

/// What SEI's satellite.yml keeps under an integration's `metadata`: filters that limit what
/// is ingested, and the instance's time zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationMetadata {
    /// ServiceNow encoded query limiting which incidents are ingested, e.g.
    /// `assignment_group.name=Platform^ORcategory=network`. ANDed with the fetcher's own
    /// paging conditions (into every `^NQ` group). An incident that stops matching is removed
    /// from SEI like a deleted one (see docs/fetcher.md). No `ORDERBY`: the fetcher's order
    /// is fixed by its keyset paging.
    #[serde(default)]
    pub incident_query: Option<String>,
    /// The same for change requests.
    #[serde(default)]
    pub change_request_query: Option<String>,
    /// The time zone the integration user sees the instance in (an IANA name such as
    /// `Europe/Berlin`). nowstream reads UTC values, so this converts nothing; `validate`
    /// checks that it agrees with the user's effective zone, the one ServiceNow evaluates
    /// date conditions of the two queries in.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Where these keys were read when not from the config file, e.g.
    /// `satellite file /etc/sei/satellite.yml: integrations[2].metadata`, so reports name
    /// the key where the operator wrote it. Not a configuration key.
    #[serde(skip)]
    pub origin: Option<String>,
}

/// The metadata keys that hold a filter, with the table each one limits.
pub const FILTER_KEYS: [(&str, &str); 2] = [
    ("incident_query", "incident"),
    ("change_request_query", "change_request"),
];

impl IntegrationMetadata {
    /// Where `key` of this block is written: `origin.key`, or the config file's
    /// `integrations[index].metadata.key`.
    pub fn key_path(&self, index: usize, key: &str) -> String {
        match &self.origin {
            Some(origin) => format!("{origin}.{key}"),
            None => format!("integrations[{index}].metadata.{key}"),
        }
    }

    /// The configured filter of `table` (`incident` or `change_request`); a blank one is none.
    pub fn query_for(&self, table: &str) -> Option<&str> {
        let query = match table {
            "incident" => self.incident_query.as_deref(),
            "change_request" => self.change_request_query.as_deref(),
            _ => None,
        };
        query.map(str::trim).filter(|query| !query.is_empty())
    }

    /// Every configured filter as (metadata key, table, query).
    pub fn filters(&self) -> impl Iterator<Item = (&'static str, &'static str, &str)> {
        FILTER_KEYS
            .into_iter()
            .filter_map(|(key, table)| self.query_for(table).map(|query| (key, table, query)))
    }

    /// Why the filters cannot be used, as (metadata key, message) pairs: a filter must parse
    /// as an encoded query the fetcher understands, and must not order (`ORDERBY`), since the
    /// fetcher's keyset paging needs its own order and would silently drop another.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for (key, _, query) in self.filters() {
            match nowstream_model::table_api::query::EncodedQuery::parse(query) {
                Err(error) => problems.push((key, format!("not an encoded query: {error}"))),
                Ok(parsed) if !parsed.order_by.is_empty() => problems.push((
                    key,
                    "must not contain ORDERBY/ORDERBYDESC: the fetcher pages in its own \
                     order (sys_updated_on, sys_id); remove the ordering term"
                        .to_owned(),
                )),
                Ok(_) => {}
            }
        }
        if let Some(zone) = &self.timezone
            && zone.trim().is_empty()
        {
            problems.push(("timezone", "must not be empty when given".to_owned()));
        }
        problems
    }
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
///
/// Read from [`BasicAuthKeys`]: the password may be given inline or as `password_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "BasicAuthKeys")]
pub struct BasicAuth {
    /// ServiceNow user name (`user_name`, not the display name).
    pub username: String,
    /// That user's password (from `password` or `password_file`; empty in a process whose
    /// stage does not read ServiceNow secrets, see [`SecretScope`](crate::config::SecretScope)).
    pub password: SecretString,
}

/// The keys of `[integrations.auth]` with `type = "basic"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicAuthKeys {
    /// ServiceNow user name (`user_name`, not the display name).
    username: String,
    /// That user's password.
    #[serde(default)]
    password: Option<SecretString>,
    /// A file holding the password instead (a mounted Secret); read only by the fetcher.
    #[serde(default)]
    password_file: Option<PathBuf>,
}

impl TryFrom<BasicAuthKeys> for BasicAuth {
    type Error = GivenTwice;

    fn try_from(keys: BasicAuthKeys) -> Result<Self, Self::Error> {
        let password = value_or_file("password", keys.password, keys.password_file.as_ref())?;
        Ok(Self {
            username: keys.username,
            password: password.unwrap_or_default(),
        })
    }
}

/// OAuth 2.0 client settings for an Application Registry entry in ServiceNow.
///
/// Read from [`OAuthKeys`]: `client_secret` and `password` may be given inline or as
/// `client_secret_file` and `password_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "OAuthKeys")]
pub struct OAuthConfig {
    /// Client id of the OAuth application registry entry.
    pub client_id: String,
    /// Client secret of that entry (from `client_secret` or `client_secret_file`; empty in a
    /// process whose stage does not read ServiceNow secrets).
    pub client_secret: SecretString,
    /// Which grant obtains the first access token.
    pub grant: OAuthGrant,
    /// Resource-owner user name; required by the `password` grant.
    pub username: Option<String>,
    /// Resource-owner password (from `password` or `password_file`); required by the
    /// `password` grant.
    pub password: Option<SecretString>,
    /// File holding the refresh token. Required by the `refresh_token` grant (the token
    /// is read from it) and the `authorization_code` grant (the token obtained once by
    /// the interactive flow is kept there); rotated tokens are written back so a
    /// restart does not need a new login.
    pub refresh_token_file: Option<PathBuf>,
    /// Token endpoint; defaults to `<url>/oauth_token.do`, the instance's own.
    pub token_url: Option<String>,
    /// OAuth scope requested with every token, e.g. `table_read` when the Application
    /// Registry entry limits the client to it. Absent: the instance's default scope.
    pub scope: Option<String>,
}

/// The keys of `[integrations.auth]` with `type = "oauth"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OAuthKeys {
    /// Client id of the OAuth application registry entry.
    client_id: String,
    /// Client secret of that entry.
    #[serde(default)]
    client_secret: Option<SecretString>,
    /// A file holding the client secret instead; read only by the fetcher.
    #[serde(default)]
    client_secret_file: Option<PathBuf>,
    /// Which grant obtains the first access token.
    grant: OAuthGrant,
    /// Resource-owner user name; required by the `password` grant.
    #[serde(default)]
    username: Option<String>,
    /// Resource-owner password; required by the `password` grant.
    #[serde(default)]
    password: Option<SecretString>,
    /// A file holding the resource-owner password instead; read only by the fetcher.
    #[serde(default)]
    password_file: Option<PathBuf>,
    /// File holding the refresh token (read, and rewritten on rotation, by the fetcher).
    #[serde(default)]
    refresh_token_file: Option<PathBuf>,
    /// Token endpoint; defaults to `<url>/oauth_token.do`.
    #[serde(default)]
    token_url: Option<String>,
    /// OAuth scope requested with every token.
    #[serde(default)]
    scope: Option<String>,
}

impl TryFrom<OAuthKeys> for OAuthConfig {
    type Error = GivenTwice;

    fn try_from(keys: OAuthKeys) -> Result<Self, Self::Error> {
        let client_secret = value_or_file(
            "client_secret",
            keys.client_secret,
            keys.client_secret_file.as_ref(),
        )?;
        let password = value_or_file("password", keys.password, keys.password_file.as_ref())?;
        Ok(Self {
            client_id: keys.client_id,
            client_secret: client_secret.unwrap_or_default(),
            grant: keys.grant,
            username: keys.username,
            password,
            refresh_token_file: keys.refresh_token_file,
            token_url: keys.token_url,
            scope: keys.scope,
        })
    }
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
