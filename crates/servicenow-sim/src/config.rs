//! Simulator configuration: data to generate, accounts, OAuth clients, token lifetimes, faults.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use nowstream_model::table_api::query::EncodedQuery;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::faults::FaultRule;
use crate::generator::GeneratorConfig;
use crate::schema;

/// User name of the default integration account (roles itil, personalize_choices,
/// personalize_dictionary, user_admin).
pub const DEFAULT_INTEGRATION_USER: &str = "nowstream.integration";
/// Password of the default integration account (a test fixture, not a secret).
pub const DEFAULT_INTEGRATION_PASSWORD: &str = "integration-password";
/// User name of the default administrator account.
pub const DEFAULT_ADMIN_USER: &str = "admin";
/// Password of the default administrator account.
pub const DEFAULT_ADMIN_PASSWORD: &str = "admin-password";
/// Default OAuth client id.
pub const DEFAULT_CLIENT_ID: &str = "nowstream-client";
/// Default OAuth client secret (a test fixture, not a secret).
pub const DEFAULT_CLIENT_SECRET: &str = "nowstream-client-secret";
/// Roles the project's preflight expects of the integration account: SEI's documented list.
pub const INTEGRATION_ROLES: [&str; 4] = [
    "itil",
    "personalize_choices",
    "personalize_dictionary",
    "user_admin",
];
/// A custom role with a read ACL on `sys_audit_delete`, as an administrator creates it so a
/// non-admin integration user can read deletions (none of [`INTEGRATION_ROLES`] grants that on
/// a default instance). The default integration account holds it; a [`SimUser::sei_documented`]
/// account does not, and gets 403 on `sys_audit_delete`.
pub const AUDIT_READ_ROLE: &str = "x_nowstream_audit_reader";
/// Time zone of generated users and of the configured accounts unless they say otherwise.
pub const DEFAULT_TIME_ZONE: &str = "America/New_York";

/// Everything the simulator needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Address to listen on; port 0 lets the OS pick (what tests want).
    pub listen: SocketAddr,
    /// Base URL used in reference links and `Link` headers, as a real instance uses its own
    /// host name; defaults to `http://<bound address>`.
    pub instance_url: Option<String>,
    /// What data to generate.
    pub data: GeneratorConfig,
    /// Lifetime of OAuth access tokens (ServiceNow's default is 1800 s).
    pub access_token_lifetime_secs: u64,
    /// Lifetime of OAuth refresh tokens (ServiceNow's default is 100 days).
    pub refresh_token_lifetime_secs: u64,
    /// Answer each refresh-token grant with a new refresh token and revoke the presented one,
    /// as OAuth providers following RFC 9700 / OAuth 2.1 do. Off by default: ServiceNow's own
    /// `/oauth_token.do` returns the same refresh token until its lifespan ends.
    pub rotate_refresh_tokens: bool,
    /// Accounts that can authenticate; each also gets a `sys_user` row and its role rows.
    pub users: Vec<SimUser>,
    /// Registered OAuth clients (the instance's "Application Registry").
    pub oauth_clients: Vec<OAuthClient>,
    /// Faults active from the start (more can be set at run time through `/sim/faults`).
    pub faults: Vec<FaultRule>,
    /// UTC offset of every user's time zone, in minutes: display values of date-times are
    /// rendered in it, so a client that parses display values as UTC gets caught.
    pub display_utc_offset_minutes: i32,
    /// `sysparm_limit` when the request gives none (ServiceNow: 10000).
    pub default_limit: usize,
    /// Milliseconds every page (a Table API list request for more than one row) waits before
    /// it is answered, as a real instance takes about a second per 1,000-row page: makes the
    /// speed-up of concurrent scans (a sliced backfill) visible. One-row count probes are not
    /// delayed. 0: answer at once. Changeable at run time with
    /// [`crate::RunningSim::set_page_delay`].
    pub page_delay_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            instance_url: None,
            data: GeneratorConfig::default(),
            access_token_lifetime_secs: 1800,
            refresh_token_lifetime_secs: 100 * 24 * 3600,
            rotate_refresh_tokens: false,
            users: vec![SimUser::integration(), SimUser::admin()],
            oauth_clients: vec![OAuthClient::default_client()],
            faults: Vec::new(),
            display_utc_offset_minutes: -300,
            default_limit: 10_000,
            page_delay_ms: 0,
        }
    }
}

/// An account that can log in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimUser {
    /// `sys_user.user_name`, the login name.
    pub user_name: String,
    /// Password for basic auth and the OAuth password grant.
    pub password: SecretString,
    /// `sys_user.name` (display name).
    #[serde(default)]
    pub name: Option<String>,
    /// Role names granted through `sys_user_has_role`; `admin` also bypasses table denials.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Tables this user may not read: list and record reads answer 403, as a table ACL would.
    #[serde(default)]
    pub denied_tables: BTreeSet<String>,
    /// Per table, an encoded query selecting rows a row ACL hides from this user. Hidden rows
    /// are removed *after* limit/offset and still count in `X-Total-Count`, as on a real
    /// instance, so pages come back short.
    #[serde(default)]
    pub hidden_rows: BTreeMap<String, String>,
    /// `sys_user.time_zone` of the account's user record (an IANA name such as `UTC` or
    /// `Europe/Berlin`); empty means "the system default" (`glide.sys.default.tz`), as on a
    /// real instance.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    DEFAULT_TIME_ZONE.to_owned()
}

impl SimUser {
    /// An account with a password and roles, no restrictions.
    pub fn new(user_name: &str, password: &str, roles: &[&str]) -> Self {
        Self {
            user_name: user_name.to_owned(),
            password: SecretString::from(password.to_owned()),
            name: None,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            denied_tables: BTreeSet::new(),
            hidden_rows: BTreeMap::new(),
            time_zone: default_time_zone(),
        }
    }

    /// The default integration account: SEI's documented roles plus [`AUDIT_READ_ROLE`].
    pub fn integration() -> Self {
        let mut roles = INTEGRATION_ROLES.to_vec();
        roles.push(AUDIT_READ_ROLE);
        let mut user = Self::new(
            DEFAULT_INTEGRATION_USER,
            DEFAULT_INTEGRATION_PASSWORD,
            &roles,
        );
        user.name = Some("NowStream Integration".to_owned());
        user
    }

    /// An account with exactly SEI's documented roles ([`INTEGRATION_ROLES`]) and nothing
    /// else: on a default instance (and here) it may not read `sys_audit_delete`.
    pub fn sei_documented(user_name: &str, password: &str) -> Self {
        Self::new(user_name, password, &INTEGRATION_ROLES)
    }

    /// The default administrator.
    pub fn admin() -> Self {
        let mut user = Self::new(DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD, &["admin"]);
        user.name = Some("System Administrator".to_owned());
        user
    }

    /// Display name, derived from the login name when not configured.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.user_name.clone())
    }

    pub(crate) fn password_matches(&self, candidate: &str) -> bool {
        self.password.expose_secret() == candidate
    }
}

/// A registered OAuth client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: SecretString,
    /// Allowed `redirect_uri`s for the authorization-code flow; empty allows any.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// User the `client_credentials` grant acts as (ServiceNow's "OAuth application user");
    /// `None` refuses that grant for this client.
    #[serde(default)]
    pub client_credentials_user: Option<String>,
    /// User that `/oauth_auth.do` approves as when the request carries no basic auth.
    #[serde(default)]
    pub auto_approve_user: Option<String>,
}

impl OAuthClient {
    /// The default client, acting as the integration user for `client_credentials` and
    /// auto-approved authorization codes.
    pub fn default_client() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: SecretString::from(DEFAULT_CLIENT_SECRET.to_owned()),
            redirect_uris: Vec::new(),
            client_credentials_user: Some(DEFAULT_INTEGRATION_USER.to_owned()),
            auto_approve_user: Some(DEFAULT_INTEGRATION_USER.to_owned()),
        }
    }

    pub(crate) fn secret_matches(&self, candidate: &str) -> bool {
        self.client_secret.expose_secret() == candidate
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid simulator config `{field}`: {reason}")]
pub struct ConfigError {
    /// Dotted path of the offending setting.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl SimConfig {
    /// Check the settings that span fields, once, before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.access_token_lifetime_secs == 0 {
            return Err(invalid("access_token_lifetime_secs", "must be at least 1"));
        }
        if self.refresh_token_lifetime_secs == 0 {
            return Err(invalid("refresh_token_lifetime_secs", "must be at least 1"));
        }
        if self.default_limit == 0 {
            return Err(invalid("default_limit", "must be at least 1"));
        }
        if self.display_utc_offset_minutes.abs() >= 24 * 60 {
            return Err(invalid(
                "display_utc_offset_minutes",
                "must be within ±1439 minutes",
            ));
        }
        if let Some(url) = &self.instance_url {
            url::Url::parse(url)
                .map_err(|e| invalid("instance_url", format!("{url:?} is not a URL: {e}")))?;
        }
        self.data.validate()?;
        let served: BTreeSet<&str> = schema::all_tables().iter().map(|s| s.name).collect();
        let mut names = BTreeSet::new();
        for (i, user) in self.users.iter().enumerate() {
            let at = |f: &str| format!("users[{i}].{f}");
            if user.user_name.trim().is_empty() {
                return Err(invalid(at("user_name"), "must not be empty"));
            }
            if !names.insert(user.user_name.as_str()) {
                return Err(invalid(
                    at("user_name"),
                    format!("{:?} is configured twice", user.user_name),
                ));
            }
            for table in user.denied_tables.iter().chain(user.hidden_rows.keys()) {
                if !served.contains(table.as_str()) {
                    return Err(invalid(
                        at("denied_tables/hidden_rows"),
                        format!("{table:?} is not a served table"),
                    ));
                }
            }
            for (table, query) in &user.hidden_rows {
                EncodedQuery::parse(query).map_err(|e| {
                    invalid(
                        at(&format!("hidden_rows.{table}")),
                        format!("bad encoded query: {e}"),
                    )
                })?;
            }
        }
        let mut client_ids = BTreeSet::new();
        for (i, client) in self.oauth_clients.iter().enumerate() {
            let at = |f: &str| format!("oauth_clients[{i}].{f}");
            if !client_ids.insert(client.client_id.as_str()) {
                return Err(invalid(
                    at("client_id"),
                    format!("{:?} is configured twice", client.client_id),
                ));
            }
            for (field, user) in [
                ("client_credentials_user", &client.client_credentials_user),
                ("auto_approve_user", &client.auto_approve_user),
            ] {
                match user {
                    Some(user) if !names.contains(user.as_str()) => {
                        return Err(invalid(
                            at(field),
                            format!("{user:?} is not a configured user"),
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(SimConfig::default().validate(), Ok(()));
    }

    #[test]
    fn duplicate_users_are_rejected_naming_the_field() {
        let mut config = SimConfig::default();
        config.users.push(SimUser::admin());
        let err = config.validate().unwrap_err();
        assert_eq!(err.field, "users[2].user_name");
    }

    #[test]
    fn unknown_keys_in_a_config_file_are_errors() {
        let err = serde_json::from_str::<SimConfig>(r#"{"default_limt": 5}"#).unwrap_err();
        assert!(err.to_string().contains("default_limt"), "{err}");
    }

    #[test]
    fn user_debug_output_hides_the_password() {
        let text = format!("{:?}", SimUser::integration());
        assert!(!text.contains(DEFAULT_INTEGRATION_PASSWORD));
    }
}
