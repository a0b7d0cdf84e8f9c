//! The fetcher against every failure mode the ServiceNow simulator can inject: it keeps
//! running, publishes every record, and waits as long as a 429 asks.

use crate::common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{RawReader, Setup, oauth_auth, sim_config, sim_records};
use nowstream_fetcher::FetchError;
use nowstream_runtime::Health;
use nowstream_servicenow_sim::{
    DEFAULT_CLIENT_SECRET, DEFAULT_INTEGRATION_PASSWORD, DEFAULT_INTEGRATION_USER, Fault,
    FaultRule, RequestRecord, RunningSim, SimConfig, SimUser, Simulator,
};
use nowstream_testkit::{KafkaBroker, unique};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const INCIDENTS: &str = "/api/now/table/incident";
const TABLE_API: &str = "/api/now/table/";

/// Every request the simulator handled, with the moment the test saw it counted.
///
/// The simulator's stats carry no times, so a task polls them every few milliseconds; a
/// request's time is known to within one poll (plus scheduling), which is far below the
/// multi-second waits the tests measure.
#[derive(Clone, Default)]
struct Timeline {
    seen: Arc<Mutex<Vec<(Instant, RequestRecord)>>>,
}

const TIMELINE_POLL: Duration = Duration::from_millis(10);

impl Timeline {
    fn watch(sim: Arc<RunningSim>, stop: CancellationToken) -> Self {
        let timeline = Self::default();
        let seen = timeline.seen.clone();
        tokio::spawn(async move {
            let mut counted = 0u64;
            while !stop.is_cancelled() {
                let stats = sim.stats();
                let now = Instant::now();
                let new = usize::try_from(stats.total - counted).unwrap_or(usize::MAX);
                let start = stats.recent.len().saturating_sub(new);
                seen.lock().expect("timeline lock").extend(
                    stats
                        .recent
                        .iter()
                        .skip(start)
                        .map(|request| (now, request.clone())),
                );
                counted = stats.total;
                tokio::time::sleep(TIMELINE_POLL).await;
            }
        });
        timeline
    }

    fn requests(&self) -> Vec<(Instant, RequestRecord)> {
        self.seen.lock().expect("timeline lock").clone()
    }

    /// The time between the first answer with `status` on `path` and the next request to
    /// `path`, which must be the same request tried again by the client: had the unit failed
    /// and started over, it would have asked `sys_dictionary` for its field list in between.
    fn retry_gap_after_first(&self, path: &str, status: u16) -> Duration {
        let requests = self.requests();
        let index = requests
            .iter()
            .position(|(_, request)| request.path == path && request.status == status)
            .unwrap_or_else(|| panic!("no {status} on {path} in the timeline"));
        let (answered, failed) = &requests[index];
        let offset = requests[index + 1..]
            .iter()
            .position(|(_, request)| request.path == path)
            .unwrap_or_else(|| panic!("no request to {path} after the {status}"));
        let (next, retried) = &requests[index + 1 + offset];
        assert_eq!(
            retried.query, failed.query,
            "the retry asks for the same page"
        );
        let table = path.trim_start_matches(TABLE_API);
        let restarted = requests[index + 1..index + 1 + offset]
            .iter()
            .any(|(_, request)| {
                request.path == "/api/now/table/sys_dictionary"
                    && query_param(request, "sysparm_query").is_some_and(|query| {
                        query.contains(&format!("nameIN{table},task^elementISNOTEMPTY"))
                    })
            });
        assert!(
            !restarted,
            "the unit started over instead of the client retrying the request"
        );
        next.duration_since(*answered)
    }
}

/// A query parameter of a request the simulator saw, decoded.
fn query_param(request: &RequestRecord, name: &str) -> Option<String> {
    url::form_urlencoded::parse(request.query.as_deref()?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// One fetcher run (in-process) against a simulator with faults and a fresh broker.
struct Scenario {
    broker: &'static KafkaBroker,
    sim: Arc<RunningSim>,
    prefix: String,
    shutdown: CancellationToken,
    fetcher: JoinHandle<Result<(), FetchError>>,
    timeline: Timeline,
}

impl Scenario {
    /// Starts the simulator with `sim` config and `faults` active from the first request, and
    /// the fetcher with `adjust` applied to its setup.
    async fn start(
        mut sim: SimConfig,
        faults: Vec<FaultRule>,
        adjust: impl FnOnce(&mut Setup),
    ) -> Self {
        sim.faults = faults;
        let broker = KafkaBroker::shared().expect("broker starts");
        let sim = Arc::new(Simulator::start(sim).await.expect("simulator starts"));
        let prefix = format!("{}.", unique("faults"));
        let mut setup = Setup::new(broker, &sim, &prefix);
        setup.fetcher = "page_size = 50".to_owned();
        adjust(&mut setup);
        let shutdown = CancellationToken::new();
        let timeline = Timeline::watch(sim.clone(), shutdown.clone());
        let fetcher = tokio::spawn(nowstream_fetcher::run(
            setup.config(),
            Health::new(),
            shutdown.clone(),
        ));
        Self {
            broker,
            sim,
            prefix,
            shutdown,
            fetcher,
            timeline,
        }
    }

    /// Waits until every incident, change request and user in `expected` reached the raw
    /// topics, checks the fetcher is still running, then stops it and checks it ended well.
    async fn assert_everything_published(&mut self, expected: &[(&str, HashSet<String>)]) {
        let mut reader = RawReader::new(self.broker, &self.prefix);
        reader
            .assert_all_of(expected, Duration::from_secs(180))
            .await;
        assert!(
            !self.fetcher.is_finished(),
            "the fetcher survived the faults"
        );
        self.shutdown.cancel();
        (&mut self.fetcher)
            .await
            .expect("fetcher task")
            .expect("the fetcher stops cleanly");
    }

    fn expected(&self) -> Vec<(&'static str, HashSet<String>)> {
        sim_records(&self.sim)
    }

    /// How often each configured rule fired.
    fn fired(&self) -> Vec<u64> {
        self.sim.faults().iter().map(|rule| rule.fired).collect()
    }
}

fn small() -> SimConfig {
    sim_config(300, 60, 30, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_waited_out_for_as_long_as_it_says() {
    let rule = FaultRule::next(
        1,
        Fault::RateLimitRetryAfter {
            retry_after_secs: 3,
        },
    )
    .on_path(INCIDENTS);
    let mut scenario = Scenario::start(small(), vec![rule], |_| {}).await;
    let expected = scenario.expected();
    scenario.assert_everything_published(&expected).await;
    assert_eq!(scenario.fired(), [1]);
    let gap = scenario.timeline.retry_gap_after_first(INCIDENTS, 429);
    assert!(
        gap >= Duration::from_secs(3) - 10 * TIMELINE_POLL,
        "the retry came {gap:?} after a 429 with Retry-After: 3"
    );
    eprintln!("retry {gap:?} after Retry-After: 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_only_x_ratelimit_reset_is_waited_out_until_the_reset() {
    // The reset is an epoch second 4 s ahead, so the wait is more than 3 s; a client that
    // ignored the header would back off for at most half a second.
    let rule = FaultRule::next(1, Fault::RateLimitReset { reset_in_secs: 4 }).on_path(INCIDENTS);
    let mut scenario = Scenario::start(small(), vec![rule], |_| {}).await;
    let expected = scenario.expected();
    scenario.assert_everything_published(&expected).await;
    assert_eq!(scenario.fired(), [1]);
    let gap = scenario.timeline.retry_gap_after_first(INCIDENTS, 429);
    assert!(
        gap >= Duration::from_secs(3) - 10 * TIMELINE_POLL,
        "the retry came {gap:?} after a 429 whose X-RateLimit-Reset was 4 s ahead"
    );
    eprintln!("retry {gap:?} after X-RateLimit-Reset 4 s ahead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_nothing_is_lost() {
    let rules = vec![
        FaultRule::every_nth(3, Fault::ServerError { status: 500 }).on_path(INCIDENTS),
        FaultRule::every_nth(2, Fault::ServerError { status: 503 })
            .on_path("/api/now/table/change_request"),
        FaultRule::next(2, Fault::ServerError { status: 502 }).on_path("/api/now/table/sys_user"),
    ];
    let mut scenario = Scenario::start(small(), rules, |_| {}).await;
    let expected = scenario.expected();
    scenario.assert_everything_published(&expected).await;
    let fired = scenario.fired();
    assert!(
        fired.iter().all(|&count| count >= 1),
        "every rule fired: {fired:?}"
    );
    let stats = scenario.sim.stats();
    assert!(
        stats.count(INCIDENTS, 500) >= 2 && stats.count("/api/now/table/change_request", 503) >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_timed_out_responses_are_retried_and_nothing_is_lost() {
    let rules = vec![
        // Longer than the request timeout: these two attempts time out.
        FaultRule::next(2, Fault::Latency { millis: 2_500 }).on_path(INCIDENTS),
        FaultRule::every_nth(2, Fault::Latency { millis: 300 }).on_path(TABLE_API),
    ];
    let mut scenario = Scenario::start(small(), rules, |setup| {
        setup.fetcher = "page_size = 50\nrequest_timeout = \"1s\"".to_owned();
    })
    .await;
    let expected = scenario.expected();
    scenario.assert_everything_published(&expected).await;
    let fired = scenario.fired();
    assert!(
        fired[0] == 2 && fired[1] >= 3,
        "latency rules fired: {fired:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_bodies_are_retried_and_nothing_is_lost() {
    let rule = FaultRule::every_nth(3, Fault::MalformedJson).on_path(TABLE_API);
    let mut scenario = Scenario::start(small(), vec![rule], |_| {}).await;
    let expected = scenario.expected();
    scenario.assert_everything_published(&expected).await;
    assert!(scenario.fired()[0] >= 3, "fired {:?}", scenario.fired());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bodies_are_retried_and_nothing_is_lost() {
    let rule = FaultRule::every_nth(3, Fault::TruncatedBody).on_path(TABLE_API);
    let mut scenario = Scenario::start(small(), vec![rule], |_| {}).await;
    let expected = scenario.expected();
    scenario.assert_everything_published(&expected).await;
    assert!(scenario.fired()[0] >= 3, "fired {:?}", scenario.fired());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_pages_do_not_end_the_scan_and_nothing_is_lost() {
    // Every other page comes back with 7 of its 50 rows while the count says more remain.
    let rule = FaultRule::every_nth(2, Fault::ShortPage { keep: 7 }).on_path(TABLE_API);
    let mut scenario = Scenario::start(small(), vec![rule], |_| {}).await;
    let expected = scenario.expected();
    scenario.assert_everything_published(&expected).await;
    assert!(scenario.fired()[0] >= 3, "fired {:?}", scenario.fired());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_hidden_by_a_row_acl_leave_empty_pages_that_do_not_end_the_scan() {
    // Hide a run of 60 incidents in the middle of the keyset order: with 20-row pages, three
    // pages come back empty while rows remain, and every incident after the run must still be
    // published.
    let probe = Simulator::start(small()).await.expect("simulator starts");
    let mut order: Vec<(String, String)> = probe
        .snapshot("incident")
        .expect("snapshot")
        .into_iter()
        .map(|record| (record["sys_updated_on"].clone(), record["sys_id"].clone()))
        .collect();
    order.sort();
    let (from, to) = (order[100].0.clone(), order[159].0.clone());
    let hidden: HashSet<String> = order
        .iter()
        .filter(|(updated_on, _)| *updated_on >= from && *updated_on <= to)
        .map(|(_, sys_id)| sys_id.clone())
        .collect();
    probe.shutdown().await;

    let mut config = small();
    let mut user = SimUser::integration();
    user.hidden_rows.insert(
        "incident".to_owned(),
        format!("sys_updated_on>={from}^sys_updated_on<={to}"),
    );
    config.users = vec![user, SimUser::admin()];
    let mut scenario = Scenario::start(config, Vec::new(), |setup| {
        // One stream: the hidden run is contiguous in its keyset order, while slices (by
        // creation time) would each see only part of it, too little for an empty page.
        setup.fetcher = "page_size = 20\nbackfill_slices = 1".to_owned();
    })
    .await;
    let mut expected = scenario.expected();
    let visible: HashSet<String> = expected[0].1.difference(&hidden).cloned().collect();
    assert!(hidden.len() >= 60 && visible.len() >= 200);
    expected[0].1 = visible;
    scenario.assert_everything_published(&expected).await;
    let offsets = scenario
        .timeline
        .requests()
        .iter()
        .filter(|(_, request)| {
            request.path == INCIDENTS
                && request.query.as_deref().is_some_and(|query| {
                    query.contains("sysparm_offset=20") || query.contains("sysparm_offset=40")
                })
        })
        .count();
    assert!(
        offsets >= 2,
        "the hidden rows were stepped over with sysparm_offset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_expiring_early_are_refreshed_and_nothing_is_lost() {
    // Spaced so that no request meets two expiries (one on its first try, one on the retry
    // with the renewed token): that is reported as wrong credentials, by design.
    let rule = FaultRule::every_nth(12, Fault::ExpireToken).on_path(TABLE_API);
    let mut scenario = Scenario::start(small(), vec![rule], |setup| {
        // One stream per table: the expiries are spaced for requests that follow each other,
        // and a sliced backfill's concurrent pages could meet two of them in one request.
        setup.fetcher = "page_size = 10\nbackfill_slices = 1".to_owned();
        setup.auth = oauth_auth(
            DEFAULT_CLIENT_SECRET,
            &format!(
                "grant = \"password\"\nusername = \"{DEFAULT_INTEGRATION_USER}\"\npassword = \"{DEFAULT_INTEGRATION_PASSWORD}\""
            ),
        );
    })
    .await;
    let expected = scenario.expected();
    scenario.assert_everything_published(&expected).await;
    let expired = scenario.fired()[0];
    assert!(expired >= 2, "tokens expired {expired} times");
    let stats = scenario.sim.stats();
    let unauthorized: u64 = stats
        .by_path
        .iter()
        .filter(|(path, _)| path.starts_with(TABLE_API))
        .map(|(_, statuses)| statuses.get(&401).copied().unwrap_or(0))
        .sum();
    assert!(unauthorized >= 1, "expired tokens were answered with 401");
    assert!(
        stats.count("/oauth_token.do", 200) >= 2,
        "new tokens were obtained: {:?}",
        stats.by_path.get("/oauth_token.do")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_transactions_halve_the_page_size_and_nothing_is_lost() {
    let rules = vec![
        // Cut short with the error appended to a 200 body, as when the transaction had started.
        FaultRule::always(Fault::TransactionCancelled {
            above_limit: 20,
            http_status: 200,
        })
        .on_path(INCIDENTS),
        // The error alone with a 500, as when the request timed out in the semaphore queue.
        FaultRule::always(Fault::TransactionCancelled {
            above_limit: 20,
            http_status: 500,
        })
        .on_path("/api/now/table/change_request"),
    ];
    let mut scenario = Scenario::start(small(), rules, |setup| {
        setup.fetcher = "page_size = 100".to_owned();
    })
    .await;
    let expected = scenario.expected();
    scenario.assert_everything_published(&expected).await;
    let fired = scenario.fired();
    assert!(
        fired.iter().all(|&count| count >= 1),
        "both rules fired: {fired:?}"
    );
    let limits: Vec<usize> = scenario
        .timeline
        .requests()
        .iter()
        .filter(|(_, request)| request.path == INCIDENTS && request.status == 200)
        .filter_map(|(_, request)| query_param(request, "sysparm_limit")?.parse().ok())
        .collect();
    assert!(!limits.is_empty());
    // Pages above the limit were cancelled; the ones that succeeded used a halved size.
    let succeeded_small = limits.iter().filter(|&&limit| limit <= 20).count();
    assert!(
        succeeded_small >= 10,
        "pages fetched at a halved size: {limits:?}"
    );
}
