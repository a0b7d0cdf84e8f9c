//! Refused transaction commits, staged on librdkafka's in-process mock cluster.
//!
//! Everything else about `exactly_once` is proven on Apache Kafka (`exactly_once.rs` beside this file).
//! This one fault stays here because Apache Kafka cannot be made to produce it on demand: a
//! broker refuses `EndTxn` only in states (a coordinator moving, an epoch bumped mid-commit)
//! that a test cannot time between a page's produce and its commit, while the mock's request
//! error injection refuses exactly the commit. The mock proves the reactions (report, fresh
//! producer, the write or the page tried again, next page commits), not isolation: it has no
//! read_committed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use nowstream_fetcher::writer::{Encoded, PageWriter};
use nowstream_model::{AvroRecord, Checkpoint, RawRecord, RecordOp, TopicNames};
use nowstream_runtime::KafkaConfig;
use nowstream_servicenow_sim::RunningSim;
use nowstream_testkit::fixtures::raw_record;
use nowstream_testkit::{Isolation, TopicMessage, TopicReader, unique};

use nowstream_fetcher::supervisor::COORDINATION_TOPIC;

use crate::common::{
    RAW_TABLES, RawReader, Setup, sim_records, spawn_fetcher, start_sim, table_api_requests,
};

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
/// producer fencing, so a crash is staged where it can be observed: the commit of a small write
/// (a slice plan, a reconciliation page; [`PageWriter::write`]) fails after its records were
/// produced. The writer must not hand that to the unit (which would start over from its
/// checkpoint): it aborts, replaces the producer the refusal left unusable, and writes the same
/// records again, which commit with their checkpoint. The next write then commits as usual.
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

/// What one whole backfill did.
#[derive(Debug)]
struct Backfill {
    /// Table API requests.
    requests: u64,
    /// Pages the log says were fetched again.
    fetched_again: u64,
    /// Records published per unit, from each unit's "scan complete".
    published: BTreeMap<String, u64>,
}

/// One whole backfill of `sim` by a fetcher on a fresh mock cluster (fresh prefix and group),
/// with the first `refusals` transaction ends refused.
async fn backfill(sim: &RunningSim, refusals: usize) -> anyhow::Result<Backfill> {
    let cluster = MockCluster::new(3)?;
    let prefix = format!("{}.", unique("refetch"));
    // The mock cluster serves no CreateTopics: the fetcher's topics are made here.
    let names = TopicNames::new(prefix.clone())?;
    for table in RAW_TABLES {
        cluster.create_topic(&names.raw(table)?, 3, 3)?;
    }
    cluster.create_topic(&names.checkpoints(), 3, 3)?;
    cluster.create_topic(&names.fetcher_dlq(), 3, 3)?;
    cluster.create_topic(&format!("{prefix}{COORDINATION_TOPIC}"), 6, 3)?;
    let mut setup = Setup::on(&cluster.bootstrap_servers(), sim, &prefix);
    // One stream per table and no poll after the backfill: every request is a page (or a
    // unit's start-up), so two backfills of the same rows make the same requests.
    setup.fetcher = "exactly_once = true\npage_size = 10\nbackfill_slices = 1".to_owned();
    setup.poll_interval = "1h".to_owned();
    setup.json_logs = true;
    let dir = tempfile::tempdir()?;
    sim.reset_stats();
    cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE; refusals],
    );
    let mut fetcher = spawn_fetcher(&setup.write(dir.path(), "fetcher.toml"), "info");
    let mut raw = RawReader::on(&setup.config().kafka, &prefix);
    if !raw
        .read_all_of(&sim_records(sim), Duration::from_secs(120))
        .await
    {
        let log = fetcher.lines();
        panic!(
            "not every record reached the raw topics; the fetcher's log ends:\n{}",
            log[log.len().saturating_sub(40)..].join("\n")
        );
    }
    // Every unit's backfill ends with its last page; wait until the requests stop.
    let mut requests = table_api_requests(sim);
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = table_api_requests(sim);
        if now == requests {
            break;
        }
        requests = now;
    }
    let events = fetcher.events();
    let message = |event: &serde_json::Value| {
        event
            .get("message")
            .and_then(|message| message.as_str())
            .map(str::to_owned)
    };
    let fetched_again = events
        .iter()
        .filter(|event| {
            message(event).as_deref()
                == Some("Kafka did not take the page; fetching it again after the pause")
        })
        .count() as u64;
    let published = events
        .iter()
        .filter(|event| message(event).as_deref() == Some("scan complete"))
        .filter_map(|event| {
            Some((
                event.get("unit")?.as_str()?.to_owned(),
                event.get("published")?.as_u64()?,
            ))
        })
        .collect();
    let restarted = fetcher
        .lines()
        .iter()
        .filter(|line| line.contains("unit failed"))
        .count();
    fetcher.stop(Duration::from_secs(30)).await;
    assert_eq!(restarted, 0, "a refused commit restarts no unit");
    Ok(Backfill {
        requests,
        fetched_again,
        published,
    })
}

/// A page's records are released once librdkafka holds them, so a page whose transaction Kafka
/// refused is not written again from memory: its stream fetches it again from ServiceNow, from
/// the position after the last page written, and commits it, without restarting its unit. Against
/// the same backfill without refusals: every unit publishes as many records, and each page fetched
/// again costs one more Table API request, plus at most the stream's next page, which was being
/// fetched while the refused page was written and is dropped with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_commit_was_refused_is_fetched_again_from_servicenow_and_committed()
-> anyhow::Result<()> {
    let sim = start_sim(45, 12, 8, 0).await;
    let clean = backfill(&sim, 0).await?;
    assert_eq!(clean.fetched_again, 0);
    let refused = backfill(&sim, 2).await?;
    assert!(
        refused.fetched_again >= 1,
        "a refused commit makes its stream fetch the page again"
    );
    assert_eq!(refused.published, clean.published);
    assert!(
        (clean.requests + refused.fetched_again..=clean.requests + 2 * refused.fetched_again)
            .contains(&refused.requests),
        "{refused:?} against {clean:?}"
    );
    Ok(())
}
