//! The fetcher against the ServiceNow simulator and an Apache Kafka broker: backfill and live changes.

use crate::common;

use std::time::Duration;

use common::{RawReader, config, sim_ids, sim_records, start_sim};
use nowstream_model::RecordOp;
use nowstream_runtime::Health;
use nowstream_testkit::{KafkaBroker, unique};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backfill_publishes_every_record_even_when_thousands_share_one_second()
-> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let sim = start_sim(20_000, 5_000, 1_000, 3_000).await;
    let prefix = format!("{}.", unique("bf"));
    let config = config(broker, &sim, &prefix, "page_size = 1000");
    let shutdown = CancellationToken::new();
    let fetcher = tokio::spawn(nowstream_fetcher::run(
        config,
        Health::new(),
        shutdown.clone(),
    ));

    let expected = sim_records(&sim);
    assert_eq!(expected[0].1.len(), 20_000);
    let mut reader = RawReader::new(broker, &prefix);
    reader
        .assert_all_of(&expected, Duration::from_secs(600))
        .await;
    // Custom-field definitions come from sys_dictionary.
    assert!(
        reader
            .seen
            .latest
            .values()
            .any(|record| record.table == "sys_dictionary"
                && record.payload.as_deref().is_some_and(|p| p.contains("u_"))),
        "custom field definitions are published"
    );
    shutdown.cancel();
    fetcher.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_creates_updates_and_deletes_appear_within_a_poll() -> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let sim = start_sim(200, 50, 20, 0).await;
    let prefix = format!("{}.", unique("live"));
    let config = config(broker, &sim, &prefix, "");
    let shutdown = CancellationToken::new();
    let fetcher = tokio::spawn(nowstream_fetcher::run(
        config,
        Health::new(),
        shutdown.clone(),
    ));

    let incidents = sim_ids(&sim, "incident");
    let mut reader = RawReader::new(broker, &prefix);
    assert!(
        reader
            .read_until(Duration::from_secs(120), |seen| incidents
                .is_subset(&seen.ids("incident", RecordOp::Upsert)))
            .await,
        "backfill completes"
    );

    let created = sim.insert(
        "incident",
        json!({"short_description": "printer on fire", "priority": "1"}),
    )?;
    let created_id = created["sys_id"].clone();
    let updated_id = incidents.iter().next().cloned().expect("an incident");
    sim.update(
        "incident",
        &updated_id,
        json!({"short_description": "updated by a test"}),
    )?;
    let deleted_id = incidents.iter().nth(1).cloned().expect("a second incident");
    sim.delete("incident", &deleted_id)?;

    let found = reader
        .read_until(Duration::from_secs(60), |seen| {
            let updated = seen
                .latest
                .get(&("incident".to_owned(), updated_id.clone()))
                .and_then(|record| record.payload.as_deref())
                .is_some_and(|payload| payload.contains("updated by a test"));
            let deleted = seen
                .latest
                .get(&("incident".to_owned(), deleted_id.clone()))
                .is_some_and(|record| record.op == RecordOp::Delete && record.payload.is_none());
            seen.ids("incident", RecordOp::Upsert).contains(&created_id) && updated && deleted
        })
        .await;
    assert!(found, "create, update and delete all reached the raw topic");
    shutdown.cancel();
    fetcher.await??;
    Ok(())
}
