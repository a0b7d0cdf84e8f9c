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

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use reqwest::header::{DATE, LOCATION};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use url::Url;

use nowstream_model::error_chain;
use nowstream_runtime::{AuthConfig, Config, FetcherConfig, IntegrationConfig, OAuthGrant};
use nowstream_servicenow::client::{Client, ClientConfig, ClientError, ListRequest, TablePage};
use nowstream_servicenow::query::SYS_ID;
use nowstream_servicenow::table::tables;

use nowstream_normalizer::ExclusionPolicy;

use crate::oauth_login::without_stored_token;
use crate::{fields, instance};

mod time_zone;

/// Roles SEI requires of the integration user: `itil` reads incidents and change requests,
/// the `personalize_*` roles read choice lists and field definitions.
pub const REQUIRED_ROLES: [&str; 3] = ["itil", "personalize_choices", "personalize_dictionary"];

/// Without this role ACLs usually hide part of `sys_user`, so SEI misses some users.
pub const ADVISED_ROLE: &str = "user_admin";

/// Every table the fetcher reads.
pub const TABLES: [&str; 6] = [
    tables::INCIDENT,
    tables::CHANGE_REQUEST,
    tables::SYS_USER,
    tables::SYS_DICTIONARY,
    tables::SYS_AUDIT_DELETE,
    tables::SYS_CHOICE,
];

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

/// Role with which every ACL passes.
const ADMIN_ROLE: &str = "admin";

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Pass,
    /// Works, but something will be missing or may break later.
    Warn,
    /// The fetcher cannot work like this.
    Fail,
    /// Not run, because an earlier step failed or it does not apply.
    Skipped,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "SKIP",
        }
    }
}

/// What a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// The instance URL is well formed and uses https (or http with `allow_http`).
    Url,
    /// The instance's (or proxy's) host name resolves.
    Dns,
    /// A TCP connection to it succeeds.
    Connect,
    /// An unauthenticated request gets an HTTP answer (exercising TLS for https).
    Http,
    /// ServiceNow's clock (the `Date` header) agrees with this host's.
    Clock,
    /// The credentials are accepted.
    Auth,
    /// The integration user's `sys_user` row is found.
    User,
    /// The user has [`REQUIRED_ROLES`].
    Roles,
    /// The user has [`ADVISED_ROLE`].
    AdvisedRole,
    /// The user's time zone is UTC/GMT.
    TimeZone,
    /// The user can read this table.
    TableRead(&'static str),
    /// `sys_dictionary` shows every field the normalizer maps for this table.
    MappedFields(&'static str),
}

impl CheckKind {
    /// The checklist label.
    pub fn title(&self) -> String {
        match self {
            CheckKind::Url => "URL".to_owned(),
            CheckKind::Dns => "DNS".to_owned(),
            CheckKind::Connect => "TCP connect".to_owned(),
            CheckKind::Http => "TLS / HTTP".to_owned(),
            CheckKind::Clock => "Clock".to_owned(),
            CheckKind::Auth => "Authentication".to_owned(),
            CheckKind::User => "Integration user".to_owned(),
            CheckKind::Roles => "Required roles".to_owned(),
            CheckKind::AdvisedRole => format!("Role {ADVISED_ROLE}"),
            CheckKind::TimeZone => "Time zone".to_owned(),
            CheckKind::TableRead(table) => format!("Read {table}"),
            CheckKind::MappedFields(table) => format!("Fields {table}"),
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub outcome: Outcome,
    /// What was found.
    pub message: String,
    /// What to change, for warnings and failures.
    pub hint: Option<String>,
}

impl Check {
    fn new(kind: CheckKind, outcome: Outcome, message: impl Into<String>) -> Self {
        Check {
            kind,
            outcome,
            message: message.into(),
            hint: None,
        }
    }

    fn pass(kind: CheckKind, message: impl Into<String>) -> Self {
        Self::new(kind, Outcome::Pass, message)
    }

    fn warn(kind: CheckKind, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(kind, Outcome::Warn, message).hint(hint)
    }

    fn fail(kind: CheckKind, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(kind, Outcome::Fail, message).hint(hint)
    }

    fn skipped(kind: CheckKind, message: impl Into<String>) -> Self {
        Self::new(kind, Outcome::Skipped, message)
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The checklist of one integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationReport {
    pub integration_id: String,
    pub url: String,
    pub checks: Vec<Check>,
}

impl IntegrationReport {
    /// The check of `kind`, if it is on the list.
    pub fn check(&self, kind: CheckKind) -> Option<&Check> {
        self.checks.iter().find(|c| c.kind == kind)
    }

    /// No check failed (warnings are fine).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.checks.iter().filter(|c| c.outcome == outcome).count()
    }
}

/// The result of `validate` over every configured integration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub integrations: Vec<IntegrationReport>,
}

impl Report {
    /// Exit-code policy: true (exit 0) when at least one integration was checked and no check
    /// failed; warnings do not fail the run.
    pub fn passed(&self) -> bool {
        !self.integrations.is_empty() && self.integrations.iter().all(IntegrationReport::passed)
    }

    /// The report of one integration.
    pub fn integration(&self, integration_id: &str) -> Option<&IntegrationReport> {
        self.integrations
            .iter()
            .find(|r| r.integration_id == integration_id)
    }

    /// The checklist as text for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.integrations.is_empty() {
            out.push_str("No integrations are configured: nothing to validate.\n");
            return out;
        }
        for report in &self.integrations {
            let _ = writeln!(
                out,
                "Integration {} ({})",
                report.integration_id, report.url
            );
            for check in &report.checks {
                let _ = writeln!(
                    out,
                    "  [{}] {:<22} {}",
                    check.outcome.label(),
                    check.kind.title(),
                    check.message
                );
                if let Some(hint) = &check.hint {
                    let _ = writeln!(out, "         {:<22} fix: {hint}", "");
                }
            }
            out.push('\n');
        }
        let count = |outcome| {
            self.integrations
                .iter()
                .map(|r| r.count(outcome))
                .sum::<usize>()
        };
        let (failed, warned) = (count(Outcome::Fail), count(Outcome::Warn));
        let _ = if self.passed() && warned == 0 {
            writeln!(out, "Result: all checks passed.")
        } else if self.passed() {
            writeln!(out, "Result: passed with {warned} warning(s).")
        } else {
            writeln!(
                out,
                "Result: FAILED: {failed} check(s) failed, {warned} warning(s)."
            )
        };
        out
    }
}

/// Runs the checklist for every integration in `config` (concurrently; the report keeps the
/// configuration's order).
pub async fn validate(config: &Config) -> Report {
    let reports = join_all(
        config
            .integrations
            .iter()
            .map(|integration| validate_integration(integration, &config.fetcher)),
    )
    .await;
    Report {
        integrations: reports,
    }
}

/// Runs the checklist for one integration.
pub async fn validate_integration(
    integration: &IntegrationConfig,
    fetcher: &FetcherConfig,
) -> IntegrationReport {
    let mut checks = Vec::new();
    run_checks(integration, fetcher, &mut checks).await;
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
    check_access(integration, fetcher, checks).await;
}

/// Tables whose field list is built from `sys_dictionary` (see [`crate::fields`]).
pub const FIELD_LIST_TABLES: [&str; 2] = [tables::INCIDENT, tables::CHANGE_REQUEST];

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

/// Well-formed, https (or http with `allow_http`), a host, nothing that would leak or confuse.
fn check_url(integration: &IntegrationConfig) -> (Check, Option<Url>) {
    let kind = CheckKind::Url;
    let shape = "give the instance base URL, e.g. https://acme.service-now.com";
    let url = match Url::parse(integration.url.trim()) {
        Ok(url) => url,
        Err(error) => {
            return (
                Check::fail(
                    kind,
                    format!("{:?} is not a URL: {error}", integration.url),
                    shape,
                ),
                None,
            );
        }
    };
    let problem = match url.scheme() {
        "https" => None,
        "http" if integration.allow_http => None,
        "http" => Some(
            "uses plain http, which would send the credentials unencrypted; use https \
             (allow_http = true is meant for the simulator and local tests only)"
                .to_owned(),
        ),
        other => Some(format!("has scheme {other:?}; {shape}")),
    }
    .or_else(|| {
        url.host_str()
            .filter(|host| !host.is_empty())
            .is_none()
            .then(|| format!("has no host name; {shape}"))
    })
    .or_else(|| {
        (!url.username().is_empty() || url.password().is_some()).then(|| {
            "carries credentials; put them in the auth section instead of the URL".to_owned()
        })
    })
    .or_else(|| {
        (url.query().is_some() || url.fragment().is_some())
            .then(|| format!("has a query or fragment; {shape}"))
    });
    if let Some(problem) = problem {
        // The URL is shown without any user info, which might hold a password.
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return (
            Check::fail(kind, format!("{shown} {problem}"), "correct `url`"),
            None,
        );
    }
    let message = if url.scheme() == "https" {
        format!("{url} is a well-formed https URL")
    } else {
        format!("{url} is a well-formed URL (plain http allowed by allow_http)")
    };
    (Check::pass(kind, message), Some(url))
}

/// Where TCP connections go: the instance, or the proxy when one is configured.
struct Target {
    host: String,
    port: u16,
    via_proxy: bool,
}

impl Target {
    fn of(instance: &Url, proxy: Option<&Url>) -> Target {
        let url = proxy.unwrap_or(instance);
        Target {
            host: url
                .host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: url.port_or_known_default().unwrap_or(443),
            via_proxy: proxy.is_some(),
        }
    }

    fn describe(&self) -> String {
        let role = if self.via_proxy { "proxy " } else { "" };
        format!("{role}{}:{}", self.host, self.port)
    }
}

async fn check_dns(target: &Target) -> (Check, Option<Vec<SocketAddr>>) {
    let kind = CheckKind::Dns;
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return (
            Check::pass(kind, format!("{ip} is an IP address; no lookup needed")),
            Some(vec![SocketAddr::new(ip, target.port)]),
        );
    }
    let what = if target.via_proxy {
        "the proxy host"
    } else {
        "the instance host"
    };
    let lookup = tokio::time::timeout(
        NETWORK_TIMEOUT,
        tokio::net::lookup_host((target.host.as_str(), target.port)),
    )
    .await;
    let hint = if target.via_proxy {
        "check the host name in [fetcher] https_proxy (or HTTPS_PROXY) and this host's DNS"
    } else {
        "check the host name in `url` (e.g. acme.service-now.com) and this host's DNS; if \
         the instance is only reachable through a proxy, set [fetcher] https_proxy"
    };
    match lookup {
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                return (
                    Check::fail(
                        kind,
                        format!("{what} {} resolves to no address", target.host),
                        hint,
                    ),
                    None,
                );
            }
            let shown: BTreeSet<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            (
                Check::pass(
                    kind,
                    format!(
                        "{what} {} resolves to {}",
                        target.host,
                        shown.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ),
                Some(addrs),
            )
        }
        Ok(Err(error)) => (
            Check::fail(
                kind,
                format!("cannot resolve {what} {}: {error}", target.host),
                hint,
            ),
            None,
        ),
        Err(_) => (
            Check::fail(
                kind,
                format!(
                    "resolving {what} {} took longer than {} s",
                    target.host,
                    NETWORK_TIMEOUT.as_secs()
                ),
                hint,
            ),
            None,
        ),
    }
}

async fn check_connect(target: &Target, addrs: &[SocketAddr]) -> (Check, Option<SocketAddr>) {
    let kind = CheckKind::Connect;
    let mut errors = Vec::new();
    for addr in addrs {
        match tokio::time::timeout(NETWORK_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => {
                let target = target.describe();
                let message = if target.ends_with(&addr.to_string()) {
                    format!("connected to {target}")
                } else {
                    format!("connected to {target} ({addr})")
                };
                return (Check::pass(kind, message), Some(*addr));
            }
            Ok(Err(error)) => errors.push(format!("{addr}: {error}")),
            Err(_) => errors.push(format!(
                "{addr}: no answer within {} s",
                NETWORK_TIMEOUT.as_secs()
            )),
        }
    }
    let hint = if target.via_proxy {
        "check that the proxy runs and that this host may reach it"
    } else {
        "check the port in `url`, and that firewalls and egress rules let this host reach the \
         instance (or set [fetcher] https_proxy)"
    };
    (
        Check::fail(
            kind,
            format!(
                "cannot connect to {}: {}",
                target.describe(),
                errors.join("; ")
            ),
            hint,
        ),
        None,
    )
}

/// One unauthenticated Table API request with the fetcher's TLS and proxy settings: proves
/// TLS works and that something answers HTTP, and brings back the server's `Date`.
async fn check_http(network: &ClientConfig, url: &Url) -> (Check, Option<SystemTime>) {
    let kind = CheckKind::Http;
    let is_https = url.scheme() == "https";
    let probe = match http_probe_client(network) {
        Ok(client) => client,
        Err(error) => {
            return (
                Check::fail(
                    kind,
                    format!("cannot set up the HTTP client: {}", error_chain(&error)),
                    "check [fetcher] https_proxy (or HTTPS_PROXY)",
                ),
                None,
            );
        }
    };
    let mut endpoint = url.clone();
    let path = format!(
        "{}/api/now/table/{}",
        endpoint.path().trim_end_matches('/'),
        tables::INCIDENT
    );
    endpoint.set_path(&path);
    endpoint.set_query(Some("sysparm_limit=1"));
    let response = match probe.get(endpoint).send().await {
        Ok(response) => response,
        Err(error) => {
            let text = error_chain(&error.without_url());
            let lowered = text.to_ascii_lowercase();
            let hint = if lowered.contains("certificate") || lowered.contains("tls") {
                "the TLS handshake failed: check that `url` names the instance itself, that this \
                 host's clock is right, and, behind a TLS-inspecting proxy, that its CA is trusted"
            } else if lowered.contains("timed out") || lowered.contains("timeout") {
                "the instance accepted the connection but did not answer; check proxies and \
                 whether the instance is hibernating or under maintenance"
            } else {
                "the connection opened but the request failed; check proxies and the port in `url`"
            };
            let what = if is_https { "HTTPS" } else { "HTTP" };
            return (
                Check::fail(kind, format!("{what} request failed: {text}"), hint),
                None,
            );
        }
    };
    let status = response.status();
    let server_date = response
        .headers()
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let channel = if is_https {
        "TLS handshake succeeded"
    } else {
        "plain HTTP (no TLS)"
    };
    let check = if status.as_u16() == 401 || status.is_success() {
        Check::pass(
            kind,
            format!(
                "{channel}; the Table API answers (HTTP {} without credentials)",
                status.as_u16()
            ),
        )
    } else if status.is_redirection() {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| l.split('?').next().unwrap_or(l).to_owned())
            .unwrap_or_else(|| "somewhere".to_owned());
        Check::warn(
            kind,
            format!(
                "{channel}, but the Table API redirects (HTTP {}) to {location}",
                status.as_u16()
            ),
            "a hibernating developer instance or an SSO gateway answers instead of ServiceNow; \
             wake the instance or use the instance's own URL",
        )
    } else {
        Check::warn(
            kind,
            format!(
                "{channel}, but the Table API answered HTTP {} without credentials (a \
                 ServiceNow instance answers 401)",
                status.as_u16()
            ),
            "check that `url` is the ServiceNow instance and not a proxy or portal in front of it",
        )
    };
    (check, server_date)
}

fn http_probe_client(network: &ClientConfig) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(!network.allow_http)
        .timeout(network.request_timeout.min(REQUEST_TIMEOUT))
        .connect_timeout(NETWORK_TIMEOUT)
        .user_agent(network.user_agent.clone())
        .redirect(reqwest::redirect::Policy::none());
    builder = match &network.proxy {
        Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy.as_str())?),
        None => builder.no_proxy(),
    };
    builder.build()
}

/// Compares ServiceNow's `Date` with this host's clock.
fn check_clock(server_date: Option<SystemTime>, local: SystemTime) -> Check {
    let kind = CheckKind::Clock;
    let Some(server) = server_date else {
        return Check::skipped(kind, "the instance sent no usable Date header");
    };
    let (skew, direction) = match server.duration_since(local) {
        Ok(ahead) => (ahead, "ahead of"),
        Err(behind) => (behind.duration(), "behind"),
    };
    let secs = skew.as_secs();
    if skew <= MAX_CLOCK_SKEW {
        Check::pass(
            kind,
            format!("ServiceNow's clock is within {secs} s of this host's"),
        )
    } else {
        Check::warn(
            kind,
            format!(
                "ServiceNow's clock is {secs} s {direction} this host's (more than {} s)",
                MAX_CLOCK_SKEW.as_secs()
            ),
            "synchronise this host's clock (NTP): token expiry, fetched_at and backfill_since \
             use it",
        )
    }
}

/// Who the credentials act as, when the configuration says.
fn configured_user(integration: &IntegrationConfig) -> Option<&str> {
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

/// Authentication, user, roles and tables: everything that needs the credentials.
async fn check_access(
    integration: &IntegrationConfig,
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
            checks.push(time_zone::check(&client, &user_name, time_zone.as_deref()).await);
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
}

/// A client like the fetcher's, but impatient: preflight should answer in seconds.
fn preflight_client(
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
enum Identity {
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
async fn check_auth(
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

/// `value` of a field as the Table API returns it with `sysparm_display_value=all`
/// (`{"value", "display_value"}`), or a plain string.
fn field_value(record: &Map<String, Value>, name: &str) -> Option<String> {
    match record.get(name)? {
        Value::String(text) => Some(text.clone()),
        Value::Object(object) => object
            .get("value")
            .or_else(|| object.get("display_value"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
    .filter(|text| !text.is_empty())
}

/// Reads the user's active grants of the roles that matter from `sys_user_has_role` (which
/// also lists roles inherited from groups and containing roles, marked `inherited`).
async fn check_roles(client: &Client, user_name: &str, sys_id: &str) -> (Check, Check) {
    let wanted: Vec<&str> = REQUIRED_ROLES
        .iter()
        .copied()
        .chain([ADVISED_ROLE, ADMIN_ROLE])
        .collect();
    let request = ListRequest {
        table: tables::SYS_USER_HAS_ROLE.to_owned(),
        query: format!("user={sys_id}^state=active^role.nameIN{}", wanted.join(",")),
        limit: 100,
        offset: 0,
        fields: Some(vec!["role.name".to_owned()]),
    };
    let page = match client.list_page(&request).await {
        Ok(page) => page,
        Err(error) => {
            let (message, hint) = match &error {
                ClientError::Forbidden { .. } => (
                    "cannot read sys_user_has_role (HTTP 403), so the roles cannot be verified"
                        .to_owned(),
                    format!(
                        "verify in ServiceNow (User Administration > Users > {user_name} > \
                         Roles) that the user has {}",
                        REQUIRED_ROLES.join(", ")
                    ),
                ),
                other => (
                    format!("could not read the user's roles: {other}"),
                    "verify the roles in ServiceNow by hand".to_owned(),
                ),
            };
            return (
                Check::warn(CheckKind::Roles, message, hint),
                Check::skipped(CheckKind::AdvisedRole, "skipped: roles could not be read"),
            );
        }
    };
    let held = held_roles(&page);
    role_checks(user_name, &held)
}

fn held_roles(page: &TablePage) -> BTreeSet<String> {
    page.records
        .iter()
        .filter_map(|record| field_value(record, "role.name"))
        .collect()
}

fn role_checks(user_name: &str, held: &BTreeSet<String>) -> (Check, Check) {
    if held.contains(ADMIN_ROLE) {
        return (
            Check::pass(
                CheckKind::Roles,
                format!("{user_name} has {ADMIN_ROLE}, which passes every ACL"),
            ),
            Check::pass(
                CheckKind::AdvisedRole,
                format!("{user_name} has {ADMIN_ROLE}"),
            ),
        );
    }
    let missing: Vec<&str> = REQUIRED_ROLES
        .iter()
        .copied()
        .filter(|role| !held.contains(*role))
        .collect();
    let roles = if missing.is_empty() {
        Check::pass(
            CheckKind::Roles,
            format!("{user_name} has {}", REQUIRED_ROLES.join(", ")),
        )
    } else {
        Check::fail(
            CheckKind::Roles,
            format!(
                "{user_name} is missing required role(s): {}",
                missing.join(", ")
            ),
            format!(
                "grant {} to {user_name} (User Administration > Users > Roles); SEI needs itil \
                 for incidents and changes and the personalize_* roles for choice lists and \
                 custom field definitions",
                missing.join(", ")
            ),
        )
    };
    let advised = if held.contains(ADVISED_ROLE) {
        Check::pass(
            CheckKind::AdvisedRole,
            format!("{user_name} has {ADVISED_ROLE}"),
        )
    } else {
        Check::warn(
            CheckKind::AdvisedRole,
            format!("{user_name} does not have {ADVISED_ROLE}: ACLs may hide some users"),
            format!("grant {ADVISED_ROLE} (and user) so that every sys_user record reaches SEI"),
        )
    };
    (roles, advised)
}

/// One `sysparm_limit=1` read, as the fetcher's first page would be.
async fn check_table(client: &Client, table: &'static str, fetcher: &FetcherConfig) -> Check {
    let kind = CheckKind::TableRead(table);
    let request = ListRequest {
        table: table.to_owned(),
        query: String::new(),
        limit: 1,
        offset: 0,
        fields: Some(vec![SYS_ID.to_owned()]),
    };
    match client.list_page(&request).await {
        Ok(page) => {
            let rows = page.total.map_or_else(
                || "row count not reported".to_owned(),
                |n| format!("{n} rows"),
            );
            if page.records.is_empty() && page.total.is_some_and(|n| n > 0) {
                Check::warn(
                    kind,
                    format!("readable ({rows}), but the first row is hidden by an ACL"),
                    format!(
                        "row-level ACLs hide some {table} records from the integration user; \
                         they will not reach SEI unless its roles cover them"
                    ),
                )
            } else {
                Check::pass(kind, format!("readable ({rows})"))
            }
        }
        Err(ClientError::Forbidden { message, .. }) if table == tables::SYS_AUDIT_DELETE => {
            Check::warn(
                kind,
                format!(
                    "read access to {table} denied (HTTP 403): {message}; audit-based deletes \
                     are off for this integration, and the fetcher finds deletions by \
                     reconciliation instead (a keys-only scan of each table every {}, see \
                     reconcile_interval)",
                    humanize(fetcher.reconcile_interval)
                ),
                "deletions reach SEI up to one reconcile_interval late; for deletes within a \
                 poll, grant the integration user read access to sys_audit_delete (an ACL on \
                 it for one of the user's roles; on a default instance only admin has it)",
            )
        }
        Err(ClientError::Forbidden { message, .. }) => Check::fail(
            kind,
            format!("read access to {table} denied (HTTP 403): {message}"),
            table_access_hint(table),
        ),
        Err(ClientError::Rejected {
            status: 400 | 404,
            message,
            ..
        }) => Check::fail(
            kind,
            format!("the instance does not serve table {table}: {message}"),
            "the table's plugin may be inactive on this instance, or the Table API is blocked \
             for it",
        ),
        Err(error) => Check::fail(
            kind,
            format!("reading {table} failed: {error}"),
            "see the error; a transient failure may pass on the next run",
        ),
    }
}

/// `1h`, `90s`: a duration as the configuration writes it.
fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Compares the fields the normalizer maps for `table` with the columns `sys_dictionary` shows
/// the integration user. Missing ones are still asked for (see [`crate::fields`]), so this
/// warns: if ServiceNow does not return them either, they reach SEI empty.
async fn check_mapped_fields(
    client: &Client,
    table: &'static str,
    excluded: Option<&ExclusionPolicy>,
) -> Check {
    let kind = CheckKind::MappedFields(table);
    let shown = match fields::dictionary_columns(client, table).await {
        Ok(shown) => shown,
        Err(error) => {
            return Check::warn(
                kind,
                format!("cannot compare with sys_dictionary: {error}"),
                "see the Read sys_dictionary check",
            );
        }
    };
    let missing: BTreeSet<&str> = fields::mapped_fields(table)
        .into_iter()
        .map(|field| field.split('.').next().unwrap_or(field))
        .filter(|field| !excluded.is_some_and(|policy| policy.excludes(field)))
        .filter(|field| !shown.contains(*field))
        .collect();
    if missing.is_empty() {
        return Check::pass(
            kind,
            format!("sys_dictionary shows every field nowstream maps for {table}"),
        );
    }
    Check::warn(
        kind,
        format!(
            "sys_dictionary does not show {} mapped field(s) of {table} to the integration \
             user: {}; the fetcher asks for them anyway",
            missing.len(),
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ),
        "if they reach SEI empty, the user lacks read access to them (field ACLs) or to their \
         sys_dictionary rows (personalize_dictionary); records without number or \
         sys_created_on are logged and counted in nowstream_fetcher_records_missing_identity_total",
    )
}

fn table_access_hint(table: &str) -> String {
    let role = match table {
        tables::INCIDENT | tables::CHANGE_REQUEST => {
            "itil grants read access to incidents and change requests"
        }
        tables::SYS_USER => "itil reads users; user_admin reads all of them",
        tables::SYS_DICTIONARY => "personalize_dictionary grants read access to sys_dictionary",
        tables::SYS_CHOICE => "personalize_choices grants read access to sys_choice",
        tables::SYS_AUDIT_DELETE => {
            "sys_audit_delete is often admin-only: add a read ACL on it for the integration \
             user's role, or deletions reach SEI only through reconciliation"
        }
        _ => "add a read ACL for the integration user's role",
    };
    format!("grant the integration user read access to {table} ({role})")
}

/// The integration's secrets, for scrubbing report text.
fn configured_secrets(integration: &IntegrationConfig) -> Vec<SecretString> {
    match &integration.auth {
        AuthConfig::Basic(basic) => vec![basic.password.clone()],
        AuthConfig::Oauth(oauth) => {
            let mut secrets = vec![oauth.client_secret.clone()];
            secrets.extend(oauth.password.clone());
            if let Some(path) = &oauth.refresh_token_file {
                secrets.extend(instance::read_refresh_token(path).ok());
            }
            secrets
        }
    }
}

/// Shortest secret that is scrubbed; replacing a one- or two-character "secret" everywhere
/// would garble the report and protects nothing.
const MIN_SCRUBBED_LEN: usize = 3;

fn scrub(text: &str, secrets: &[SecretString]) -> String {
    let mut clean = text.to_owned();
    for secret in secrets {
        let secret = secret.expose_secret();
        if secret.len() >= MIN_SCRUBBED_LEN && clean.contains(secret) {
            clean = clean.replace(secret, "[REDACTED]");
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use nowstream_runtime::BasicAuth;

    use super::*;

    fn integration(url: &str, allow_http: bool) -> IntegrationConfig {
        IntegrationConfig {
            id: "it".to_owned(),
            url: url.to_owned(),
            auth: AuthConfig::Basic(BasicAuth {
                username: "svc".to_owned(),
                password: SecretString::from("pw-secret"),
            }),
            exclude_fields: Vec::new(),
            allow_http,
            exclude_at_source: false,
        }
    }

    #[test]
    fn urls_must_be_https_with_a_host_unless_http_is_allowed() {
        let (check, url) = check_url(&integration("https://acme.service-now.com", false));
        assert_eq!(check.outcome, Outcome::Pass, "{check:?}");
        assert!(url.is_some());
        let (check, _) = check_url(&integration("http://acme.service-now.com", false));
        assert_eq!(check.outcome, Outcome::Fail);
        assert!(check.message.contains("plain http"), "{check:?}");
        let (check, _) = check_url(&integration("http://127.0.0.1:8080", true));
        assert_eq!(check.outcome, Outcome::Pass, "{check:?}");
        let (check, _) = check_url(&integration("ftp://acme.service-now.com", false));
        assert!(check.message.contains("scheme \"ftp\""), "{check:?}");
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_being_shown() {
        let (check, url) = check_url(&integration("https://svc:pw-in-url@acme.com", false));
        assert_eq!(check.outcome, Outcome::Fail);
        assert!(url.is_none());
        assert!(check.message.contains("carries credentials"), "{check:?}");
        assert!(!check.message.contains("pw-in-url"), "{check:?}");
    }

    #[test]
    fn clock_skew_above_a_minute_warns_and_names_the_direction() {
        let local = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let check = check_clock(Some(local + Duration::from_secs(30)), local);
        assert_eq!(check.outcome, Outcome::Pass);
        let check = check_clock(Some(local + Duration::from_secs(90)), local);
        assert_eq!(check.outcome, Outcome::Warn);
        assert!(check.message.contains("90 s ahead of"), "{check:?}");
        let check = check_clock(Some(local - Duration::from_secs(300)), local);
        assert!(check.message.contains("300 s behind"), "{check:?}");
        assert_eq!(check_clock(None, local).outcome, Outcome::Skipped);
    }

    #[test]
    fn admin_satisfies_every_role_and_a_missing_role_is_named() {
        let held: BTreeSet<String> = ["admin".to_owned()].into();
        let (roles, advised) = role_checks("svc", &held);
        assert_eq!(
            (roles.outcome, advised.outcome),
            (Outcome::Pass, Outcome::Pass)
        );
        let held: BTreeSet<String> = ["itil", "personalize_choices"].map(str::to_owned).into();
        let (roles, advised) = role_checks("svc", &held);
        assert_eq!(roles.outcome, Outcome::Fail);
        assert!(
            roles.message.ends_with("personalize_dictionary"),
            "{roles:?}"
        );
        assert_eq!(advised.outcome, Outcome::Warn);
    }

    #[test]
    fn dot_walked_role_names_are_read_from_value_or_plain_strings() {
        let page = TablePage {
            records: vec![
                serde_json::json!({"role.name": {"display_value": "itil", "value": "itil"}}),
                serde_json::json!({"role.name": "user_admin"}),
                serde_json::json!({"role.name": {"display_value": "", "value": ""}}),
            ]
            .into_iter()
            .filter_map(|v| v.as_object().cloned())
            .collect(),
            total: Some(3),
            has_next: None,
        };
        let held = held_roles(&page);
        assert_eq!(held.into_iter().collect::<Vec<_>>(), ["itil", "user_admin"]);
    }

    #[test]
    fn scrubbing_replaces_secrets_but_not_tiny_ones() {
        let secrets = [SecretString::from("hunter2"), SecretString::from("ab")];
        assert_eq!(scrub("pw hunter2 in ab", &secrets), "pw [REDACTED] in ab");
    }

    #[test]
    fn an_empty_report_does_not_pass() {
        let report = Report::default();
        assert!(!report.passed());
        assert!(report.render().contains("No integrations"));
    }
}
