//! Consumer-group failover of the normalizer on Apache Kafka, with the binary as processes:
//! a survivor takes over a killed replica's raw partitions, and a lone replica killed and
//! restarted at once gets its partitions back (with dynamic and with static membership, whose
//! recovery times are printed side by side: see docs/architecture.md, "Failover").

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    OutputReader, RAW_PARTITIONS, RawWriter, Setup, expected_end_state, free_listen_addr, key,
    missing, raw, scrape_counter, spawn_normalizer,
};
use nowstream_model::{AvroRecord, Entity, RawRecord, RecordOp};
use nowstream_testkit::{KafkaBroker, StageProcess, unique};
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const RECORDS_IN: &str = "nowstream_normalizer_records_in_total";
const RECORDS_OUT: &str = "nowstream_normalizer_records_out_total";
/// Apache Kafka's smallest allowed `session.timeout.ms` (`group.min.session.timeout.ms`).
const SESSION_TIMEOUT_MS: u32 = 6_000;
/// Keys the fed records cycle through, so most keys get several versions.
const KEYS: usize = 3_000;
const FAST_RESTARTS: usize = 10;

/// Record `n` of a stream over [`KEYS`] keys: key `n % KEYS`, version `n / KEYS + 1`.
fn record(n: usize) -> RawRecord {
    let entity = Entity::ALL[n % KEYS % Entity::ALL.len()];
    raw(
        entity,
        &format!("k{:05}", n % KEYS),
        (n / KEYS + 1) as i64,
        RecordOp::Upsert,
    )
}

fn records(range: std::ops::Range<usize>) -> Vec<RawRecord> {
    range.map(record).collect()
}

fn counter(addr: &str, name: &str) -> f64 {
    scrape_counter(addr, name).unwrap_or(0.0)
}

fn setup(broker: &KafkaBroker) -> Setup {
    let mut setup = Setup::new(broker);
    setup.session_timeout_ms = SESSION_TIMEOUT_MS;
    setup
}

/// One marker record on every raw partition (written to the partition explicitly), so that
/// output for all of them proves every partition is consumed again.
async fn write_markers(setup: &Setup, tag: &str) -> Vec<RawRecord> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &setup.bootstrap_servers)
        .create()
        .expect("marker producer");
    let topics = setup.topics();
    let mut markers = Vec::new();
    for entity in Entity::ALL {
        let topic = topics.raw(entity.source_table()).expect("raw topic");
        for partition in 0..RAW_PARTITIONS {
            let marker = raw(
                entity,
                &format!("{tag}-{}-{partition}", entity.source_table()),
                1,
                RecordOp::Upsert,
            );
            let value = marker.encode().expect("marker encodes");
            let key = key(&marker.sys_id);
            producer
                .send(
                    FutureRecord::to(&topic)
                        .partition(partition)
                        .key(&key)
                        .payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(error, _)| error)
                .expect("marker acknowledged");
            markers.push(marker);
        }
    }
    markers
}

/// Feeds records `from..` in chunks until `stop` is set; returns every record written.
fn feed(
    setup: &Setup,
    from: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<RawRecord>> {
    let writer = RawWriter::new(setup);
    tokio::spawn(async move {
        let mut written = Vec::new();
        let mut next = from;
        while !stop.load(Ordering::Relaxed) {
            let chunk = records(next..next + 200);
            writer.write(&chunk).await;
            next += chunk.len();
            written.extend(chunk);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        written
    })
}

/// Waits until the reader holds the end state of `inputs`; returns how long that took.
async fn wait_complete(
    reader: &mut OutputReader,
    inputs: &[RawRecord],
    timeout: Duration,
    logs: &dyn Fn() -> String,
) -> Duration {
    let started = Instant::now();
    let expected = expected_end_state(inputs);
    let complete = reader
        .read_until(timeout, |reader| missing(reader, &expected) == 0)
        .await;
    assert!(
        complete,
        "{} of {} records lack their newest version (stale or lost); stage output:\n{}",
        missing(reader, &expected),
        expected.len(),
        logs()
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_one_of_two_replicas_is_killed_the_survivor_takes_over_its_partitions_and_nothing_is_lost()
-> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let setup = setup(broker);
    setup.create_raw_topics().await;
    let dir = tempfile::tempdir()?;
    let (mut a_setup, mut b_setup) = (setup.clone(), setup.clone());
    a_setup.listen = free_listen_addr();
    b_setup.listen = free_listen_addr();
    let mut a = spawn_normalizer(&a_setup.write(dir.path(), "a.toml"), &[]);
    let mut b: Option<StageProcess> = None;

    // Records keep coming until both replicas have read some, so both hold partitions.
    let writer = RawWriter::new(&setup);
    let (a_addr, b_addr) = (a_setup.listen.clone(), b_setup.listen.clone());
    let mut inputs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(counter(&a_addr, RECORDS_IN) > 0.0 && counter(&b_addr, RECORDS_IN) > 0.0) {
        if b.is_none() && counter(&a_addr, RECORDS_IN) > 0.0 {
            b = Some(spawn_normalizer(&b_setup.write(dir.path(), "b.toml"), &[]));
        }
        assert!(
            Instant::now() < deadline,
            "both replicas must get partitions\nA:\n{}\nB:\n{}",
            a.text(),
            b.as_ref().map(StageProcess::text).unwrap_or_default()
        );
        let batch = records(inputs.len()..inputs.len() + 500);
        writer.write(&batch).await;
        inputs.extend(batch);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut b = b.expect("B started");
    let mut reader = OutputReader::new(&setup);
    wait_complete(&mut reader, &inputs, Duration::from_secs(120), &|| {
        format!("A:\n{}\nB:\n{}", a.text(), b.text())
    })
    .await;

    a.kill();
    let killed = Instant::now();
    // Some of these land on A's partitions: only B can normalize them now.
    let markers = write_markers(&setup, "after-kill").await;
    let more = records(inputs.len()..inputs.len() + 4_000);
    writer.write(&more).await;
    inputs.extend(markers.iter().cloned());
    let took = wait_complete(&mut reader, &markers, Duration::from_secs(120), &|| {
        b.text()
    })
    .await;
    println!(
        "recovery: every raw partition normalized again {:?} after the kill ({:?} of it waiting \
         for output; session.timeout.ms {SESSION_TIMEOUT_MS})",
        killed.elapsed(),
        took
    );
    inputs.extend(more);
    wait_complete(&mut reader, &inputs, Duration::from_secs(120), &|| b.text()).await;
    assert!(b.is_running(), "B carried on:\n{}", b.text());
    Ok(())
}

/// How the restarted replica identifies itself to the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    /// A new member id per start: the group waits for the killed member's session to expire.
    Dynamic,
    /// `group_instance_id`: the restarted member takes the killed one's place.
    Static,
}

/// A lone normalizer, fed continuously, is killed (SIGKILL) and restarted within two seconds
/// [`FAST_RESTARTS`] times; each restarted process must read and write again (its partitions
/// came back), and in the end no record lacks its newest version.
async fn fast_restarts(membership: Membership) -> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let mut setup = setup(broker);
    setup.listen = free_listen_addr();
    if membership == Membership::Static {
        setup.normalizer = format!("group_instance_id = \"{}\"", unique("normalizer-0"));
    }
    setup.create_raw_topics().await;
    let dir = tempfile::tempdir()?;
    let config = setup.write(dir.path(), "normalizer.toml");
    let addr = setup.listen.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let feeder = feed(&setup, 0, Arc::clone(&stop));
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::rng().random());
    let mut stage = spawn_normalizer(&config, &[]);
    wait_for_output(&addr, &stage, Duration::from_secs(90)).await;
    let mut recoveries = Vec::new();
    for cycle in 1..=FAST_RESTARTS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
        assert!(
            stage.is_running(),
            "the stage died by itself:\n{}",
            stage.text()
        );
        stage.kill();
        let killed = Instant::now();
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1_500))).await;
        stage = spawn_normalizer(&config, &[]);
        wait_for_output(&addr, &stage, Duration::from_secs(90)).await;
        let took = killed.elapsed();
        println!("{membership:?} cycle {cycle}: first output {took:?} after the kill");
        recoveries.push(took);
    }
    stop.store(true, Ordering::Relaxed);
    let inputs = feeder.await?;
    let mut reader = OutputReader::new(&setup);
    wait_complete(&mut reader, &inputs, Duration::from_secs(120), &|| {
        stage.text()
    })
    .await;
    recoveries.sort();
    let mean = recoveries.iter().sum::<Duration>() / recoveries.len() as u32;
    println!(
        "{membership:?} membership, session.timeout.ms {SESSION_TIMEOUT_MS}: kill to first \
         output after a fast restart: mean {mean:?}, median {:?}, max {:?} over {} restarts; \
         {} records, none stale",
        recoveries[recoveries.len() / 2],
        recoveries[recoveries.len() - 1],
        recoveries.len(),
        inputs.len()
    );
    let status = stage.stop(Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|status| status.success()),
        "clean exit on SIGTERM: {status:?}"
    );
    Ok(())
}

/// Until the process serving `/metrics` at `addr` has read and written records.
async fn wait_for_output(addr: &str, stage: &StageProcess, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !(counter(addr, RECORDS_IN) > 0.0 && counter(addr, RECORDS_OUT) > 0.0) {
        assert!(
            Instant::now() < deadline,
            "the restarted stage got no partitions within {timeout:?}:\n{}",
            stage.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_normalizer_killed_and_restarted_at_once_ten_times_gets_its_partitions_back_each_time()
-> anyhow::Result<()> {
    fast_restarts(Membership::Dynamic).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_killed_and_restarted_at_once_ten_times_gets_its_partitions_back_each_time()
-> anyhow::Result<()> {
    fast_restarts(Membership::Static).await
}
