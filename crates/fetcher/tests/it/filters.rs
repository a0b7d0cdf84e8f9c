//! `metadata.incident_query` / `change_request_query` over the real simulator and an Apache
//! Kafka broker: only matching records are published, and a record that stops matching its
//! filter is published as a DELETE (so SEI removes it), then comes back when it matches again.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::{RawReader, Setup, sim_ids, spawn_fetcher};
use nowstream_model::RecordOp;
use nowstream_servicenow_sim::{GeneratorConfig, RunningSim, SimConfig, Simulator};
use nowstream_testkit::{KafkaBroker, unique};
use serde_json::json;

/// With its own `^NQ` group, so the fetcher must AND its paging into both groups.
const INCIDENT_QUERY: &str = "category=network^NQpriority=1";
const CHANGE_QUERY: &str = "type=normal";

async fn start_sim() -> RunningSim {
    let config = SimConfig {
        data: GeneratorConfig {
            incidents: 80,
            change_requests: 30,
            users: 10,
            ..GeneratorConfig::default()
        },
        ..SimConfig::default()
    };
    Simulator::start(config).await.expect("simulator starts")
}

fn incident_matches(row: &std::collections::BTreeMap<String, String>) -> bool {
    row.get("category").is_some_and(|c| c == "network")
        || row.get("priority").is_some_and(|p| p == "1")
}

fn matching(sim: &RunningSim, table: &str) -> HashSet<String> {
    sim.snapshot(table)
        .expect("snapshot")
        .into_iter()
        .filter(|row| match table {
            "incident" => incident_matches(row),
            _ => row.get("type").is_some_and(|t| t == "normal"),
        })
        .filter_map(|row| row.get("sys_id").cloned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_matching_records_are_published_and_one_that_stops_matching_is_deleted_until_it_matches_again()
-> anyhow::Result<()> {
    // Deletions read from sys_audit_delete (the simulator's default user may): the filtered
    // tables are reconciled besides.
    filtered_run("reconcile_interval = \"2s\"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_reconciliation_only_a_record_that_stops_matching_is_deleted_all_the_same()
-> anyhow::Result<()> {
    filtered_run("reconcile_interval = \"2s\"\ndeletion_detection = \"reconcile\"").await
}

async fn filtered_run(fetcher_lines: &str) -> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let sim = start_sim().await;
    let prefix = format!("{}.", unique("filt"));
    let dir = tempfile::tempdir()?;
    let mut setup = Setup::new(broker, &sim, &prefix);
    setup.integration = format!(
        "metadata = {{ incident_query = \"{INCIDENT_QUERY}\", change_request_query = \"{CHANGE_QUERY}\" }}"
    );
    setup.fetcher = fetcher_lines.to_owned();
    let config = setup.write(dir.path(), "fetcher.toml");
    let mut fetcher = spawn_fetcher(&config, "info");

    let incidents = matching(&sim, "incident");
    let changes = matching(&sim, "change_request");
    let all_incidents = sim_ids(&sim, "incident");
    assert!(
        !incidents.is_empty() && incidents.len() < all_incidents.len(),
        "the filter keeps some incidents and drops others"
    );
    assert!(!changes.is_empty() && changes.len() < sim_ids(&sim, "change_request").len());
    let users = sim_ids(&sim, "sys_user");
    let mut reader = RawReader::new(broker, &prefix);
    reader
        .assert_all_of(
            &[
                ("incident", incidents.clone()),
                ("change_request", changes.clone()),
                ("sys_user", users),
            ],
            Duration::from_secs(180),
        )
        .await;

    // A matching incident that matches only through its category leaves the filter; one that
    // did not match enters it.
    let rows = sim.snapshot("incident")?;
    let leaver = rows
        .iter()
        .find(|row| row["category"] == "network" && row["priority"] != "1")
        .map(|row| row["sys_id"].clone())
        .expect("a network incident that is not priority 1");
    let joiner = rows
        .iter()
        .find(|row| !incident_matches(row))
        .map(|row| row["sys_id"].clone())
        .expect("an incident outside the filter");
    sim.update("incident", &leaver, json!({"category": "software"}))?;
    sim.update("incident", &joiner, json!({"category": "network"}))?;

    let moved = reader
        .read_until(Duration::from_secs(120), |seen| {
            let latest = |id: &String| seen.latest.get(&("incident".to_owned(), id.clone()));
            latest(&leaver).is_some_and(|r| r.op == RecordOp::Delete && r.payload.is_none())
                && latest(&joiner).is_some_and(|r| r.op == RecordOp::Upsert)
        })
        .await;
    assert!(
        moved,
        "the incident that left the filter is deleted, the one that entered is published\n{}",
        fetcher.text()
    );

    // Only the leaver is deleted, and nothing outside the filter was ever published.
    assert_eq!(
        reader.seen.ids("incident", RecordOp::Delete),
        HashSet::from([leaver.clone()])
    );
    assert!(
        reader
            .seen
            .ids("change_request", RecordOp::Delete)
            .is_empty()
    );
    let mut allowed = incidents.clone();
    allowed.insert(joiner.clone());
    let published = reader.seen.upserted_for("4711", "incident");
    let outside: Vec<&String> = published.difference(&allowed).collect();
    assert!(
        outside.is_empty(),
        "published outside the filter: {outside:?}"
    );
    let outside_changes: Vec<String> = reader
        .seen
        .upserted_for("4711", "change_request")
        .difference(&changes)
        .cloned()
        .collect();
    assert!(
        outside_changes.is_empty(),
        "change requests published outside the filter: {outside_changes:?}"
    );

    // Back in the filter, it is published again.
    sim.update("incident", &leaver, json!({"category": "network"}))?;
    let back = reader
        .read_until(Duration::from_secs(60), |seen| {
            seen.latest
                .get(&("incident".to_owned(), leaver.clone()))
                .is_some_and(|r| r.op == RecordOp::Upsert)
        })
        .await;
    assert!(
        back,
        "an incident that matches again is published again\n{}",
        fetcher.text()
    );
    assert!(fetcher.is_running());
    fetcher.kill();
    Ok(())
}
