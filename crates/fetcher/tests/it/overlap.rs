//! The default overlap window: each poll re-reads minutes before the checkpoint, so a record
//! that ServiceNow committed late (stamped before the checkpoint) is still published, while
//! the versions already published in the window are not published again.

use crate::common;

use std::time::Duration;

use common::{RawReader, Setup, sim_config, sim_records};
use nowstream_runtime::{Config, Format, Health};
use nowstream_servicenow_sim::Simulator;
use nowstream_testkit::{KafkaBroker, unique};
use tokio_util::sync::CancellationToken;

const INCIDENTS: &str = "/api/now/table/incident";

/// Waits until the incident unit has sent `polls` more list requests than it had so far.
async fn wait_for_polls(sim: &nowstream_servicenow_sim::RunningSim, polls: u64) {
    let before = sim.stats().requests_to(INCIDENTS);
    tokio::time::timeout(Duration::from_secs(60), async {
        while sim.stats().requests_to(INCIDENTS) < before + polls {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the incident unit keeps polling");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_with_the_default_overlap_publish_a_late_commit_and_nothing_unchanged_again() {
    // 40 incidents share the newest second: every poll's window re-reads them.
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = Simulator::start(sim_config(120, 30, 15, 40))
        .await
        .expect("simulator starts");
    let prefix = format!("{}.", unique("overlap"));
    let setup = Setup::new(broker, &sim, &prefix);
    // The test defaults pin a 2 s overlap; this test is about the product's default.
    let text = setup.text().replace("overlap = \"2s\"\n", "");
    let config = Config::parse(&text, Format::Toml).expect("valid config");
    assert!(
        config.fetcher.overlap >= Duration::from_secs(5 * 60),
        "the default overlap is minutes long: {:?}",
        config.fetcher.overlap
    );
    let shutdown = CancellationToken::new();
    let fetcher = tokio::spawn(nowstream_fetcher::run(
        config,
        Health::new(),
        shutdown.clone(),
    ));

    let mut reader = RawReader::new(broker, &prefix);
    reader
        .assert_all_of(&sim_records(&sim), Duration::from_secs(180))
        .await;
    wait_for_polls(&sim, 4).await;
    reader.read_until(Duration::from_secs(3), |_| false).await;
    assert_eq!(
        reader.seen.messages,
        reader.seen.latest.len(),
        "each record was published once, though every poll re-read the window"
    );

    // A write that commits late: stamped two minutes before the newest record the fetcher
    // has checkpointed.
    let incidents = sim.snapshot("incident").expect("snapshot");
    let newest_text = incidents
        .iter()
        .filter_map(|record| record.get("sys_updated_on"))
        .max()
        .expect("incidents")
        .clone();
    let newest = chrono::NaiveDateTime::parse_from_str(&newest_text, "%Y-%m-%d %H:%M:%S")
        .expect("ServiceNow time")
        .and_utc();
    let late_id = incidents
        .iter()
        .find(|record| {
            record
                .get("sys_updated_on")
                .is_some_and(|t| *t < newest_text)
        })
        .and_then(|record| record.get("sys_id").cloned())
        .expect("an older incident");
    sim.set_now(Some(newest - chrono::Duration::minutes(2)));
    sim.update(
        "incident",
        &late_id,
        serde_json::json!({"short_description": "committed late"}),
    )
    .expect("update");
    sim.set_now(None);
    let before = reader.seen.messages;
    let arrived = reader
        .read_until(Duration::from_secs(60), |seen| {
            seen.latest
                .get(&("incident".to_owned(), late_id.clone()))
                .is_some_and(|record| {
                    record
                        .payload
                        .as_deref()
                        .is_some_and(|payload| payload.contains("committed late"))
                })
        })
        .await;
    assert!(arrived, "the late commit was published");
    wait_for_polls(&sim, 3).await;
    reader.read_until(Duration::from_secs(3), |_| false).await;
    assert_eq!(
        reader.seen.messages,
        before + 1,
        "the late commit was published once and nothing else again"
    );

    assert!(!fetcher.is_finished());
    shutdown.cancel();
    fetcher
        .await
        .expect("fetcher task")
        .expect("the fetcher stops cleanly");
}
