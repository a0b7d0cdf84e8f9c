//! Authentication: a client with the integration's credentials, and the first authenticated
//! request, which also finds the integration user whose roles and time zone are checked next.

use nowstream_model::table_api::query::SYS_ID;
use nowstream_model::table_api::tables;
use nowstream_runtime::{AuthConfig, FetcherConfig, IntegrationConfig, OAuthGrant};
use nowstream_servicenow::client::{Client, ClientError, ListRequest};

use super::report::{Check, CheckKind};
use super::{MAX_RATE_LIMIT_WAIT, REQUEST_RETRIES, REQUEST_TIMEOUT, field_value, time_zone};
use crate::instance;

/// Who the credentials act as, when the configuration says.
pub(super) fn configured_user(integration: &IntegrationConfig) -> Option<&str> {
    match &integration.auth {
        AuthConfig::Basic(basic) => Some(basic.username.as_str()),
        AuthConfig::Oauth(oauth) => match oauth.grant {
            OAuthGrant::Password => oauth.username.as_deref(),
            _ => None,
        },
    }
}

fn auth_description(integration: &IntegrationConfig) -> String {
    match &integration.auth {
        AuthConfig::Basic(basic) => format!("basic authentication as {}", basic.username),
        AuthConfig::Oauth(oauth) => format!(
            "OAuth client {} with the {} grant",
            oauth.client_id,
            grant_name(oauth.grant)
        ),
    }
}

fn grant_name(grant: OAuthGrant) -> &'static str {
    match grant {
        OAuthGrant::Password => "password",
        OAuthGrant::ClientCredentials => "client_credentials",
        OAuthGrant::RefreshToken => "refresh_token",
        OAuthGrant::AuthorizationCode => "authorization_code",
    }
}

/// A client like the fetcher's, but impatient: preflight should answer in seconds.
pub(super) fn preflight_client(
    integration: &IntegrationConfig,
    fetcher: &FetcherConfig,
) -> Result<Client, String> {
    let mut config = instance::client_config(integration, fetcher).map_err(|e| e.to_string())?;
    config.request_timeout = config.request_timeout.min(REQUEST_TIMEOUT);
    config.max_retries = config.max_retries.min(REQUEST_RETRIES);
    config.max_rate_limit_wait = config.max_rate_limit_wait.min(MAX_RATE_LIMIT_WAIT);
    config.max_backoff = config.max_backoff.min(MAX_RATE_LIMIT_WAIT);
    config.initial_backoff = config.initial_backoff.min(config.max_backoff);
    Client::new(config).map_err(|e| format!("the client cannot be set up: {e}"))
}

/// What the authentication request learned about the integration user.
pub(super) enum Identity {
    Found {
        user_name: String,
        sys_id: String,
        /// `sys_user.time_zone`; `None` when empty (the system default applies).
        time_zone: Option<String>,
    },
    /// Not found; the check says why.
    Unknown(Check),
}

/// The first authenticated request looks the integration user up in `sys_user`, so one
/// request proves the credentials and finds the user whose roles are checked next.
pub(super) async fn check_auth(
    client: &Client,
    integration: &IntegrationConfig,
    user: Option<&str>,
) -> (Check, Identity) {
    let how = auth_description(integration);
    // ServiceNow has no escape for `^` in an encoded query; such a name cannot be looked up.
    let lookup_name = user.filter(|name| !name.contains('^'));
    let query = match lookup_name {
        Some(name) => format!("user_name={name}"),
        // For OAuth grants that name no user, ServiceNow evaluates this to the token's user;
        // an instance (or the simulator) that does not simply returns no row.
        None => "sys_id=javascript:gs.getUserID()".to_owned(),
    };
    let request = ListRequest {
        table: tables::SYS_USER.to_owned(),
        query,
        limit: 1,
        offset: 0,
        fields: Some(vec![
            SYS_ID.to_owned(),
            "user_name".to_owned(),
            time_zone::USER_FIELD.to_owned(),
        ]),
    };
    let user_kind = CheckKind::User;
    match client.list_page(&request).await {
        Ok(page) => {
            let auth = Check::pass(CheckKind::Auth, format!("{how}: credentials accepted"));
            let found = page.records.first().and_then(|record| {
                Some((
                    field_value(record, "user_name")?,
                    field_value(record, SYS_ID)?,
                    field_value(record, time_zone::USER_FIELD),
                ))
            });
            let identity = match (found, user) {
                (Some((user_name, sys_id, time_zone)), _) => Identity::Found {
                    user_name,
                    sys_id,
                    time_zone,
                },
                (None, Some(name)) if name.contains('^') => Identity::Unknown(Check::skipped(
                    user_kind,
                    format!("skipped: {name:?} contains `^` and cannot be looked up"),
                )),
                (None, Some(name)) => Identity::Unknown(Check::warn(
                    user_kind,
                    format!("user_name={name} is not visible in sys_user"),
                    "auth.username must be the login name (user_name), not the display name; \
                     if it is, an ACL hides the user's own sys_user record",
                )),
                (None, None) => Identity::Unknown(Check::skipped(
                    user_kind,
                    "skipped: this OAuth grant names no user and the instance did not say whose \
                     token it is",
                )),
            };
            (auth, identity)
        }
        Err(ClientError::Forbidden { .. }) => (
            Check::pass(
                CheckKind::Auth,
                format!("{how}: credentials accepted (reading sys_user was refused)"),
            ),
            Identity::Unknown(Check::skipped(
                user_kind,
                "skipped: sys_user cannot be read (see the sys_user table check)",
            )),
        ),
        Err(error) => (
            auth_failure(integration, &how, &error),
            Identity::Unknown(Check::skipped(user_kind, "skipped: authentication failed")),
        ),
    }
}

fn auth_failure(integration: &IntegrationConfig, how: &str, error: &ClientError) -> Check {
    let kind = CheckKind::Auth;
    match (error, &integration.auth) {
        (ClientError::Unauthorized { .. }, AuthConfig::Basic(basic)) => Check::fail(
            kind,
            format!(
                "ServiceNow rejected the user name or password for {} (HTTP 401)",
                basic.username
            ),
            "check auth.username (the login name) and auth.password (SEI's api_key in \
             satellite.yml); the account must be active, not locked out, and not waiting for \
             a password reset",
        ),
        (ClientError::Unauthorized { .. }, AuthConfig::Oauth(_)) => Check::fail(
            kind,
            format!("{how}: the instance issued a token but the Table API refused it (HTTP 401)"),
            "check that the OAuth entry's scope allows the Table API (auth.scope) and that the \
             user behind the token is active",
        ),
        (
            ClientError::TokenRejected {
                grant,
                status,
                message,
                ..
            },
            AuthConfig::Oauth(oauth),
        ) => {
            let hint = match oauth.grant {
                OAuthGrant::Password => {
                    "check auth.client_id and auth.client_secret against the Application \
                     Registry, and auth.username / auth.password"
                        .to_owned()
                }
                OAuthGrant::ClientCredentials => {
                    "check auth.client_id and auth.client_secret, and that the Application \
                     Registry entry has an OAuth application user (client_credentials grant)"
                        .to_owned()
                }
                OAuthGrant::RefreshToken | OAuthGrant::AuthorizationCode => format!(
                    "check auth.client_id and auth.client_secret; if they are right, the \
                     refresh token expired or was revoked: run `nowstream-fetcher oauth login \
                     --integration {}`",
                    integration.id
                ),
            };
            Check::fail(
                kind,
                format!(
                    "the OAuth token endpoint refused the {grant} grant (HTTP {status}): {message}"
                ),
                hint,
            )
        }
        (error, _) => Check::fail(
            kind,
            format!("{how}: the first authenticated request failed: {error}"),
            "see the error; a transient failure may pass on the next run",
        ),
    }
}
