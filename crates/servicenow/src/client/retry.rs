//! When and how long to wait before trying a request again.
//!
//! ServiceNow pushes back in three ways: rate-limit rules answer 429 (with `Retry-After`
//! and/or `X-RateLimit-Reset`), overloaded nodes answer 5xx or drop connections, and load
//! balancers cut bodies short. All of these are worth retrying; authentication and request
//! errors are not (retrying a wrong password only locks the account). A server-given wait
//! is honoured as is; otherwise the wait is a jittered exponential backoff, so many
//! fetchers that failed together do not come back together.

use std::fmt;
use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::config::RetryObserver;
use super::error::{ClientError, RequestContext};

/// Prometheus counter of retries, labelled `reason` ([`RetryReason::as_str`]).
pub const RETRIES_TOTAL: &str = "nowstream_servicenow_retries_total";
/// Prometheus histogram of waits spent obeying a 429, in seconds.
pub const RATE_LIMIT_WAIT_SECONDS: &str = "nowstream_servicenow_rate_limit_wait_seconds";

/// Registers help text for this crate's metrics with the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        RETRIES_TOTAL,
        "ServiceNow requests retried, by reason (rate_limited, server_error, timeout, ...)"
    );
    metrics::describe_histogram!(
        RATE_LIMIT_WAIT_SECONDS,
        metrics::Unit::Seconds,
        "Time spent waiting after ServiceNow answered 429"
    );
}

/// Why a request was tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// 429 from a rate-limit rule.
    RateLimited,
    /// 5xx (other than a cancelled transaction).
    ServerError,
    /// The request did not complete within `request_timeout`.
    Timeout,
    /// Connecting or sending failed.
    Connection,
    /// A 2xx body that is not JSON (maintenance pages, proxies).
    MalformedJson,
    /// The connection closed before the whole body arrived.
    TruncatedBody,
    /// "Transaction cancelled: maximum execution time exceeded"; the page size is halved
    /// first, and only at the floor is the same page retried with backoff.
    TransactionCancelled,
}

impl RetryReason {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::RateLimited => "rate_limited",
            RetryReason::ServerError => "server_error",
            RetryReason::Timeout => "timeout",
            RetryReason::Connection => "connection",
            RetryReason::MalformedJson => "malformed_json",
            RetryReason::TruncatedBody => "truncated_body",
            RetryReason::TransactionCancelled => "transaction_cancelled",
        }
    }
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a retry's wait came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitSource {
    /// The `Retry-After` header (seconds or HTTP date).
    RetryAfter,
    /// The `X-RateLimit-Reset` header (epoch seconds).
    RateLimitReset,
    /// Jittered exponential backoff.
    Backoff,
    /// No wait: the request changed (smaller page) and goes again at once.
    Immediate,
}

/// One retry, as reported to metrics and a [`RetryObserver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryEvent {
    pub reason: RetryReason,
    /// 1 for the first retry of a request; 0 for a retry that does not use the retry
    /// budget (a page asked again with a halved page size).
    pub retry: u32,
    /// How long the client waits before trying again.
    pub wait: Duration,
    pub source: WaitSource,
    /// The table, when the request was a Table API request.
    pub table: Option<String>,
    /// What failed, e.g. `HTTP 503: Service Unavailable`.
    pub detail: String,
}

/// A server-requested wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaitHint {
    pub wait: Duration,
    pub source: WaitSource,
}

/// A failure worth another attempt.
#[derive(Debug, Clone)]
pub(crate) struct Transient {
    pub reason: RetryReason,
    pub hint: Option<WaitHint>,
    /// Human-readable cause, already free of secrets.
    pub detail: String,
}

impl Transient {
    pub(crate) fn new(reason: RetryReason, detail: impl Into<String>) -> Self {
        Transient {
            reason,
            hint: None,
            detail: detail.into(),
        }
    }
}

/// The wait a 429 asks for: `Retry-After` (delta-seconds or HTTP date) first, then
/// `X-RateLimit-Reset` (epoch seconds). A header that is unparseable or names a time already
/// past gives no hint, so the caller falls back to backoff instead of hammering the server
/// when clocks disagree.
pub(crate) fn rate_limit_hint(headers: &HeaderMap, now: SystemTime) -> Option<WaitHint> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    header(RETRY_AFTER.as_str())
        .and_then(|v| parse_retry_after(v, now))
        .map(|wait| WaitHint {
            wait,
            source: WaitSource::RetryAfter,
        })
        .or_else(|| {
            header("x-ratelimit-reset")
                .and_then(|v| parse_rate_limit_reset(v, now))
                .map(|wait| WaitHint {
                    wait,
                    source: WaitSource::RateLimitReset,
                })
        })
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`; `None` when it cannot
/// be read or asks for no wait at all.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .ok()?,
    };
    (!wait.is_zero()).then_some(wait)
}

/// `X-RateLimit-Reset: 1700000000` (Unix seconds when the window resets); `None` when it
/// cannot be read or is not in the future.
pub(crate) fn parse_rate_limit_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let epoch_seconds: f64 = value.trim().parse().ok()?;
    if !epoch_seconds.is_finite() || epoch_seconds <= 0.0 {
        return None;
    }
    let reset =
        SystemTime::UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(epoch_seconds).ok()?)?;
    let wait = reset.duration_since(now).ok()?;
    (!wait.is_zero()).then_some(wait)
}

/// Jittered exponential backoff: retry `n` (0-based) waits between half and all of
/// `min(max, initial · 2ⁿ)` — "equal jitter", which spreads clients out while still
/// guaranteeing each waits at least half the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The un-jittered step for retry `n`.
    pub(crate) fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry `n`.
    pub(crate) fn delay(&self, n: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(n);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rng.random_range(0..=spread))
    }
}

/// Retry settings shared by every request of a client.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub backoff: Backoff,
    pub max_retries: u32,
    pub max_hinted_wait: Duration,
    pub observer: Option<RetryObserver>,
}

/// The retry budget of one logical request.
#[derive(Debug)]
pub(crate) struct Retrier<'a> {
    policy: &'a RetryPolicy,
    request: &'a RequestContext,
    retries: u32,
}

impl<'a> Retrier<'a> {
    pub(crate) fn new(policy: &'a RetryPolicy, request: &'a RequestContext) -> Self {
        Retrier {
            policy,
            request,
            retries: 0,
        }
    }

    /// Records the failure and sleeps before the next attempt, or gives up with
    /// [`ClientError::RetriesExhausted`] once the budget is spent.
    pub(crate) async fn pause(&mut self, failure: Transient) -> Result<(), ClientError> {
        if self.retries >= self.policy.max_retries {
            return Err(ClientError::RetriesExhausted {
                request: self.request.clone(),
                attempts: self.retries + 1,
                reason: failure.reason,
                last: failure.detail,
            });
        }
        let (wait, source) = match failure.hint {
            Some(hint) => (hint.wait.min(self.policy.max_hinted_wait), hint.source),
            None => (
                self.policy.backoff.delay(self.retries, &mut rand::rng()),
                WaitSource::Backoff,
            ),
        };
        self.retries += 1;
        self.report(failure.reason, wait, source, failure.detail);
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Reports a retry that needs no wait (the request itself changed).
    pub(crate) fn report_immediate(&self, reason: RetryReason, detail: String) {
        self.report(reason, Duration::ZERO, WaitSource::Immediate, detail);
    }

    fn report(&self, reason: RetryReason, wait: Duration, source: WaitSource, detail: String) {
        metrics::counter!(RETRIES_TOTAL, "reason" => reason.as_str()).increment(1);
        if reason == RetryReason::RateLimited {
            metrics::histogram!(RATE_LIMIT_WAIT_SECONDS).record(wait.as_secs_f64());
        }
        tracing::warn!(
            request = %self.request,
            reason = reason.as_str(),
            retry = self.retries,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            detail = %detail,
            "retrying ServiceNow request"
        );
        if let Some(observer) = &self.policy.observer {
            observer.notify(&RetryEvent {
                reason,
                retry: self.retries,
                wait,
                source,
                table: self.request.table.clone(),
                detail,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use reqwest::header::HeaderValue;

    use super::*;

    fn at(epoch_seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(epoch_seconds)
    }

    #[test]
    fn retry_after_accepts_delta_seconds() {
        assert_eq!(
            parse_retry_after(" 120 ", at(0)),
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn retry_after_accepts_an_http_date() {
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777.
        let now = at(784_111_777 - 30);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn retry_after_in_the_past_or_unreadable_gives_no_hint() {
        let now = at(784_111_777 + 30);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("0", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn rate_limit_reset_is_the_time_until_the_epoch_second() {
        assert_eq!(
            parse_rate_limit_reset("1700000045", at(1_700_000_000)),
            Some(Duration::from_secs(45))
        );
        assert_eq!(
            parse_rate_limit_reset("1699999999", at(1_700_000_000)),
            None
        );
        assert_eq!(parse_rate_limit_reset("tomorrow", at(1_700_000_000)), None);
    }

    #[test]
    fn retry_after_wins_over_rate_limit_reset() {
        let mut headers = HeaderMap::new();
        headers.insert("X-RateLimit-Reset", HeaderValue::from_static("1700000100"));
        let now = at(1_700_000_000);
        assert_eq!(
            rate_limit_hint(&headers, now),
            Some(WaitHint {
                wait: Duration::from_secs(100),
                source: WaitSource::RateLimitReset
            })
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            rate_limit_hint(&headers, now),
            Some(WaitHint {
                wait: Duration::from_secs(7),
                source: WaitSource::RetryAfter
            })
        );
    }

    #[test]
    fn an_unusable_retry_after_falls_back_to_rate_limit_reset() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("later"));
        headers.insert("X-RateLimit-Reset", HeaderValue::from_static("1700000003"));
        let hint = rate_limit_hint(&headers, at(1_700_000_000)).unwrap();
        assert_eq!(hint.source, WaitSource::RateLimitReset);
        assert_eq!(hint.wait, Duration::from_secs(3));
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let ceilings: Vec<u128> = (0..6).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn backoff_jitter_stays_between_half_and_all_of_the_step() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut distinct = std::collections::BTreeSet::new();
        for n in 0..8 {
            for _ in 0..50 {
                let delay = backoff.delay(n, &mut rng);
                let ceiling = backoff.ceiling(n);
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "{delay:?} vs {ceiling:?}"
                );
                distinct.insert(delay);
            }
        }
        assert!(distinct.len() > 300, "jitter should vary the waits");
    }

    fn policy(observer: Option<RetryObserver>) -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(8),
            },
            max_retries: 3,
            max_hinted_wait: Duration::from_secs(600),
            observer,
        }
    }

    fn request() -> RequestContext {
        RequestContext::table(
            "https://x.example/api/now/table/incident",
            "incident",
            "active=true",
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_hinted_wait_is_slept_exactly_and_reported() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let policy = policy(Some(RetryObserver::new(move |e| {
            sink.lock().unwrap().push(e.clone());
        })));
        let request = request();
        let mut retrier = Retrier::new(&policy, &request);
        let start = tokio::time::Instant::now();
        let mut failure = Transient::new(RetryReason::RateLimited, "HTTP 429");
        failure.hint = Some(WaitHint {
            wait: Duration::from_secs(42),
            source: WaitSource::RetryAfter,
        });
        retrier.pause(failure).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(42));
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].source, WaitSource::RetryAfter);
        assert_eq!(events[0].table.as_deref(), Some("incident"));
    }

    #[tokio::test(start_paused = true)]
    async fn hinted_waits_are_capped() {
        let mut policy = policy(None);
        policy.max_hinted_wait = Duration::from_secs(5);
        let request = request();
        let mut retrier = Retrier::new(&policy, &request);
        let start = tokio::time::Instant::now();
        let mut failure = Transient::new(RetryReason::RateLimited, "HTTP 429");
        failure.hint = Some(WaitHint {
            wait: Duration::from_secs(86_400),
            source: WaitSource::RetryAfter,
        });
        retrier.pause(failure).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_waits_grow_and_the_budget_runs_out() {
        let policy = policy(None);
        let request = request();
        let mut retrier = Retrier::new(&policy, &request);
        let mut waits = Vec::new();
        for _ in 0..3 {
            let start = tokio::time::Instant::now();
            retrier
                .pause(Transient::new(RetryReason::ServerError, "HTTP 503"))
                .await
                .unwrap();
            waits.push(start.elapsed());
        }
        for (n, wait) in waits.iter().enumerate() {
            let ceiling = Duration::from_secs(1 << n);
            assert!(
                *wait >= ceiling / 2 && *wait <= ceiling,
                "retry {n}: {wait:?}"
            );
        }
        let err = retrier
            .pause(Transient::new(RetryReason::ServerError, "HTTP 503"))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("4 attempts"), "{text}");
        assert!(text.contains("HTTP 503"), "{text}");
        assert!(text.contains("incident"), "{text}");
    }
}
