//! The checks that need no credentials: the URL, name resolution, a TCP connection, an HTTP
//! answer (TLS included) and the server's clock. They go to the proxy when one is configured.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use reqwest::header::{DATE, LOCATION};
use tokio::net::TcpStream;
use url::Url;

use nowstream_model::error_chain;
use nowstream_model::table_api::tables;
use nowstream_runtime::IntegrationConfig;
use nowstream_servicenow::client::ClientConfig;

use super::report::{Check, CheckKind};
use super::{MAX_CLOCK_SKEW, NETWORK_TIMEOUT, REQUEST_TIMEOUT};

/// Well-formed, https (or http with `allow_http`), a host, nothing that would leak or confuse.
pub(super) fn check_url(integration: &IntegrationConfig) -> (Check, Option<Url>) {
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
pub(super) struct Target {
    host: String,
    port: u16,
    via_proxy: bool,
}

impl Target {
    pub(super) fn of(instance: &Url, proxy: Option<&Url>) -> Target {
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

pub(super) async fn check_dns(target: &Target) -> (Check, Option<Vec<SocketAddr>>) {
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

pub(super) async fn check_connect(
    target: &Target,
    addrs: &[SocketAddr],
) -> (Check, Option<SocketAddr>) {
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
pub(super) async fn check_http(network: &ClientConfig, url: &Url) -> (Check, Option<SystemTime>) {
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
pub(super) fn check_clock(server_date: Option<SystemTime>, local: SystemTime) -> Check {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nowstream_runtime::{AuthConfig, BasicAuth};
    use secrecy::SecretString;

    use crate::preflight::Outcome;

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
            metadata: Default::default(),
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
}
