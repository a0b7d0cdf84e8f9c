//! Deterministic fault injection, so tests can check how a client retries.
//!
//! The scheduling (always, the next N, every Nth request, per path prefix) is shared with
//! the ServiceNow simulator in `nowstream-faults`; this module says how SEI fails.
//!
//! Faults apply to the `/v1/` API only: the admin endpoints that steer them never fail.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use nowstream_faults::Trigger;

/// What goes wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// A 5xx in the contract's error shape, as an overloaded or failing SEI would send.
    ServerError {
        /// Status to send (500–599).
        #[serde(default = "default_server_error_status")]
        status: u16,
        /// `Retry-After` seconds to send along, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
    /// 429 with `Retry-After`, as SEI's rate limiter.
    RateLimited {
        /// Seconds the client is told to wait.
        retry_after_secs: u64,
    },
    /// 400 with an HTML page instead of the contract's JSON error, as a proxy or a web
    /// application firewall in front of SEI sends when it blocks a request. It names no
    /// record: a sender must not take it for a bad record.
    HtmlBadRequest,
    /// A delay before the request is handled (or failed by another rule).
    Latency {
        /// Delay in milliseconds.
        millis: u64,
    },
}

fn default_server_error_status() -> u16 {
    503
}

/// One configured fault.
pub type FaultRule = nowstream_faults::FaultRule<Fault>;

/// A rule with its counters (what `GET /admin/faults` returns).
pub type RuleReport = nowstream_faults::RuleReport<Fault>;

/// The active rules and their counters.
pub type FaultEngine = nowstream_faults::FaultEngine<Fault>;

/// Why `rule` cannot work, if it cannot.
pub fn validate(rule: &FaultRule) -> Result<(), String> {
    if let Some(problem) = rule.when.problem() {
        return Err(problem);
    }
    if let Fault::ServerError { status, .. } = rule.fault {
        if !(500..=599).contains(&status) {
            return Err(format!(
                "server_error status must be 500..=599, got {status}"
            ));
        }
    }
    Ok(())
}

/// A failure to send instead of handling the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFailure {
    /// 5xx.
    ServerError {
        /// Status.
        status: u16,
        /// `Retry-After` seconds, if any.
        retry_after_secs: Option<u64>,
    },
    /// 429.
    RateLimited {
        /// `Retry-After` seconds.
        retry_after_secs: u64,
    },
    /// 400 with an HTML body.
    HtmlBadRequest,
}

/// The page [`Fault::HtmlBadRequest`] answers with: what a WAF typically shows.
pub const HTML_BAD_REQUEST_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>400 Bad Request</title></head>\
<body><h1>Request blocked</h1><p>The request was rejected by the web application firewall. \
Support ID: 1234567890.</p></body></html>\n";

/// What the faults decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Wait this long first (the sum of every firing latency rule).
    pub delay: Duration,
    /// Then fail this way instead of handling the request (the first firing failure rule).
    pub failure: Option<InjectedFailure>,
}

/// Counts one request to `path` against every rule and says what happens to it: the
/// delays of all firing latency rules add up; the first firing failure wins.
pub fn decide(engine: &mut FaultEngine, path: &str) -> Verdict {
    let mut verdict = Verdict::default();
    for fault in engine.decide(path, |_| true) {
        match fault {
            Fault::Latency { millis } => {
                verdict.delay += Duration::from_millis(millis);
            }
            Fault::ServerError {
                status,
                retry_after_secs,
            } => {
                verdict.failure.get_or_insert(InjectedFailure::ServerError {
                    status,
                    retry_after_secs,
                });
            }
            Fault::RateLimited { retry_after_secs } => {
                verdict
                    .failure
                    .get_or_insert(InjectedFailure::RateLimited { retry_after_secs });
            }
            Fault::HtmlBadRequest => {
                verdict
                    .failure
                    .get_or_insert(InjectedFailure::HtmlBadRequest);
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Fault {
        Fault::ServerError {
            status: 503,
            retry_after_secs: None,
        }
    }

    #[test]
    fn next_fails_the_first_requests_only() {
        let mut engine = FaultEngine::new(vec![FaultRule::next(
            2,
            Fault::RateLimited {
                retry_after_secs: 7,
            },
        )]);
        assert_eq!(
            decide(&mut engine, "/v1/x").failure,
            Some(InjectedFailure::RateLimited {
                retry_after_secs: 7
            })
        );
        assert!(decide(&mut engine, "/v1/x").failure.is_some());
        assert!(decide(&mut engine, "/v1/x").failure.is_none());
        assert_eq!(engine.report()[0].fired, 2);
        assert_eq!(engine.report()[0].seen, 3);
    }

    #[test]
    fn latency_adds_up_and_combines_with_a_failure() {
        let mut engine = FaultEngine::new(vec![
            FaultRule::always(Fault::Latency { millis: 5 }),
            FaultRule::always(Fault::Latency { millis: 7 }),
            FaultRule::always(unavailable()),
        ]);
        let verdict = decide(&mut engine, "/v1/x");
        assert_eq!(verdict.delay, Duration::from_millis(12));
        assert!(verdict.failure.is_some());
    }

    #[test]
    fn rules_parse_from_the_admin_json_shape() {
        let rules: Vec<FaultRule> = serde_json::from_str(
            r#"[{"fault": {"kind": "server_error"}, "when": {"mode": "every_nth", "n": 2}},
                {"fault": {"kind": "rate_limited", "retry_after_secs": 3}, "path_prefix": "/v1/ingest/"}]"#,
        )
        .unwrap();
        assert_eq!(rules[0].fault, unavailable());
        assert_eq!(rules[0].when, Trigger::EveryNth { n: 2 });
        assert_eq!(rules[1].when, Trigger::Always);
        let html: FaultRule =
            serde_json::from_str(r#"{"fault": {"kind": "html_bad_request"}}"#).unwrap();
        assert_eq!(html.fault, Fault::HtmlBadRequest);
    }

    #[test]
    fn impossible_rules_are_refused() {
        assert!(validate(&FaultRule::every_nth(0, unavailable())).is_err());
        let not_a_5xx = FaultRule::always(Fault::ServerError {
            status: 404,
            retry_after_secs: None,
        });
        assert!(validate(&not_a_5xx).unwrap_err().contains("404"));
    }
}
