//! Failover of the fetcher's work units on Apache Kafka, with the binary as processes. The
//! units are shared through a consumer group on the coordination topic (see
//! `src/coordination.rs`): a survivor takes over a killed replica's units, and a lone fetcher
//! killed and restarted at once gets its units back (with dynamic and with static membership,
//! whose recovery times are printed side by side: see docs/architecture.md, "Failover").

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    RawReader, Setup, all_units, owned_units, sim_records, spawn_fetcher, start_sim, started_after,
};
use nowstream_model::RecordOp;
use nowstream_servicenow_sim::RunningSim;
use nowstream_testkit::{KafkaBroker, unique};
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Partitions of the coordination topic: the five units land on partitions 1, 1, 1, 2 and 3,
/// so any split of the partitions between two members gives each some units.
const COORDINATION_PARTITIONS: u32 = 4;
const FAST_RESTARTS: usize = 3;

fn setup(broker: &KafkaBroker, sim: &RunningSim) -> Setup {
    let mut setup = Setup::new(broker, sim, &format!("{}.", unique("failover")));
    setup.json_logs = true;
    setup.fetcher = "page_size = 50".to_owned();
    setup.coordination_partitions = COORDINATION_PARTITIONS;
    setup
}

/// Creates one incident in the simulator; returns its sys_id.
fn new_incident(sim: &RunningSim, text: &str) -> String {
    let record = sim
        .insert(
            "incident",
            json!({"short_description": text, "priority": "2"}),
        )
        .expect("insert");
    record["sys_id"].clone()
}

/// Reads until `sys_id` arrived on the incident topic; fails with `log` after `timeout`.
async fn wait_published(reader: &mut RawReader, sys_id: &str, timeout: Duration, log: &str) {
    let found = reader
        .read_until(timeout, |seen| {
            seen.ids("incident", RecordOp::Upsert).contains(sys_id)
        })
        .await;
    assert!(
        found,
        "incident {sys_id} was not published within {timeout:?}; log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_one_of_two_fetchers_is_killed_the_survivor_takes_over_its_units_and_nothing_is_missed()
 {
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = start_sim(200, 50, 20, 0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = setup(broker, &sim);
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
    let mut reader = RawReader::new(broker, &setup.prefix);
    reader
        .assert_all_of(&sim_records(&sim), Duration::from_secs(120))
        .await;

    // The replica running the incident unit dies; the test then creates incidents, which only
    // a takeover can publish.
    let victim = usize::from(!split[0].contains("4711:incident"));
    let survivor = 1 - victim;
    let survivor_lines_before = replicas[survivor].lines().len();
    replicas[victim].kill();
    let killed = Instant::now();
    let sys_id = new_incident(&sim, "created after the kill");
    wait_published(
        &mut reader,
        &sys_id,
        Duration::from_secs(120),
        &replicas[survivor].text(),
    )
    .await;
    println!(
        "recovery: the survivor published a new incident {:?} after the kill \
         (session.timeout.ms 6000, poll_interval 1s)",
        killed.elapsed()
    );

    // Each unit logs its start once it read its checkpoint: the incident unit may publish
    // before the others have logged theirs, so wait for them rather than race them.
    let started_by = Instant::now() + Duration::from_secs(60);
    while !split[victim].is_subset(&started_after(&replicas[survivor], survivor_lines_before))
        && Instant::now() < started_by
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let taken_over = started_after(&replicas[survivor], survivor_lines_before);
    assert!(
        split[victim].is_subset(&taken_over),
        "the survivor started {taken_over:?}, the killed replica owned {:?}",
        split[victim]
    );
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
    // Nothing the simulator holds now is missing, the records of the victim's other tables
    // included.
    reader
        .assert_all_of(&sim_records(&sim), Duration::from_secs(120))
        .await;
    assert!(replicas[survivor].is_running());
}

/// How the restarted fetcher identifies itself to the coordination group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    /// A new member id per start: the group waits for the killed member's session to expire.
    Dynamic,
    /// `group_instance_id`: the restarted member takes the killed one's place.
    Static,
}

/// A lone fetcher is killed (SIGKILL) and restarted within two seconds [`FAST_RESTARTS`]
/// times, an incident created after each kill; the restarted process must get every unit back
/// and publish the incident, and in the end nothing the simulator holds is missing.
async fn fast_restarts(membership: Membership) {
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = start_sim(200, 50, 20, 0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut setup = setup(broker, &sim);
    if membership == Membership::Static {
        setup.fetcher = format!(
            "{}\ngroup_instance_id = \"{}\"",
            setup.fetcher,
            unique("fetcher-0")
        );
    }
    let config = setup.write(dir.path(), "fetcher.toml");
    let all = all_units();

    let mut fetcher = spawn_fetcher(&config, "info");
    let mut reader = RawReader::new(broker, &setup.prefix);
    reader
        .assert_all_of(&sim_records(&sim), Duration::from_secs(120))
        .await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::rng().random());
    let mut recoveries = Vec::new();
    for cycle in 1..=FAST_RESTARTS {
        assert!(
            fetcher.is_running(),
            "the fetcher died:\n{}",
            fetcher.text()
        );
        fetcher.kill();
        let killed = Instant::now();
        let sys_id = new_incident(&sim, &format!("created after kill {cycle}"));
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1_500))).await;
        fetcher = spawn_fetcher(&config, "info");
        wait_published(
            &mut reader,
            &sys_id,
            Duration::from_secs(120),
            &fetcher.text(),
        )
        .await;
        let took = killed.elapsed();
        println!("{membership:?} cycle {cycle}: new incident published {took:?} after the kill");
        recoveries.push(took);
        let units_by = Instant::now() + Duration::from_secs(60);
        while owned_units(&fetcher) != all && Instant::now() < units_by {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            owned_units(&fetcher),
            all,
            "the restarted fetcher runs every unit; its log:\n{}",
            fetcher.text()
        );
    }
    reader
        .assert_all_of(&sim_records(&sim), Duration::from_secs(120))
        .await;
    recoveries.sort();
    let mean = recoveries.iter().sum::<Duration>() / recoveries.len() as u32;
    println!(
        "{membership:?} membership, session.timeout.ms 6000: kill to first new record after a \
         fast restart: mean {mean:?}, max {:?} over {} restarts",
        recoveries[recoveries.len() - 1],
        recoveries.len()
    );
    fetcher.terminate();
    let status = fetcher
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the fetcher stops on SIGTERM");
    assert!(status.success(), "clean exit: {status}\n{}", fetcher.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_fetcher_killed_and_restarted_at_once_gets_its_units_back_each_time() {
    fast_restarts(Membership::Dynamic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_fetcher_killed_and_restarted_at_once_gets_its_units_back_each_time() {
    fast_restarts(Membership::Static).await;
}
