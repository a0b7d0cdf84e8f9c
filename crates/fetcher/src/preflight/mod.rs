//! `nowstream-fetcher validate`: SEI's "Validate connection", as a checklist per integration.
//!
//! A fetcher that starts with a wrong password, a missing role or a table it may not read fails
//! later and less clearly (a unit retrying 403s, users silently missing from SEI). Preflight runs
//! the same requests the fetcher will make, one concern at a time, and says for each failure
//! what to change. The checks build on each other — URL, name resolution, TCP, TLS/HTTP,
//! authentication, the integration user and its roles, read access per table — and a failed
//! step skips the steps that depend on it, so the first failure is the one to fix.
//!
//! Every message is built from what the checks learned, never from configured secrets, and is
//! scrubbed of them once more before it is returned (defence in depth: ServiceNow or a proxy
//! could echo a request back).
//!
//! One module per concern: `report` is the checklist model and `render` its text; the
//! checks are in `network` (URL to HTTP, no credentials), `auth`, `roles`, `time_zone` and
//! `tables`; `scrub` cleans the finished report. This module runs them in dependency order.

use std::time::{Duration, SystemTime};

use futures::future::join_all;
use nowstream_servicenow::row::Row;

use nowstream_runtime::{AuthConfig, Config, FetcherConfig, IntegrationConfig, OAuthGrant};

use nowstream_model::ExclusionPolicy;

use crate::instance;
use crate::oauth_login::without_stored_token;

mod auth;
mod filters;
mod network;
mod render;
mod report;
mod roles;
mod scrub;
mod tables;
mod time_zone;

pub use report::{Check, CheckKind, IntegrationReport, Outcome, Report};
pub use roles::{ADVISED_ROLE, REQUIRED_ROLES};
pub use tables::{FIELD_LIST_TABLES, TABLES};

use auth::{Identity, check_auth, configured_user, preflight_client};
use network::{Target, check_clock, check_connect, check_dns, check_http, check_url};
use roles::check_roles;
use scrub::{configured_secrets, scrub};
use tables::{check_mapped_fields, check_table};

/// Clock difference above which the clock check warns. Timestamps in queries come from
/// ServiceNow, but `fetched_at`, token expiry and `backfill_since` use this host's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Bound on name resolution and on each TCP connection attempt.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on one preflight HTTP request: a check that hangs helps nobody.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Retries per preflight request: one absorbs a blip; more only delays the answer.
const REQUEST_RETRIES: u32 = 1;

/// Longest rate-limit wait preflight sits through.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);

/// Runs the checklist for every integration in `config` (concurrently; the report keeps the
/// configuration's order).
pub async fn validate(config: &Config) -> Report {
    let reports = join_all(
        config
            .integrations
            .iter()
            .enumerate()
            .map(|(index, integration)| validate_integration(integration, index, &config.fetcher)),
    )
    .await;
    Report {
        integrations: reports,
    }
}

/// Runs the checklist for one integration; `index` is its place in `integrations`, for naming
/// its keys.
pub async fn validate_integration(
    integration: &IntegrationConfig,
    index: usize,
    fetcher: &FetcherConfig,
) -> IntegrationReport {
    let mut checks = Vec::new();
    run_checks(integration, index, fetcher, &mut checks).await;
    // Filter checks need an authenticated client; wherever the run stopped before them,
    // they are listed as skipped like every other check after authentication.
    for kind in filters::filter_kinds(&integration.metadata) {
        if !checks.iter().any(|check| check.kind == kind) {
            checks.push(Check::skipped(kind, "skipped: an earlier check failed"));
        }
    }
    let secrets = configured_secrets(integration);
    for check in &mut checks {
        check.message = scrub(&check.message, &secrets);
        check.hint = check.hint.as_deref().map(|hint| scrub(hint, &secrets));
    }
    IntegrationReport {
        integration_id: integration.id.clone(),
        url: scrub(&integration.url, &secrets),
        checks,
    }
}

/// The checks in dependency order; on a failure, the rest is recorded as skipped.
async fn run_checks(
    integration: &IntegrationConfig,
    index: usize,
    fetcher: &FetcherConfig,
    checks: &mut Vec<Check>,
) {
    const AFTER_URL: &[CheckKind] = &[
        CheckKind::Dns,
        CheckKind::Connect,
        CheckKind::Http,
        CheckKind::Clock,
    ];
    let Some(url) = record(checks, check_url(integration)) else {
        skip_all(checks, AFTER_URL, "the URL is not usable");
        skip_all(checks, &AFTER_AUTH_KINDS, "the URL is not usable");
        return;
    };
    // URL and proxy do not depend on the credentials; reading them from a copy without the
    // stored token lets the network checks run when the token file is missing.
    let network = match instance::client_config(&without_stored_token(integration), fetcher) {
        Ok(config) => config,
        Err(error) => {
            checks.push(Check::fail(
                CheckKind::Dns,
                format!("the connection settings are invalid: {error}"),
                "fix the integration's URL or [fetcher] https_proxy (or HTTPS_PROXY)",
            ));
            skip_all(
                checks,
                &AFTER_URL[1..],
                "the connection settings are invalid",
            );
            skip_all(
                checks,
                &AFTER_AUTH_KINDS,
                "the connection settings are invalid",
            );
            return;
        }
    };
    let target = Target::of(&url, network.proxy.as_ref());
    let Some(addrs) = record(checks, check_dns(&target).await) else {
        skip_all(checks, &AFTER_URL[1..], "the host name does not resolve");
        skip_all(checks, &AFTER_AUTH_KINDS, "the host name does not resolve");
        return;
    };
    if record(checks, check_connect(&target, &addrs).await).is_none() {
        skip_all(checks, &AFTER_URL[2..], "no TCP connection");
        skip_all(checks, &AFTER_AUTH_KINDS, "no TCP connection");
        return;
    }
    let (http, server_date) = check_http(&network, &url).await;
    let reachable = http.outcome != Outcome::Fail;
    checks.push(http);
    checks.push(check_clock(server_date, SystemTime::now()));
    if !reachable {
        skip_all(
            checks,
            &AFTER_AUTH_KINDS,
            "the instance does not answer HTTP",
        );
        return;
    }
    check_access(integration, index, fetcher, checks).await;
}

/// Every check after the network ones, in order.
const AFTER_AUTH_KINDS: [CheckKind; 13] = [
    CheckKind::Auth,
    CheckKind::User,
    CheckKind::Roles,
    CheckKind::AdvisedRole,
    CheckKind::TimeZone,
    CheckKind::TableRead(TABLES[0]),
    CheckKind::TableRead(TABLES[1]),
    CheckKind::TableRead(TABLES[2]),
    CheckKind::TableRead(TABLES[3]),
    CheckKind::TableRead(TABLES[4]),
    CheckKind::TableRead(TABLES[5]),
    CheckKind::MappedFields(FIELD_LIST_TABLES[0]),
    CheckKind::MappedFields(FIELD_LIST_TABLES[1]),
];

/// Pushes the check and hands back what it found, or `None` when it failed.
fn record<T>(checks: &mut Vec<Check>, (check, found): (Check, Option<T>)) -> Option<T> {
    let failed = check.outcome == Outcome::Fail;
    checks.push(check);
    if failed { None } else { found }
}

fn skip_all(checks: &mut Vec<Check>, kinds: &[CheckKind], because: &str) {
    checks.extend(
        kinds
            .iter()
            .map(|kind| Check::skipped(*kind, format!("skipped: {because}"))),
    );
}

/// Authentication, user, roles and tables: everything that needs the credentials.
async fn check_access(
    integration: &IntegrationConfig,
    index: usize,
    fetcher: &FetcherConfig,
    checks: &mut Vec<Check>,
) {
    let client = match preflight_client(integration, fetcher) {
        Ok(client) => client,
        Err(reason) => {
            let hint = match &integration.auth {
                AuthConfig::Oauth(oauth)
                    if matches!(
                        oauth.grant,
                        OAuthGrant::AuthorizationCode | OAuthGrant::RefreshToken
                    ) =>
                {
                    format!(
                        "run `nowstream-fetcher oauth login --integration {}` to store a \
                         refresh token",
                        integration.id
                    )
                }
                _ => "fix the integration's auth section".to_owned(),
            };
            checks.push(Check::fail(CheckKind::Auth, reason, hint));
            skip_all(checks, &AFTER_AUTH_KINDS[1..], "no usable credentials");
            return;
        }
    };
    let user = configured_user(integration);
    let (auth, identity) = check_auth(&client, integration, user).await;
    let authenticated = auth.outcome != Outcome::Fail;
    checks.push(auth);
    if !authenticated {
        skip_all(checks, &AFTER_AUTH_KINDS[1..], "authentication failed");
        return;
    }
    let user_sys_id = match identity {
        Identity::Found {
            user_name,
            sys_id,
            time_zone,
        } => {
            checks.push(Check::pass(
                CheckKind::User,
                format!("{user_name} has sys_user record {sys_id}"),
            ));
            Some((user_name, sys_id, time_zone))
        }
        Identity::Unknown(check) => {
            checks.push(check);
            None
        }
    };
    match user_sys_id {
        Some((user_name, sys_id, time_zone)) => {
            let (roles, advised) = check_roles(&client, &user_name, &sys_id).await;
            checks.push(roles);
            checks.push(advised);
            let configured = integration.metadata.timezone.as_deref();
            checks.push(
                time_zone::check(&client, &user_name, time_zone.as_deref(), configured).await,
            );
        }
        None => {
            let note = format!(
                "skipped: the integration user is not known; make sure it has {} (and {ADVISED_ROLE})",
                REQUIRED_ROLES.join(", ")
            );
            checks.push(Check::skipped(CheckKind::Roles, note.clone()));
            checks.push(Check::skipped(
                CheckKind::AdvisedRole,
                "skipped: the integration user is not known",
            ));
            checks.push(Check::skipped(
                CheckKind::TimeZone,
                "skipped: the integration user is not known; make sure its time zone is UTC",
            ));
        }
    }
    let reads = join_all(
        TABLES
            .iter()
            .map(|table| check_table(&client, table, fetcher)),
    )
    .await;
    checks.extend(reads);
    let excluded = ExclusionPolicy::new(&integration.exclude_fields).ok();
    let mapped = join_all(
        FIELD_LIST_TABLES
            .iter()
            .map(|table| check_mapped_fields(&client, table, excluded.as_ref())),
    )
    .await;
    checks.extend(mapped);
    checks.extend(filters::check_filters(&client, &integration.metadata, index).await);
}

/// The stored value of a field, never its display value: preflight compares it with names and
/// time zones, where a label read as a value would be wrong (see `nowstream_model::table_api`).
fn field_value(record: &Row, name: &str) -> Option<String> {
    record.stored_value(name)
}
