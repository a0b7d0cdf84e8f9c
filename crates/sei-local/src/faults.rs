//! Deterministic fault injection, so tests can check how a client retries.
//!
//! A rule says *what* goes wrong ([`Fault`]), *when* ([`Trigger`]: always, the next N
//! matching requests, or every Nth one) and optionally *where* (a path prefix). Each rule
//! counts only the requests it matches, so a test that sends a known sequence of requests
//! gets the same faults on every run; no randomness, no clock.
//!
//! Faults apply to the `/v1/` API only: the admin endpoints that steer them never fail.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// A delay before the request is handled (or failed by another rule).
    Latency {
        /// Delay in milliseconds.
        millis: u64,
    },
}

fn default_server_error_status() -> u16 {
    503
}

/// When a rule fires, counted over the requests it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// Every matching request.
    #[default]
    Always,
    /// The next `count` matching requests, then never again.
    Next {
        /// How many requests.
        count: u64,
    },
    /// The `n`th, `2n`th, … matching request: a failure *rate* of 1/n.
    EveryNth {
        /// Period (1 = every request).
        n: u64,
    },
}

impl Trigger {
    /// Whether the `seen`th matching request (1-based) is hit.
    fn fires_on(self, seen: u64) -> bool {
        match self {
            Self::Always => true,
            Self::Next { count } => seen <= count,
            Self::EveryNth { n } => n > 0 && seen % n == 0,
        }
    }
}

/// One configured fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// What goes wrong.
    pub fault: Fault,
    /// When it goes wrong.
    #[serde(default)]
    pub when: Trigger,
    /// Only requests whose path starts with this (e.g. `/v1/ingest/`), so a test can fail
    /// ingestion while still reading results back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
}

impl FaultRule {
    /// A rule firing on every matching request.
    pub fn always(fault: Fault) -> Self {
        Self {
            fault,
            when: Trigger::Always,
            path_prefix: None,
        }
    }

    /// A rule firing on the next `count` matching requests.
    pub fn next(count: u64, fault: Fault) -> Self {
        Self {
            fault,
            when: Trigger::Next { count },
            path_prefix: None,
        }
    }

    /// A rule firing on every `n`th matching request.
    pub fn every_nth(n: u64, fault: Fault) -> Self {
        Self {
            fault,
            when: Trigger::EveryNth { n },
            path_prefix: None,
        }
    }

    /// Restricts the rule to paths starting with `prefix`.
    pub fn on_path(mut self, prefix: &str) -> Self {
        self.path_prefix = Some(prefix.to_owned());
        self
    }

    /// Why the rule cannot work, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if let Trigger::EveryNth { n: 0 } = self.when {
            return Err("every_nth needs n of at least 1".to_owned());
        }
        if let Fault::ServerError { status, .. } = self.fault {
            if !(500..=599).contains(&status) {
                return Err(format!(
                    "server_error status must be 500..=599, got {status}"
                ));
            }
        }
        Ok(())
    }

    fn matches(&self, path: &str) -> bool {
        self.path_prefix
            .as_deref()
            .is_none_or(|prefix| path.starts_with(prefix))
    }
}

/// A rule with how many requests it matched and how many it fired on (what
/// `GET /admin/faults` returns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport {
    /// The rule.
    #[serde(flatten)]
    pub rule: FaultRule,
    /// Matching requests seen.
    pub seen: u64,
    /// Requests it fired on.
    pub fired: u64,
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
}

/// What the faults decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Wait this long first (the sum of every firing latency rule).
    pub delay: Duration,
    /// Then fail this way instead of handling the request (the first firing failure rule).
    pub failure: Option<InjectedFailure>,
}

/// The active rules and their counters.
#[derive(Debug, Default)]
pub struct FaultEngine {
    rules: Vec<RuleReport>,
}

impl FaultEngine {
    /// An engine running `rules` with fresh counters.
    pub fn new(rules: Vec<FaultRule>) -> Self {
        let mut engine = Self::default();
        engine.replace(rules);
        engine
    }

    /// Replaces the rules; counters start again from zero.
    pub fn replace(&mut self, rules: Vec<FaultRule>) {
        self.rules = rules
            .into_iter()
            .map(|rule| RuleReport {
                rule,
                seen: 0,
                fired: 0,
            })
            .collect();
    }

    /// The rules with their counters.
    pub fn report(&self) -> Vec<RuleReport> {
        self.rules.clone()
    }

    /// Counts one request to `path` against every rule and says what happens to it.
    /// Every matching rule counts the request, whether or not an earlier one fired, so
    /// each rule's schedule is independent of the others.
    pub fn decide(&mut self, path: &str) -> Verdict {
        let mut verdict = Verdict::default();
        for report in &mut self.rules {
            if !report.rule.matches(path) {
                continue;
            }
            report.seen += 1;
            if !report.rule.when.fires_on(report.seen) {
                continue;
            }
            report.fired += 1;
            match report.rule.fault {
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
            }
        }
        verdict
    }
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
    fn every_nth_fails_exactly_one_request_in_n() {
        let mut engine = FaultEngine::new(vec![FaultRule::every_nth(3, unavailable())]);
        let failed: Vec<bool> = (0..9)
            .map(|_| engine.decide("/v1/x").failure.is_some())
            .collect();
        assert_eq!(
            failed,
            [false, false, true, false, false, true, false, false, true]
        );
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
            engine.decide("/v1/x").failure,
            Some(InjectedFailure::RateLimited {
                retry_after_secs: 7
            })
        );
        assert!(engine.decide("/v1/x").failure.is_some());
        assert!(engine.decide("/v1/x").failure.is_none());
        assert_eq!(engine.report()[0].fired, 2);
        assert_eq!(engine.report()[0].seen, 3);
    }

    #[test]
    fn rules_only_count_requests_on_their_path() {
        let mut engine = FaultEngine::new(vec![
            FaultRule::always(unavailable()).on_path("/v1/ingest/"),
        ]);
        assert!(
            engine
                .decide("/v1/servicenow/i/incidents")
                .failure
                .is_none()
        );
        assert!(engine.decide("/v1/ingest/i/incidents").failure.is_some());
        assert_eq!(engine.report()[0].seen, 1);
    }

    #[test]
    fn latency_adds_up_and_combines_with_a_failure() {
        let mut engine = FaultEngine::new(vec![
            FaultRule::always(Fault::Latency { millis: 5 }),
            FaultRule::always(Fault::Latency { millis: 7 }),
            FaultRule::always(unavailable()),
        ]);
        let verdict = engine.decide("/v1/x");
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
    }

    #[test]
    fn impossible_rules_are_refused() {
        assert!(FaultRule::every_nth(0, unavailable()).validate().is_err());
        let not_a_5xx = FaultRule::always(Fault::ServerError {
            status: 404,
            retry_after_secs: None,
        });
        assert!(not_a_5xx.validate().unwrap_err().contains("404"));
    }
}
