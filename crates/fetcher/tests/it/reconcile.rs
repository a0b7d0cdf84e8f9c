//! Deletion detection by reconciliation, over the real simulator and an Apache Kafka broker, with an
//! integration user that holds exactly SEI's documented roles and so gets 403 on
//! `sys_audit_delete`, as on a default instance.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::{RawReader, Setup, sim_ids, sim_records, spawn_fetcher};
use nowstream_model::RecordOp;
use nowstream_servicenow_sim::{GeneratorConfig, RunningSim, SimConfig, SimUser, Simulator};
use nowstream_testkit::{KafkaBroker, unique};
use serde_json::json;

const USER: &str = "sei.reader";
const PASSWORD: &str = "sei-reader-password";
const SWITCH_WARNING: &str = "may not read sys_audit_delete (HTTP 403)";

async fn start_sim() -> RunningSim {
    let mut config = SimConfig {
        data: GeneratorConfig {
            incidents: 150,
            change_requests: 30,
            users: 20,
            ..GeneratorConfig::default()
        },
        ..SimConfig::default()
    };
    config.users.push(SimUser::sei_documented(USER, PASSWORD));
    Simulator::start(config).await.expect("simulator starts")
}

fn setup(broker: &KafkaBroker, sim: &RunningSim, prefix: &str) -> Setup {
    let mut setup = Setup::new(broker, sim, prefix);
    setup.auth = format!("type = \"basic\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"");
    // 150 incidents over at most 100 keys per pass: incidents are reconciled in 16 sys_id
    // ranges, the other tables in one.
    setup.fetcher = "reconcile_interval = \"2s\"\nreconcile_max_keys = 100".to_owned();
    setup.json_logs = true;
    setup
}

fn deletes(reader: &RawReader, table: &str) -> HashSet<String> {
    reader.seen.ids(table, RecordOp::Delete)
}

fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|line| line.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_deleted_in_servicenow_reach_the_raw_topics_as_deletes_by_reconciliation_and_nothing_else_is_deleted()
-> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let sim = start_sim().await;
    let prefix = format!("{}.", unique("rec"));
    let dir = tempfile::tempdir()?;
    let config = setup(broker, &sim, &prefix).write(dir.path(), "fetcher.toml");
    let mut fetcher = spawn_fetcher(&config, "info");

    let mut reader = RawReader::new(broker, &prefix);
    reader
        .assert_all_of(&sim_records(&sim), Duration::from_secs(180))
        .await;

    // Deletions of every deletion table, an update, and records created while rounds run: the
    // new ones race the scans and must never be taken for deleted.
    let incidents: Vec<String> = sim_ids(&sim, "incident").into_iter().collect();
    let changes: Vec<String> = sim_ids(&sim, "change_request").into_iter().collect();
    let people: Vec<String> = sim
        .snapshot("sys_user")?
        .into_iter()
        .filter(|user| {
            user.get("title")
                .is_some_and(|t| t != "Integration account")
        })
        .filter_map(|user| user.get("sys_id").cloned())
        .collect();
    let mut deleted: Vec<(&str, String)> = incidents[..3]
        .iter()
        .map(|id| ("incident", id.clone()))
        .collect();
    deleted.push(("change_request", changes[0].clone()));
    deleted.push(("sys_user", people[0].clone()));
    for (table, id) in &deleted {
        sim.delete(table, id)?;
    }
    let updated = incidents[10].clone();
    sim.update(
        "incident",
        &updated,
        json!({"short_description": "still here"}),
    )?;
    let mut created = Vec::new();
    for n in 0..20 {
        let record = sim.insert(
            "incident",
            json!({"short_description": format!("created during reconciliation {n}")}),
        )?;
        created.push(record["sys_id"].clone());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    let arrived = reader
        .read_until(Duration::from_secs(120), |seen| {
            deleted.iter().all(|(table, id)| {
                seen.latest
                    .get(&((*table).to_owned(), id.clone()))
                    .is_some_and(|record| record.op == RecordOp::Delete && record.payload.is_none())
            })
        })
        .await;
    assert!(
        arrived,
        "every deletion reached the raw topic as a DELETE\n{}",
        fetcher.text()
    );

    // A few more rounds: nothing else may be deleted, and the other units keep publishing.
    let rounds = count(&fetcher.lines(), "reconciliation round complete");
    let more_rounds = reader
        .read_until(Duration::from_secs(90), |_| {
            count(&fetcher.lines(), "reconciliation round complete") >= rounds + 6
        })
        .await;
    assert!(
        more_rounds,
        "reconciliation keeps running\n{}",
        fetcher.text()
    );
    let late = sim.insert(
        "incident",
        json!({"short_description": "after the deletes"}),
    )?;
    let late_id = late["sys_id"].clone();
    assert!(
        reader
            .read_until(Duration::from_secs(60), |seen| seen
                .ids("incident", RecordOp::Upsert)
                .contains(&late_id))
            .await,
        "the incident unit keeps working"
    );
    for table in ["incident", "change_request", "sys_user"] {
        let expected: HashSet<String> = deleted
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(deletes(&reader, table), expected, "deletes of {table}");
    }
    let upserts = reader.seen.ids("incident", RecordOp::Upsert);
    for id in created.iter().chain([&updated]) {
        assert!(upserts.contains(id), "{id} is published and not deleted");
    }
    assert!(
        fetcher.is_running(),
        "a 403 on sys_audit_delete no longer stops the fetcher"
    );
    let lines = fetcher.lines();
    assert_eq!(
        count(&lines, SWITCH_WARNING),
        1,
        "one warning\n{}",
        lines.join("\n")
    );

    // After a restart, what was published is read back from the raw topic: a record deleted
    // while the fetcher was down is still found.
    fetcher.kill();
    let while_down = incidents[20].clone();
    sim.delete("incident", &while_down)?;
    let mut restarted = spawn_fetcher(&config, "info");
    let found = reader
        .read_until(Duration::from_secs(120), |seen| {
            seen.latest
                .get(&("incident".to_owned(), while_down.clone()))
                .is_some_and(|record| record.op == RecordOp::Delete)
        })
        .await;
    assert!(
        found,
        "a deletion made while the fetcher was down is found\n{}",
        restarted.text()
    );
    let mut expected: HashSet<String> = deleted
        .iter()
        .filter(|(t, _)| *t == "incident")
        .map(|(_, id)| id.clone())
        .collect();
    expected.insert(while_down);
    assert_eq!(deletes(&reader, "incident"), expected);
    restarted.kill();
    Ok(())
}
