//! Deterministic fault injection: how ServiceNow fails.
//!
//! The scheduling (always, the next N, every Nth applicable request, per path prefix) is
//! shared with sei-local in `nowstream-faults`; this module says which faults exist and
//! which requests each can apply to.

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
    /// 401 "User Not Authenticated" whatever the credentials, as ServiceNow answers for a
    /// while during an instance upgrade or when a node restarts.
    Unauthorized,
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

pub use nowstream_faults::Trigger;

/// One configured fault.
pub type FaultRule = nowstream_faults::FaultRule<Fault>;

/// A rule with how often it applied and fired (what `GET /sim/faults` returns).
pub type RuleReport = nowstream_faults::RuleReport<Fault>;

/// The active rules and their counters.
pub type FaultEngine = nowstream_faults::FaultEngine<Fault>;

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

impl RequestFacts<'_> {
    /// Whether `fault` can apply to this request (a short page only to a list, a token
    /// expiry only to a bearer request, …); only such requests count towards its rule.
    pub fn admits(&self, fault: &Fault) -> bool {
        match fault {
            Fault::ShortPage { .. } => self.is_list,
            Fault::TransactionCancelled { above_limit, .. } => {
                self.is_list && self.limit > *above_limit
            }
            Fault::ExpireToken => self.bearer,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(engine: &mut FaultEngine, facts: &RequestFacts<'_>) -> Vec<Fault> {
        engine.decide(facts.path, |fault| facts.admits(fault))
    }

    fn facts(path: &str) -> RequestFacts<'_> {
        RequestFacts {
            path,
            is_list: true,
            limit: 100,
            bearer: false,
        }
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
        assert!(decide(&mut engine, &facts("/api/now/table/sys_user")).is_empty());
        assert_eq!(
            decide(&mut engine, &facts("/api/now/table/incident")).len(),
            1
        );
        let big = RequestFacts {
            limit: 101,
            ..facts("/y")
        };
        assert_eq!(
            decide(&mut engine, &big),
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
        let unauthorized: FaultRule = serde_json::from_str(
            r#"{"fault":{"kind":"unauthorized"},"when":{"mode":"next","count":3}}"#,
        )
        .unwrap();
        assert_eq!(unauthorized, FaultRule::next(3, Fault::Unauthorized));
    }
}
