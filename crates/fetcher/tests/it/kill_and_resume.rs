//! The binary killed with SIGKILL at five random moments of a large backfill: every record still
//! reaches the raw topics, and each restart resumes from its checkpoint instead of starting
//! over, so the whole run costs little more than one clean backfill.

use crate::common;

use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta};
use common::{RawReader, Setup, sim_records, spawn_fetcher, start_sim, table_api_requests};
use nowstream_servicenow_sim::RunningSim;
use nowstream_testkit::{KafkaBroker, StageProcess, unique};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const INCIDENT_UNIT: &str = "4711:incident";
const KILLS: usize = 5;
/// `overlap` in the test config: each scan starts this far before the checkpoint.
const OVERLAP: TimeDelta = TimeDelta::seconds(2);

/// Polling is slowed to an hour so that, once the backfill is done, the request count stays
/// still: what is counted is the backfill (and its restarts), not idle polls.
fn setup(broker: &KafkaBroker, sim: &RunningSim) -> (Setup, String) {
    let prefix = format!("{}.", unique("kill"));
    let mut setup = Setup::new(broker, sim, &prefix);
    setup.json_logs = true;
    setup.poll_interval = "1h".to_owned();
    // One stream per table, the resume this test follows request by request; the sliced
    // backfill's kill and resume is `sliced_backfill.rs`.
    setup.fetcher = "page_size = 500\nbackfill_slices = 1".to_owned();
    (setup, prefix)
}

/// Waits until `fetcher` logs that its incident unit started; returns whether it resumed
/// from a checkpoint and, if so, the checkpoint's `sys_updated_on`.
async fn incident_unit_started(fetcher: &StageProcess) -> Option<NaiveDateTime> {
    let event = fetcher
        .wait_for_event(Duration::from_secs(120), |event| {
            event["unit"] == INCIDENT_UNIT
        })
        .await
        .unwrap_or_else(|| panic!("the incident unit never started:\n{}", fetcher.text()));
    match event["message"].as_str() {
        Some("starting backfill") => None,
        Some("resuming from checkpoint") => {
            let updated_on = event["updated_on"].as_str().expect("checkpoint time");
            Some(
                NaiveDateTime::parse_from_str(
                    updated_on.trim_end_matches(" UTC"),
                    "%Y-%m-%d %H:%M:%S",
                )
                .expect("checkpoint time format"),
            )
        }
        other => panic!("unexpected first incident event {other:?}: {event}"),
    }
}

/// The decoded `sysparm_query` of the first incident scan (a query that opens a keyset window,
/// not one that continues it) at or after request number `from` (the simulator's request log is
/// small enough here to hold every request).
///
/// Continuations are skipped: the killed fetcher's last request (it fetches the next page while
/// Kafka acknowledges the current one) may still be answered, and logged, after the new
/// process started.
fn first_incident_query_since(sim: &RunningSim, from: u64) -> Option<String> {
    let stats = sim.stats();
    let skip =
        usize::try_from(from.saturating_sub(stats.total - stats.recent.len() as u64)).unwrap_or(0);
    stats
        .recent
        .iter()
        .skip(skip)
        .filter(|request| request.path == "/api/now/table/incident")
        .filter_map(|request| {
            url::form_urlencoded::parse(request.query.as_deref()?.as_bytes())
                .find(|(key, _)| key == "sysparm_query")
                .map(|(_, query)| query.into_owned())
        })
        .find(|query| !query.contains("^NQ"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_at_five_random_moments_resumes_from_checkpoints_and_loses_nothing() {
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = start_sim(20_000, 2_000, 500, 3_000).await;
    let expected = sim_records(&sim);
    assert_eq!(expected[0].1.len(), 20_000);
    let dir = tempfile::tempdir().expect("temp dir");

    // A clean backfill first: how many requests and how long it takes, on this machine now.
    let (clean, clean_prefix) = setup(broker, &sim);
    sim.reset_stats();
    let mut fetcher = spawn_fetcher(&clean.write(dir.path(), "clean.toml"), "info");
    assert_eq!(incident_unit_started(&fetcher).await, None);
    let fetching_since = Instant::now();
    fetcher
        .wait_for_event(Duration::from_secs(600), |event| {
            event["unit"] == INCIDENT_UNIT && event["message"] == "scan complete"
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "the clean incident backfill never completed:\n{}",
                fetcher.text()
            )
        });
    // How long the incident unit takes to page through everything: the span the kills are
    // spread over (reading the topics back takes longer, and is not what is measured).
    let clean_duration = fetching_since.elapsed();
    let mut reader = RawReader::new(broker, &clean_prefix);
    assert!(
        reader
            .read_all_of(&expected, Duration::from_secs(600))
            .await,
        "the clean backfill completes"
    );
    let clean_requests = table_api_requests(&sim);
    eprintln!("clean: {:?}", sim.stats().by_path);
    fetcher.kill();
    eprintln!(
        "clean backfill: {clean_requests} Table API requests, incidents paged in {clean_duration:?}"
    );

    // The same backfill, killed five times at random moments while it runs.
    let (killed, prefix) = setup(broker, &sim);
    let config = killed.write(dir.path(), "killed.toml");
    sim.reset_stats();
    let mut rng = StdRng::seed_from_u64(0x6b69_6c6c);
    let mut resumed_from = Vec::new();
    for lifetime in 0..=KILLS {
        let requests_before = sim.stats().total;
        let mut fetcher = spawn_fetcher(&config, "info");
        let checkpoint = incident_unit_started(&fetcher).await;
        if lifetime > 0 {
            let checkpoint = checkpoint.unwrap_or_else(|| {
                panic!(
                    "restart {lifetime} started the incident backfill over:\n{}",
                    fetcher.text()
                )
            });
            // The scan really starts at the checkpoint, minus the overlap window.
            let query = first_incident_query_since(&sim, requests_before);
            let start = (checkpoint - OVERLAP)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            // The first scan request may still be on its way.
            let query = match query {
                Some(query) => query,
                None => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    first_incident_query_since(&sim, requests_before).expect("an incident request")
                }
            };
            assert!(
                query.starts_with(&format!("sys_updated_on>={start}")),
                "restart {lifetime} resumed from {checkpoint} but queried `{query}`"
            );
            resumed_from.push(checkpoint);
        }
        if lifetime == KILLS {
            // The last one runs to the end.
            let mut reader = RawReader::new(broker, &prefix);
            reader
                .assert_all_of(&expected, Duration::from_secs(600))
                .await;
            break;
        }
        let delay = clean_duration.mul_f64(rng.random_range(0.08..0.25));
        tokio::time::sleep(delay).await;
        fetcher.kill();
        eprintln!("lifetime {lifetime}: killed {delay:?} after its incident unit started");
    }

    assert!(
        resumed_from.windows(2).all(|pair| pair[0] <= pair[1]),
        "checkpoints never move back: {resumed_from:?}"
    );
    let requests = table_api_requests(&sim);
    eprintln!("killed: {:?}", sim.stats().by_path);
    eprintln!("killed {KILLS} times: {requests} Table API requests; resumed from {resumed_from:?}");
    // Starting over after each kill would cost up to six backfills. Resuming costs one, plus
    // per restart: the page in flight, the overlap window (all 3,000 same-second incidents
    // when the checkpoint is among them), one scan of every other unit and the field lists.
    assert!(
        requests < clean_requests * 3,
        "{requests} requests with {KILLS} kills against {clean_requests} for a clean backfill"
    );
}
