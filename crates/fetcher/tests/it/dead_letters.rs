//! Rows the fetcher cannot publish go to `servicenow.fetcher.dlq` and the unit goes on: a
//! record too large for Kafka (a 2 MB journal), a row that cannot be keyed or versioned (a
//! non-numeric `sys_mod_count`, an audit row without `documentkey`). The checkpoint moves past
//! such a row only once it is dead-lettered, and no excluded value reaches the DLQ.

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{RawReader, Setup, sim_ids, start_sim};
use nowstream_bus::dlq::headers;
use nowstream_bus::{AckConsumer, ConsumedMessage, Producer};
use nowstream_fetcher::checkpoints::CheckpointStore;
use nowstream_model::RecordOp;
use nowstream_model::table_api::parse_time;
use nowstream_runtime::Health;
use nowstream_servicenow_sim::RunningSim;
use nowstream_testkit::{KafkaBroker, unique};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const LEAK: &str = "EXCLUDED-VALUE-MUST-NOT-LEAK";

/// Reads the fetcher DLQ under `prefix` from the beginning.
struct DlqReader {
    consumer: AckConsumer,
    letters: Vec<ConsumedMessage>,
}

impl DlqReader {
    fn new(broker: &KafkaBroker, prefix: &str) -> Self {
        let topic = format!("{prefix}servicenow.fetcher.dlq");
        let consumer = AckConsumer::subscribe_with(
            &broker.kafka_config(),
            &unique("dlq-reader"),
            &[topic.as_str()],
            &[("topic.metadata.refresh.interval.ms", "1000")],
        )
        .expect("DLQ reader subscribes");
        Self {
            consumer,
            letters: Vec::new(),
        }
    }

    /// Reads until a letter for `sys_id` arrived or `timeout` passed.
    async fn letter_for(&mut self, sys_id: &str, timeout: Duration) -> Option<ConsumedMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self
                .letters
                .iter()
                .find(|letter| header(letter, headers::SYS_ID).as_deref() == Some(sys_id))
            {
                return Some(found.clone());
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return None;
            }
            match tokio::time::timeout(remaining.min(Duration::from_secs(1)), self.consumer.recv())
                .await
            {
                Ok(Ok(message)) => self.letters.push(message),
                // "Unknown topic" until the fetcher created it.
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(_) => {}
            }
        }
    }
}

fn header(message: &ConsumedMessage, name: &str) -> Option<String> {
    message
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
}

/// The stored `(sys_updated_on, sys_id)` of a simulator record.
fn position(
    sim: &RunningSim,
    table: &str,
    sys_id: &str,
) -> (chrono::DateTime<chrono::Utc>, String) {
    let record = sim
        .get(table, sys_id)
        .expect("table exists")
        .expect("record exists");
    (
        parse_time(&record["sys_updated_on"]).expect("stored time"),
        sys_id.to_owned(),
    )
}

/// Waits until the checkpoint of `unit` covers `position`.
async fn checkpoint_reaches(
    broker: &KafkaBroker,
    prefix: &str,
    unit: &str,
    position: &(chrono::DateTime<chrono::Utc>, String),
    timeout: Duration,
) -> bool {
    let kafka = broker.kafka_config();
    let store = CheckpointStore::new(
        kafka.clone(),
        Producer::new(&kafka).expect("producer"),
        format!("{prefix}servicenow.fetcher.checkpoints"),
    );
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(all) = store.load_all().await
            && let Some(found) = all.get(unit)
            && (found.last_updated_on, found.last_sys_id.clone()) >= *position
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_record_is_dead_lettered_and_the_unit_goes_on() -> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let sim = start_sim(60, 5, 5, 0).await;
    let mut incidents: Vec<String> = sim_ids(&sim, "incident").into_iter().collect();
    incidents.sort();
    let big = incidents[7].clone();
    // A long-lived incident: 2 MB of work notes (display_value=all sends it twice), and a
    // value of an excluded field that must not reach the DLQ with it.
    sim.update(
        "incident",
        &big,
        json!({"work_notes": "n".repeat(2 * 1024 * 1024), "description": LEAK}),
    )?;
    let big_position = position(&sim, "incident", &big);

    let prefix = format!("{}.", unique("oversized"));
    let mut setup = Setup::new(broker, &sim, &prefix);
    setup.integration = r#"exclude_fields = ["description"]"#.to_owned();
    setup.fetcher = "page_size = 20".to_owned();
    // The 1 MB limit librdkafka has by default (nowstream's default is 8 MiB, which the
    // record would fit under).
    setup.kafka_properties = r#""message.max.bytes" = "1000000""#.to_owned();
    let shutdown = CancellationToken::new();
    let fetcher = tokio::spawn(nowstream_fetcher::run(
        setup.config(),
        Health::new(),
        shutdown.clone(),
    ));

    let others: HashSet<String> = incidents.iter().filter(|id| **id != big).cloned().collect();
    let mut reader = RawReader::new(broker, &prefix);
    reader
        .assert_all_of(&[("incident", others)], Duration::from_secs(120))
        .await;

    let mut dlq = DlqReader::new(broker, &prefix);
    let letter = dlq
        .letter_for(&big, Duration::from_secs(60))
        .await
        .expect("the oversized incident is dead-lettered");
    assert_eq!(
        header(&letter, headers::REASON).as_deref(),
        Some("too_large")
    );
    assert_eq!(header(&letter, headers::STAGE).as_deref(), Some("fetcher"));
    assert_eq!(header(&letter, headers::TABLE).as_deref(), Some("incident"));
    assert_eq!(header(&letter, headers::TRUNCATED).as_deref(), Some("true"));
    let size: usize = header(&letter, headers::SIZE)
        .expect("size header")
        .parse()?;
    assert!(size > 2 * 1024 * 1024, "size {size}");
    let key = String::from_utf8(letter.key.clone().unwrap_or_default())?;
    assert_eq!(key, format!("4711:{big}"));
    let value = letter.payload.clone().unwrap_or_default();
    assert!(
        value.len() < 1_000_000,
        "the value is cut to fit: {}",
        value.len()
    );
    let text = std::str::from_utf8(&value).expect("the cut value is still UTF-8");
    assert!(!text.contains(LEAK), "an excluded value reached the DLQ");
    assert!(
        !reader.seen.ids("incident", RecordOp::Upsert).contains(&big),
        "the oversized record never reached the raw topic"
    );

    assert!(
        checkpoint_reaches(
            broker,
            &prefix,
            "4711:incident",
            &big_position,
            Duration::from_secs(30)
        )
        .await,
        "the checkpoint moved past the dead-lettered record"
    );
    // A unit that kept re-fetching its stuck page would never publish a later change.
    let later = incidents[0].clone();
    let updated = sim.update("incident", &later, json!({"short_description": "later"}))?;
    let later_count: i64 = updated["sys_mod_count"].parse()?;
    let arrived = reader
        .read_until(Duration::from_secs(60), |seen| {
            seen.latest
                .get(&("incident".to_owned(), later.clone()))
                .is_some_and(|record| record.sys_mod_count == Some(later_count))
        })
        .await;
    assert!(
        arrived,
        "a change made after the oversized record is published"
    );

    shutdown.cancel();
    fetcher.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconvertible_rows_are_dead_lettered_with_their_table_and_sys_id() -> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let sim = start_sim(40, 5, 5, 0).await;
    let mut incidents: Vec<String> = sim_ids(&sim, "incident").into_iter().collect();
    incidents.sort();
    let bad = incidents[3].clone();
    sim.update("incident", &bad, json!({"description": LEAK}))?;
    sim.with_store_mut(|store| store.overwrite_raw("incident", &bad, "sys_mod_count", "many"))?;
    let bad_position = position(&sim, "incident", &bad);
    // A deletion whose audit row lost its documentkey.
    let deleted = incidents[5].clone();
    sim.delete("incident", &deleted)?;
    let audit = sim
        .snapshot("sys_audit_delete")?
        .into_iter()
        .find(|row| row.get("documentkey") == Some(&deleted))
        .expect("the delete left an audit row");
    let audit_id = audit["sys_id"].clone();
    sim.with_store_mut(|store| {
        store.overwrite_raw("sys_audit_delete", &audit_id, "documentkey", "")
    })?;

    let prefix = format!("{}.", unique("unconvertible"));
    let mut setup = Setup::new(broker, &sim, &prefix);
    setup.integration = r#"exclude_fields = ["description"]"#.to_owned();
    setup.fetcher = "page_size = 10".to_owned();
    let shutdown = CancellationToken::new();
    let fetcher = tokio::spawn(nowstream_fetcher::run(
        setup.config(),
        Health::new(),
        shutdown.clone(),
    ));

    let others: HashSet<String> = sim_ids(&sim, "incident")
        .into_iter()
        .filter(|id| *id != bad)
        .collect();
    let mut reader = RawReader::new(broker, &prefix);
    reader
        .assert_all_of(&[("incident", others)], Duration::from_secs(120))
        .await;

    let mut dlq = DlqReader::new(broker, &prefix);
    let letter = dlq
        .letter_for(&bad, Duration::from_secs(60))
        .await
        .expect("the row with a non-numeric sys_mod_count is dead-lettered");
    assert_eq!(
        header(&letter, headers::REASON).as_deref(),
        Some("bad_sys_mod_count")
    );
    assert_eq!(header(&letter, headers::TABLE).as_deref(), Some("incident"));
    let detail = header(&letter, headers::DETAIL).unwrap_or_default();
    assert!(detail.contains("many"), "{detail}");
    let value = String::from_utf8(letter.payload.clone().unwrap_or_default())?;
    assert!(value.contains(&bad), "the value is the row: {value}");
    assert!(!value.contains(LEAK), "an excluded value reached the DLQ");
    assert!(
        checkpoint_reaches(
            broker,
            &prefix,
            "4711:incident",
            &bad_position,
            Duration::from_secs(30)
        )
        .await,
        "the checkpoint moved past the dead-lettered row"
    );

    let letter = dlq
        .letter_for(&audit_id, Duration::from_secs(60))
        .await
        .expect("the audit row without documentkey is dead-lettered");
    assert_eq!(
        header(&letter, headers::REASON).as_deref(),
        Some("no_documentkey")
    );
    assert_eq!(
        header(&letter, headers::TABLE).as_deref(),
        Some("sys_audit_delete")
    );

    shutdown.cancel();
    fetcher.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_whose_response_is_over_the_limit_is_dead_lettered_by_sys_id() -> anyhow::Result<()>
{
    let broker = KafkaBroker::shared()?;
    let sim = start_sim(30, 5, 5, 0).await;
    let mut incidents: Vec<String> = sim_ids(&sim, "incident").into_iter().collect();
    incidents.sort();
    let big = incidents[4].clone();
    sim.update("incident", &big, json!({"comments": "c".repeat(300_000)}))?;

    let prefix = format!("{}.", unique("response"));
    let mut setup = Setup::new(broker, &sim, &prefix);
    setup.fetcher = "page_size = 10\nmax_response_bytes = 100000".to_owned();
    let shutdown = CancellationToken::new();
    let fetcher = tokio::spawn(nowstream_fetcher::run(
        setup.config(),
        Health::new(),
        shutdown.clone(),
    ));

    let others: HashSet<String> = incidents.iter().filter(|id| **id != big).cloned().collect();
    let mut reader = RawReader::new(broker, &prefix);
    reader
        .assert_all_of(&[("incident", others)], Duration::from_secs(120))
        .await;
    let mut dlq = DlqReader::new(broker, &prefix);
    let letter = dlq
        .letter_for(&big, Duration::from_secs(60))
        .await
        .expect("the record too large to read is dead-lettered");
    assert_eq!(
        header(&letter, headers::REASON).as_deref(),
        Some("response_too_large")
    );
    assert_eq!(header(&letter, headers::TABLE).as_deref(), Some("incident"));
    let value: serde_json::Value =
        serde_json::from_slice(&letter.payload.clone().unwrap_or_default())?;
    assert_eq!(
        value["sys_id"]["value"],
        big.as_str(),
        "the value is its keys: {value}"
    );

    shutdown.cancel();
    fetcher.await??;
    Ok(())
}
