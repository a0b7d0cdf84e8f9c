//! A refused transaction commit, staged on librdkafka's in-process mock cluster.
//!
//! Everything else about `exactly_once` is proven on Apache Kafka (`exactly_once.rs` beside this file).
//! This one fault stays here because Apache Kafka cannot be made to produce it on demand: a
//! broker refuses `EndTxn` only in states (a coordinator moving, an epoch bumped mid-commit)
//! that a test cannot time between a page's produce and its commit, while the mock's request
//! error injection refuses exactly the commit. The mock proves the writer's reaction (report,
//! fresh producer, next page commits), not isolation: it has no read_committed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use nowstream_fetcher::writer::{Encoded, PageWriter};
use nowstream_model::{AvroRecord, Checkpoint, RawRecord, RecordOp};
use nowstream_runtime::KafkaConfig;
use nowstream_testkit::fixtures::raw_record;
use nowstream_testkit::{Isolation, TopicMessage, TopicReader, unique};

fn kafka(bootstrap: &str) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: bootstrap.to_owned(),
        ..KafkaConfig::default()
    }
}

/// Every (topic, key) → values: read until `done` holds (or `timeout` passed; a consumer on a
/// loaded machine can take seconds to join and fetch), then until nothing arrived for a second
/// (later copies of the same records).
async fn read_all(
    reader: &TopicReader,
    timeout: Duration,
    done: impl Fn(&HashMap<(String, String), Vec<Vec<u8>>>) -> bool,
) -> HashMap<(String, String), Vec<Vec<u8>>> {
    fn keep(seen: &mut HashMap<(String, String), Vec<Vec<u8>>>, message: TopicMessage) {
        seen.entry((message.topic.clone(), message.key_text()))
            .or_default()
            .push(message.payload.unwrap_or_default());
    }
    let mut seen = HashMap::new();
    let deadline = Instant::now() + timeout;
    while !done(&seen) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        if let Some(message) = reader.next(left).await {
            keep(&mut seen, message);
        }
    }
    for message in reader.read_until_quiet(Duration::from_secs(1)).await {
        keep(&mut seen, message);
    }
    seen
}

fn raw(sys_id: &str) -> RawRecord {
    raw_record(
        "incident",
        sys_id,
        Utc::now(),
        0,
        RecordOp::Upsert,
        Some("{}".into()),
    )
}

fn encoded(topic: &str, record: &RawRecord) -> anyhow::Result<Encoded> {
    Ok(Encoded {
        topic: topic.into(),
        key: format!("4711:{}", record.sys_id),
        value: record.encode()?,
    })
}

/// librdkafka's mock cluster has transactions but neither `read_committed` isolation nor
/// producer fencing, so a crash is staged where it can be observed: the commit of a page fails
/// after its records were produced. The writer must not hand that to the unit (which would start
/// over from its checkpoint and fetch the page again): it aborts, replaces the producer the
/// refusal left unusable, and writes the same page again, which commits with its checkpoint. The
/// next page then commits as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_refused_after_the_records_were_produced_is_written_again_and_commits()
-> anyhow::Result<()> {
    let cluster = MockCluster::new(3)?;
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("raw", 1, 3)?;
    cluster.create_topic("checkpoints", 1, 3)?;
    let writer =
        PageWriter::transactional(&kafka(&bootstrap), &unique("fetcher-4711:incident")).await?;
    let checkpoint = |last: &str| -> anyhow::Result<Encoded> {
        let checkpoint = Checkpoint {
            integration_id: "4711".into(),
            table: "incident".into(),
            last_updated_on: Utc::now(),
            last_sys_id: last.into(),
            updated_at: Utc::now(),
            records_total: 2,
            deletes_last_created_on: None,
            deletes_last_sys_id: None,
        };
        Ok(Encoded {
            topic: "checkpoints".into(),
            key: "4711:incident".into(),
            value: checkpoint.encode()?,
        })
    };

    cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE; 3],
    );
    writer
        .write(&[encoded("raw", &raw("first-1"))?], &checkpoint("first-1")?)
        .await
        .context("the page is written again after its commit was refused")?;
    cluster.clear_request_errors(RDKafkaApiKey::EndTxn);

    writer
        .write(
            &[
                encoded("raw", &raw("first-1"))?,
                encoded("raw", &raw("second-1"))?,
            ],
            &checkpoint("second-1")?,
        )
        .await?;
    let reader = TopicReader::subscribe_with(
        &bootstrap,
        &["raw", "checkpoints"],
        Isolation::ReadCommitted,
        &[("topic.metadata.refresh.interval.ms", "500")],
    )?;
    let seen = read_all(&reader, Duration::from_secs(60), |seen| {
        ["4711:first-1", "4711:second-1"]
            .iter()
            .all(|key| seen.contains_key(&("raw".to_owned(), (*key).to_owned())))
            && seen
                .get(&("checkpoints".to_owned(), "4711:incident".to_owned()))
                .and_then(|values| values.last())
                .and_then(|bytes| Checkpoint::decode(bytes).ok())
                .is_some_and(|checkpoint| checkpoint.last_sys_id == "second-1")
    })
    .await;
    let keys: HashSet<String> = seen.keys().map(|(_, key)| key.clone()).collect();
    assert!(
        keys.contains("4711:first-1") && keys.contains("4711:second-1"),
        "{keys:?}"
    );
    let checkpoints = &seen[&("checkpoints".to_owned(), "4711:incident".to_owned())];
    // Without read_committed the aborted try's checkpoint shows too: the same one again.
    let mut written: Vec<String> = checkpoints
        .iter()
        .map(|bytes| Ok(Checkpoint::decode(bytes)?.last_sys_id))
        .collect::<anyhow::Result<_>>()?;
    written.dedup();
    assert_eq!(written, ["first-1", "second-1"]);
    Ok(())
}
