//! Two replicas in one consumer group split the raw partitions; when one stops (SIGTERM) the
//! other takes its partitions over, when one dies (SIGKILL) the other carries on, and nothing
//! is lost either way.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    OutputReader, RawWriter, Setup, expected_end_state, free_listen_addr, missing, raw,
    scrape_counter, spawn_normalizer,
};
use nowstream_model::{Entity, RawRecord, RecordOp};
use nowstream_testkit::{KafkaBroker, StageProcess};

const RECORDS_IN: &str = "nowstream_normalizer_records_in_total";

fn inputs(range: std::ops::Range<usize>) -> Vec<RawRecord> {
    range
        .map(|n| {
            let entity = Entity::ALL[n % Entity::ALL.len()];
            raw(entity, &format!("k{n:05}"), 1, RecordOp::Upsert)
        })
        .collect()
}

/// Records read by the replica serving `/metrics` at `addr` (0 when it does not answer).
fn records_in(addr: &str) -> f64 {
    scrape_counter(addr, RECORDS_IN).unwrap_or(0.0)
}

/// How replica A ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// SIGTERM: A finishes its in-flight work, commits and leaves the group; B is given A's
    /// partitions at once.
    Stop,
    /// SIGKILL: A vanishes. B goes on with its own partitions; A's are taken over once the
    /// broker dropped A, here by A's replacement (as an orchestrator restarts a killed pod).
    Kill,
}

/// Starts replicas A and B in one group while records flow, checks both get work, ends A, and
/// checks that everything is normalized, A's partitions included.
async fn split_then_lose_one(ending: Ending) -> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let mut setup = Setup::new(broker);
    // A session of 12 s keeps librdkafka's heartbeat at its 3 s default (a quarter of it).
    setup.session_timeout_ms = 12_000;
    setup.create_raw_topics().await;
    let dir = tempfile::tempdir()?;
    let (mut a_setup, mut b_setup) = (setup.clone(), setup.clone());
    a_setup.listen = free_listen_addr();
    b_setup.listen = free_listen_addr();
    let a_config = a_setup.write(dir.path(), "a.toml");
    let mut a = spawn_normalizer(&a_config, &[]);
    let mut b: Option<StageProcess> = None;

    // Records keep coming until both replicas have read some: which one joins first, and
    // when the group rebalances, is up to the broker.
    let writer = RawWriter::new(&setup);
    let (a_addr, b_addr) = (a_setup.listen.clone(), b_setup.listen.clone());
    let mut first = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(records_in(&a_addr) > 0.0 && records_in(&b_addr) > 0.0) {
        // B joins once A is at work, as replicas of a deployment rarely start in lockstep.
        if b.is_none() && records_in(&a_addr) > 0.0 {
            b = Some(spawn_normalizer(&b_setup.write(dir.path(), "b.toml"), &[]));
        }
        assert!(
            Instant::now() < deadline,
            "both replicas must get partitions: A read {}, B read {}\nA:\n{}\nB:\n{}",
            records_in(&a_addr),
            records_in(&b_addr),
            a.text(),
            b.as_ref().map(StageProcess::text).unwrap_or_default()
        );
        let batch = inputs(first.len()..first.len() + 500);
        writer.write(&batch).await;
        first.extend(batch);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut b = b.expect("B started");

    let killed_at = Instant::now();
    match ending {
        Ending::Stop => {
            let status = a.stop(Duration::from_secs(30)).await;
            assert!(
                status.is_some_and(|status| status.success()),
                "A exits cleanly: {status:?}"
            );
        }
        Ending::Kill => a.kill(),
    }
    // Written after A is gone: about half of them land on partitions A held.
    let b_before = records_in(&b_addr);
    let second = inputs(first.len()..first.len() + 4_000);
    writer.write(&second).await;
    let expected = expected_end_state(&[first, second].concat());

    if ending == Ending::Kill {
        let deadline = Instant::now() + Duration::from_secs(60);
        while records_in(&b_addr) < b_before + 1_000.0 {
            assert!(
                Instant::now() < deadline,
                "B stopped working after A was killed:\n{}",
                b.text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // A's replacement joins once the broker dropped A (B took A's partitions meanwhile)
        // and gets its share back.
        let session = Duration::from_millis(u64::from(setup.session_timeout_ms) + 1_000);
        tokio::time::sleep(session.saturating_sub(killed_at.elapsed())).await;
        a = spawn_normalizer(&a_config, &[]);
    }

    let mut reader = OutputReader::new(&setup);
    let complete = reader
        .read_until(Duration::from_secs(120), |reader| {
            missing(reader, &expected) == 0
        })
        .await;
    assert!(
        complete,
        "{} of {} records missing after A ended; B:\n{}\nA:\n{}",
        missing(&reader, &expected),
        expected.len(),
        b.text(),
        a.text()
    );
    assert!(b.is_running(), "B carried on");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_one_of_two_replicas_stops_the_other_takes_over_its_partitions() -> anyhow::Result<()>
{
    split_then_lose_one(Ending::Stop).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_one_of_two_replicas_is_killed_the_other_carries_on_and_nothing_is_lost()
-> anyhow::Result<()> {
    split_then_lose_one(Ending::Kill).await
}
