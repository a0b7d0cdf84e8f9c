//! Deterministic fault injection.
//!
//! A rule says *what* goes wrong ([`Fault`]), *when* ([`Trigger`]: always, the next N
//! applicable requests, or every Nth one) and optionally *where* (a path prefix). Counting is
//! per rule over the requests the fault can apply to, so a test that sends a known sequence of
//! requests gets the same faults every run.

use serde::{Deserialize, Serialize};

/// `Retry-After` / `X-RateLimit-Reset` style 429s, errors, delays and damaged bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// 429 with `Retry-After: <secs>` (and `X-RateLimit-Reset`), as ServiceNow's rate limiter.
    RateLimitRetryAfter {
        /// Seconds the client is told to wait.
        retry_after_secs: u64,
    },
    /// 429 with only `X-RateLimit-Reset: <epoch seconds>`, no `Retry-After`.
    RateLimitReset {
        /// Seconds from now until the reset instant.
        reset_in_secs: u64,
    },
    /// A 5xx (500, 502, 503, …) in ServiceNow's error shape.
    ServerError {
        /// HTTP status to return.
        status: u16,
    },
    /// Delay before handling the request.
    Latency {
        /// Delay in milliseconds.
        millis: u64,
    },
    /// 200 whose body is not valid JSON.
    MalformedJson,
    /// 200 whose body stops halfway: the connection closes before `Content-Length` is reached.
    TruncatedBody,
    /// Row ACLs hide rows after the limit is applied: only the first `keep` rows of the page
    /// are returned; `X-Total-Count` and `Link` still count the hidden ones. List requests only.
    ShortPage {
        /// Rows of the page left visible (0 = an empty page while rows remain).
        keep: usize,
    },
    /// The presented OAuth access token expires now, before its `expires_in`: this request
    /// and later ones with the token get 401. Bearer requests only.
    ExpireToken,
    /// "Transaction cancelled: maximum execution time exceeded" for list requests whose
    /// `sysparm_limit` is above `above_limit`.
    TransactionCancelled {
        /// Largest limit that still succeeds.
        above_limit: usize,
        /// 200 (default): the page is cut short and the error object is appended to the body,
        /// as ServiceNow does when the transaction had started; 500: the error alone, as when
        /// the request timed out in the semaphore queue.
        #[serde(default = "default_cancel_status")]
        http_status: u16,
    },
}

fn default_cancel_status() -> u16 {
    200
}

/// When a rule fires, counted over the requests it can apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// Every applicable request.
    #[default]
    Always,
    /// The next `count` applicable requests, then never again.
    Next {
        /// How many requests.
        count: u64,
    },
    /// The `n`th, `2n`th, … applicable request.
    EveryNth {
        /// Period (1 = every request).
        n: u64,
    },
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
    /// Only requests whose path starts with this (e.g. `/api/now/table/incident`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
}

impl FaultRule {
    /// A rule firing on every applicable request.
    pub fn always(fault: Fault) -> Self {
        Self {
            fault,
            when: Trigger::Always,
            path_prefix: None,
        }
    }

    /// A rule firing on the next `count` applicable requests.
    pub fn next(count: u64, fault: Fault) -> Self {
        Self {
            fault,
            when: Trigger::Next { count },
            path_prefix: None,
        }
    }

    /// A rule firing on every `n`th applicable request.
    pub fn every_nth(n: u64, fault: Fault) -> Self {
        Self {
            fault,
            when: Trigger::EveryNth { n },
            path_prefix: None,
        }
    }

    /// Restrict the rule to paths starting with `prefix`.
    pub fn on_path(mut self, prefix: &str) -> Self {
        self.path_prefix = Some(prefix.to_owned());
        self
    }
}

/// A rule with how often it applied and fired (what `GET /sim/faults` returns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport {
    /// The rule.
    #[serde(flatten)]
    pub rule: FaultRule,
    /// Applicable requests seen.
    pub seen: u64,
    /// Requests it fired on.
    pub fired: u64,
}

/// What the fault layer knows about a request before handling it.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// URI path.
    pub path: &'a str,
    /// A `GET /api/now/table/{table}` list request.
    pub is_list: bool,
    /// Effective `sysparm_limit` of a list request.
    pub limit: usize,
    /// Authenticated with `Authorization: Bearer`.
    pub bearer: bool,
}

/// The active rules and their counters.
#[derive(Debug, Default)]
pub struct FaultEngine {
    rules: Vec<RuleReport>,
}

impl FaultEngine {
    /// An engine with the given rules.
    pub fn new(rules: Vec<FaultRule>) -> Self {
        let mut engine = Self::default();
        engine.replace(rules);
        engine
    }

    /// Replace all rules; counters start from zero.
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

    /// Add one rule.
    pub fn add(&mut self, rule: FaultRule) {
        self.rules.push(RuleReport {
            rule,
            seen: 0,
            fired: 0,
        });
    }

    /// Rules with their counters.
    pub fn report(&self) -> Vec<RuleReport> {
        self.rules.clone()
    }

    /// The faults to inject into this request, counting it against every applicable rule.
    pub fn decide(&mut self, facts: &RequestFacts<'_>) -> Vec<Fault> {
        let mut fired = Vec::new();
        for state in &mut self.rules {
            if !applies(&state.rule, facts) {
                continue;
            }
            state.seen += 1;
            let fire = match state.rule.when {
                Trigger::Always => true,
                Trigger::Next { count } => state.fired < count,
                Trigger::EveryNth { n } => n > 0 && state.seen % n == 0,
            };
            if fire {
                state.fired += 1;
                fired.push(state.rule.fault.clone());
            }
        }
        fired
    }
}

fn applies(rule: &FaultRule, facts: &RequestFacts<'_>) -> bool {
    if rule
        .path_prefix
        .as_deref()
        .is_some_and(|p| !facts.path.starts_with(p))
    {
        return false;
    }
    match rule.fault {
        Fault::ShortPage { .. } => facts.is_list,
        Fault::TransactionCancelled { above_limit, .. } => {
            facts.is_list && facts.limit > above_limit
        }
        Fault::ExpireToken => facts.bearer,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(path: &str) -> RequestFacts<'_> {
        RequestFacts {
            path,
            is_list: true,
            limit: 100,
            bearer: false,
        }
    }

    #[test]
    fn next_fires_exactly_count_times() {
        let mut engine = FaultEngine::new(vec![FaultRule::next(2, Fault::MalformedJson)]);
        let fired: Vec<usize> = (0..5).map(|_| engine.decide(&facts("/x")).len()).collect();
        assert_eq!(fired, [1, 1, 0, 0, 0]);
    }

    #[test]
    fn every_nth_fires_on_multiples_of_n() {
        let mut engine = FaultEngine::new(vec![FaultRule::every_nth(3, Fault::MalformedJson)]);
        let fired: Vec<usize> = (0..7).map(|_| engine.decide(&facts("/x")).len()).collect();
        assert_eq!(fired, [0, 0, 1, 0, 0, 1, 0]);
    }

    #[test]
    fn path_prefix_and_kind_limit_where_rules_apply() {
        let mut engine = FaultEngine::new(vec![
            FaultRule::always(Fault::ServerError { status: 503 })
                .on_path("/api/now/table/incident"),
            FaultRule::always(Fault::TransactionCancelled {
                above_limit: 100,
                http_status: 200,
            }),
            FaultRule::always(Fault::ExpireToken),
        ]);
        assert!(engine.decide(&facts("/api/now/table/sys_user")).is_empty());
        assert_eq!(engine.decide(&facts("/api/now/table/incident")).len(), 1);
        let big = RequestFacts {
            limit: 101,
            ..facts("/y")
        };
        assert_eq!(
            engine.decide(&big),
            vec![Fault::TransactionCancelled {
                above_limit: 100,
                http_status: 200
            }]
        );
    }

    #[test]
    fn rules_round_trip_through_json() {
        let json = r#"{"fault":{"kind":"rate_limit_retry_after","retry_after_secs":2},"when":{"mode":"next","count":1}}"#;
        let rule: FaultRule = serde_json::from_str(json).unwrap();
        assert_eq!(
            rule,
            FaultRule::next(
                1,
                Fault::RateLimitRetryAfter {
                    retry_after_secs: 2
                }
            )
        );
        assert!(
            serde_json::from_str::<FaultRule>(r#"{"fault":{"kind":"latency","milis":1}}"#).is_err()
        );
    }
}
