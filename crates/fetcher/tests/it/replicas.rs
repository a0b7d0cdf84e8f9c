//! Two fetcher processes in one group share the work units; when one dies, the other takes its
//! units over and nothing is missed.
//! Both cases run on Apache Kafka (`KafkaBroker::shared()`).

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    RawReader, Setup, all_units, owned_units, sim_records, spawn_fetcher, start_sim, started_after,
};
use nowstream_model::RecordOp;
use nowstream_runtime::KafkaConfig;
use nowstream_servicenow_sim::RunningSim;
use nowstream_testkit::{KafkaBroker, unique};
use serde_json::json;

/// `session.timeout.ms` in the test config (see `common::Setup`).
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// `poll_interval` in the test config.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Room for the rebalance itself, reading the checkpoints and the first scan on a busy
/// two-core machine.
const SLACK: Duration = Duration::from_secs(30);
/// Partitions of the coordination topic: the five units land on partitions 1, 1, 1, 2 and 3,
/// so any split of the partitions between two members gives each some units.
const COORDINATION_PARTITIONS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: no goodbye; the group notices after the session timeout.
    Kill,
    /// SIGTERM: the replica leaves the group on its way out.
    Terminate,
}

/// Starts two replicas, waits until they split the units and backfilled everything, stops the
/// one running the incident unit, creates records in the tables it owned, and checks that the
/// survivor publishes them within `deadline`.
async fn split_and_take_over(
    bootstrap: &str,
    kafka: &KafkaConfig,
    prefix: &str,
    sim: &RunningSim,
    stop: Stop,
    deadline: Duration,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut setup = Setup::on(bootstrap, sim, prefix);
    setup.json_logs = true;
    setup.fetcher = "page_size = 50".to_owned();
    setup.coordination_partitions = COORDINATION_PARTITIONS;
    let config = setup.write(dir.path(), "fetcher.toml");

    let mut replicas = [
        spawn_fetcher(&config, "info"),
        spawn_fetcher(&config, "info"),
    ];
    let all = all_units();
    let settle_by = Instant::now() + Duration::from_secs(120);
    let split = loop {
        let owned = [owned_units(&replicas[0]), owned_units(&replicas[1])];
        let union: BTreeSet<String> = owned[0].union(&owned[1]).cloned().collect();
        if !owned[0].is_empty()
            && !owned[1].is_empty()
            && owned[0].is_disjoint(&owned[1])
            && union == all
        {
            break owned;
        }
        assert!(
            Instant::now() < settle_by,
            "the replicas never split the units: {owned:?}\nfirst:\n{}\nsecond:\n{}",
            replicas[0].text(),
            replicas[1].text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Everything generated is published, whoever fetched it.
    let mut reader = RawReader::on(kafka, prefix);
    assert!(
        reader
            .read_all_of(&sim_records(sim), Duration::from_secs(120))
            .await,
        "the two replicas backfill everything"
    );
    assert_eq!(
        [owned_units(&replicas[0]), owned_units(&replicas[1])],
        split,
        "the assignment stayed as it settled"
    );

    let victim = usize::from(!split[0].contains("4711:incident"));
    let survivor = 1 - victim;
    let survivor_lines_before = replicas[survivor].lines().len();
    match stop {
        Stop::Kill => replicas[victim].kill(),
        Stop::Terminate => {
            replicas[victim].terminate();
            let status = replicas[victim]
                .wait_exit(Duration::from_secs(60))
                .await
                .expect("the fetcher stops on SIGTERM");
            assert!(
                status.success(),
                "SIGTERM is a clean stop: {status}\n{}",
                replicas[victim].text()
            );
        }
    }
    let stopped_at = Instant::now();

    // New records in every table whose unit the stopped replica owned.
    let mut created = Vec::new();
    for (table, values) in [
        (
            "incident",
            json!({"short_description": "created after the stop", "priority": "2"}),
        ),
        (
            "change_request",
            json!({"short_description": "change after the stop"}),
        ),
        (
            "sys_user",
            json!({"user_name": "after.stop", "name": "After Stop"}),
        ),
    ] {
        if split[victim].contains(&format!("4711:{table}")) {
            let record = sim.insert(table, values).expect("insert");
            created.push((table, record["sys_id"].clone()));
        }
    }
    assert!(
        !created.is_empty(),
        "the stopped replica owned record units: {:?}",
        split[victim]
    );

    let found = reader
        .read_until(deadline, |seen| {
            created
                .iter()
                .all(|(table, sys_id)| seen.ids(table, RecordOp::Upsert).contains(sys_id))
        })
        .await;
    let took = stopped_at.elapsed();
    assert!(
        found,
        "records created after the stop were not published within {deadline:?}; survivor log:\n{}",
        replicas[survivor].text()
    );
    eprintln!("{stop:?}: the survivor published the new records {took:?} after the stop");

    // The survivor took over the stopped replica's units and now runs all of them. A unit
    // without new records (sys_audit_delete) may start after the others published (seen on a
    // loaded machine), so wait for it rather than race it.
    let take_over_by = Instant::now() + Duration::from_secs(60);
    let mut taken_over = started_after(&replicas[survivor], survivor_lines_before);
    while !split[victim].is_subset(&taken_over) && Instant::now() < take_over_by {
        tokio::time::sleep(Duration::from_millis(200)).await;
        taken_over = started_after(&replicas[survivor], survivor_lines_before);
    }
    assert!(
        split[victim].is_subset(&taken_over),
        "the survivor started {taken_over:?}, the stopped replica owned {:?}",
        split[victim]
    );
    // Its own units were revoked and reassigned by the same rebalance (eager protocol); they may
    // restart after the taken-over ones published, so wait for them rather than race them.
    let restart_by = Instant::now() + Duration::from_secs(60);
    while owned_units(&replicas[survivor]) != all && Instant::now() < restart_by {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        owned_units(&replicas[survivor]),
        all,
        "the survivor runs every unit; its log:\n{}",
        replicas[survivor].text()
    );
    assert!(replicas[survivor].is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_units_are_taken_over_within_the_session_timeout_and_a_poll() {
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = start_sim(200, 50, 20, 0).await;
    split_and_take_over(
        &broker.bootstrap_servers(),
        &broker.kafka_config(),
        &format!("{}.", unique("replicas")),
        &sim,
        Stop::Kill,
        SESSION_TIMEOUT + POLL_INTERVAL + SLACK,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_with_sigterm_hands_its_units_over_and_nothing_is_missed() {
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = start_sim(200, 50, 20, 0).await;
    // Leaving the group rebalances at once; the deadline still allows the session timeout,
    // in case the leave did not reach the broker.
    split_and_take_over(
        &broker.bootstrap_servers(),
        &broker.kafka_config(),
        &format!("{}.", unique("replicas")),
        &sim,
        Stop::Terminate,
        SESSION_TIMEOUT + POLL_INTERVAL + SLACK,
    )
    .await;
}
