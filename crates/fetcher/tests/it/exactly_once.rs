//! `fetcher.exactly_once = true` on Apache Kafka: each page's records and the unit's checkpoint
//! in one transaction, read back with `isolation.level=read_committed`.
//!
//! A version counts once per (table, sys_id, sys_updated_on, sys_mod_count, op): a duplicate
//! would come from an aborted transaction leaking, from a zombie committing a page twice, or
//! from a restart republishing the overlap window.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{Setup, sim_config, sim_records, spawn_fetcher};
use nowstream_model::{AvroRecord, RawRecord};
use nowstream_servicenow_sim::{Fault, FaultRule, RunningSim, Simulator};
use nowstream_testkit::{Isolation, KafkaBroker, StageProcess, TopicReader, unique};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

const KILLS: usize = 10;
/// What the fetcher logs once a checkpoint load read the topic to its end.
const LOADED: &str = "checkpoints read to the end";
/// What it logs when a load gave up waiting.
const LOAD_TIMED_OUT: &str = "not read to its end";

/// One published version of a record.
type Version = (String, String, String, Option<i64>, String);

/// Reads the raw topics under a prefix with `read_committed`, counting each version.
struct CommittedReader {
    reader: TopicReader,
    seen: HashMap<Version, usize>,
}

impl CommittedReader {
    fn new(broker: &KafkaBroker, prefix: &str) -> Self {
        let topics: Vec<String> = common::RAW_TABLES
            .iter()
            .map(|table| format!("{prefix}servicenow.raw.{table}"))
            .collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        // librdkafka's default, spelled out: the point of these tests.
        let reader = TopicReader::subscribe(
            &broker.bootstrap_servers(),
            &topics,
            Isolation::ReadCommitted,
        )
        .expect("reader subscribes");
        Self {
            reader,
            seen: HashMap::new(),
        }
    }

    /// The sys_ids of `table` read so far.
    fn ids(&self, table: &str) -> HashSet<String> {
        self.seen
            .keys()
            .filter(|(t, ..)| t == table)
            .map(|(_, id, ..)| id.clone())
            .collect()
    }

    fn has_all(&self, expected: &[(&str, HashSet<String>)]) -> bool {
        expected
            .iter()
            .all(|(table, ids)| ids.is_subset(&self.ids(table)))
    }

    /// Reads until `done` holds or `timeout` passes; returns whether `done` held.
    async fn read_until(&mut self, timeout: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() > deadline {
                return false;
            }
            self.read_for(Duration::from_millis(500)).await;
        }
        true
    }

    /// Reads whatever arrives within `window`.
    async fn read_for(&mut self, window: Duration) {
        for message in self.reader.read_for(window).await {
            let record = RawRecord::decode(message.payload.as_deref().expect("raw value"))
                .expect("raw record decodes");
            let version = (
                record.table.clone(),
                record.sys_id.clone(),
                record.sys_updated_on.to_rfc3339(),
                record.sys_mod_count,
                record.op.symbol().to_owned(),
            );
            *self.seen.entry(version).or_default() += 1;
        }
    }

    /// Versions read more than once.
    fn duplicates(&self) -> Vec<(&Version, usize)> {
        let mut found: Vec<(&Version, usize)> = self
            .seen
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(version, count)| (version, *count))
            .collect();
        found.sort();
        found
    }
}

/// A simulator whose Table API answers slowly, so a backfill spans many transactions and a
/// kill at any moment is likely to find one open. Some records share a second, so the
/// overlap window after a restart re-reads records that were already published.
async fn slow_sim(incidents: usize) -> RunningSim {
    let mut config = sim_config(incidents, 150, 60, 120);
    config.faults =
        vec![FaultRule::always(Fault::Latency { millis: 40 }).on_path("/api/now/table/")];
    Simulator::start(config).await.expect("simulator starts")
}

/// Integration 4711 with `exactly_once`, small pages, under a fresh prefix.
fn exactly_once_setup(broker: &KafkaBroker, sim: &RunningSim) -> (Setup, String) {
    let prefix = format!("{}.", unique("eos"));
    let mut setup = Setup::new(broker, sim, &prefix);
    setup.fetcher = "exactly_once = true\npage_size = 25".to_owned();
    (setup, prefix)
}

/// Waits until the process logged that it read its checkpoints to the end, or exited.
async fn wait_for_loaded(fetcher: &mut StageProcess, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if fetcher.text().contains(LOADED) {
            return true;
        }
        if !fetcher.is_running() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn assert_exactly_once(reader: &CommittedReader) {
    let duplicates = reader.duplicates();
    assert!(
        duplicates.is_empty(),
        "{} versions were read more than once by a read_committed reader, e.g. {:?}",
        duplicates.len(),
        &duplicates[..duplicates.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_is_committed_exactly_once_across_ten_kill_9s_mid_transaction() {
    let broker = KafkaBroker::shared().expect("broker starts");
    // Ten lives must each find backfill left: four slices at once went through 5,000 incidents
    // in nine lives on a CI machine.
    let sim = slow_sim(10_000).await;
    let expected = sim_records(&sim);
    let dir = tempfile::tempdir().expect("temp dir");
    let (setup, prefix) = exactly_once_setup(broker, &sim);
    let config = setup.write(dir.path(), "fetcher.toml");
    let mut reader = CommittedReader::new(broker, &prefix);
    let started = Instant::now();

    let mut fetcher = spawn_fetcher(&config, "info");
    for kill in 1..=KILLS {
        assert!(
            wait_for_loaded(&mut fetcher, Duration::from_secs(120)).await,
            "life {kill} never finished loading its checkpoints:\n{}",
            fetcher.text()
        );
        // New records must have been committed since the last kill, so each kill lands in a
        // running backfill (and with 40 ms pages, usually inside a transaction).
        let before = reader.seen.len();
        let progressed = reader
            .read_until(Duration::from_secs(120), |reader| {
                reader.seen.len() >= before + 25
            })
            .await;
        assert!(
            progressed && !reader.has_all(&expected),
            "life {kill} must publish something and leave some of the backfill for later \
             lives ({} versions so far):\n{}",
            reader.seen.len(),
            fetcher.text()
        );
        tokio::time::sleep(Duration::from_millis(150 * kill as u64)).await;
        fetcher.kill();
        assert!(
            !fetcher.text().contains(LOAD_TIMED_OUT),
            "a checkpoint load timed out:\n{}",
            fetcher.text()
        );
        println!(
            "kill {kill} at {:?}: {} versions committed so far",
            started.elapsed(),
            reader.seen.len()
        );
        fetcher = spawn_fetcher(&config, "info");
    }

    let complete = reader
        .read_until(Duration::from_secs(300), |reader| reader.has_all(&expected))
        .await;
    for (table, ids) in &expected {
        let missing = ids.difference(&reader.ids(table)).count();
        assert_eq!(missing, 0, "{missing} {table} records never committed");
    }
    assert!(complete);
    // A few more polls: a late duplicate would show here.
    reader.read_for(Duration::from_secs(5)).await;
    assert!(
        !fetcher.text().contains(LOAD_TIMED_OUT),
        "{}",
        fetcher.text()
    );
    println!(
        "{} versions, each committed once, after {KILLS} kills in {:?}",
        reader.seen.len(),
        started.elapsed()
    );
    assert_exactly_once(&reader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_exactly_once_fetcher_reads_its_checkpoints_to_the_end_without_waiting() {
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = slow_sim(1_000).await;
    let expected = sim_records(&sim);
    let dir = tempfile::tempdir().expect("temp dir");
    let (setup, prefix) = exactly_once_setup(broker, &sim);
    let config = setup.write(dir.path(), "fetcher.toml");
    let mut reader = CommittedReader::new(broker, &prefix);

    let mut fetcher = spawn_fetcher(&config, "info");
    assert!(
        reader
            .read_until(Duration::from_secs(120), |reader| reader.seen.len() >= 200)
            .await,
        "the first life published too little:\n{}",
        fetcher.text()
    );
    // Every partition of the checkpoint topic now ends in a commit marker, and a transaction
    // is likely open: the two things that kept the old load waiting for its timeout.
    fetcher.kill();
    reader.read_for(Duration::from_secs(1)).await;
    let before = reader.seen.len();

    let restarted_at = Instant::now();
    let fetcher = spawn_fetcher(&config, "info");
    let resumed = reader
        .read_until(Duration::from_secs(120), |reader| {
            reader.seen.len() > before
        })
        .await;
    let first_output = restarted_at.elapsed();
    println!("restart to first new committed record: {first_output:?}");
    assert!(
        resumed,
        "nothing new after the restart:\n{}",
        fetcher.text()
    );
    let text = fetcher.text();
    let loaded = text.lines().filter(|line| line.contains(LOADED)).count();
    for line in text.lines().filter(|line| line.contains(LOADED)) {
        println!("{line}");
    }
    assert!(
        loaded >= 1 && !text.contains(LOAD_TIMED_OUT),
        "the checkpoint load must end by reaching the end, not by its timeout:\n{text}"
    );
    assert!(
        text.contains("resuming from checkpoint"),
        "the restarted fetcher resumed from its checkpoints:\n{text}"
    );
    assert!(
        reader
            .read_until(Duration::from_secs(300), |reader| reader.has_all(&expected))
            .await
    );
    assert_exactly_once(&reader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_fetcher_stops_naming_the_fencing_and_its_open_transaction_never_commits() {
    let broker = KafkaBroker::shared().expect("broker starts");
    let sim = slow_sim(1_500).await;
    let expected = sim_records(&sim);
    let dir = tempfile::tempdir().expect("temp dir");
    let (setup, prefix) = exactly_once_setup(broker, &sim);
    let config = setup.write(dir.path(), "fetcher.toml");
    let mut reader = CommittedReader::new(broker, &prefix);

    let mut fetcher = spawn_fetcher(&config, "info");
    assert!(
        reader
            .read_until(Duration::from_secs(120), |reader| reader
                .ids("incident")
                .len()
                >= 100)
            .await,
        "the incident backfill never got going:\n{}",
        fetcher.text()
    );
    // Another owner of the incident unit initialises its transactional.id, as a replica that
    // took the unit over while this one was paused past its session timeout would: the broker
    // aborts this fetcher's open transaction and refuses everything it does with the old epoch.
    let transactional_id = format!("{}-4711:incident", setup.group);
    let usurper: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("transactional.id", &transactional_id)
        .create()
        .expect("producer is created");
    usurper
        .init_transactions(Duration::from_secs(30))
        .expect("the second producer takes the id over");

    let status = fetcher.wait_exit(Duration::from_secs(120)).await;
    let text = fetcher.text();
    assert!(
        status.is_some_and(|status| !status.success()),
        "the fenced fetcher must stop with an error, not start a new producer that fences the \
         other owner back ({status:?}):\n{text}"
    );
    assert!(
        text.contains("fenced") && text.contains(&transactional_id),
        "the error names the fencing and the transactional.id:\n{text}"
    );
    drop(usurper);

    // Restarted, it joins again, owns the unit legitimately and finishes the backfill: the
    // fenced transaction's records (and its checkpoint) were aborted, so they come once more,
    // from the new transaction, and once only.
    let _fetcher = spawn_fetcher(&config, "info");
    let complete = reader
        .read_until(Duration::from_secs(300), |reader| reader.has_all(&expected))
        .await;
    assert!(complete, "the restarted fetcher completed the backfill");
    reader.read_for(Duration::from_secs(5)).await;
    assert_exactly_once(&reader);
}
