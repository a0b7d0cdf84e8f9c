//! `kill -9` at random moments while 50,000 raw records flow: after restarts, the entity
//! topics hold the newest version of every record (or its tombstone), nothing lost.

use crate::common;

use std::time::{Duration, Instant};

use common::{OutputReader, RawWriter, Setup, expected_end_state, missing, raw, spawn_normalizer};
use nowstream_model::{Entity, RawRecord, RecordOp};
use nowstream_testkit::KafkaBroker;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const RECORDS: usize = 50_000;
const KEYS: usize = 36_000;
const KILLS: usize = 4;
const CHUNK: usize = 2_500;

/// Pause between a kill and the restart, as a crash-looping pod's restart back-off gives.
/// Apache Kafka hands the restarted member its partitions whether or not it already dropped the
/// killed one (`failover.rs` beside this file restarts at once, ten times).
const RESTART_PAUSE: Duration = Duration::from_millis(2_500);

/// `NOWSTREAM_TEST_SEED` reproduces a run; the seed is printed either way.
fn seed() -> u64 {
    std::env::var("NOWSTREAM_TEST_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(20_240_305)
}

/// `KEYS` records over all four tables, then more versions of random keys until there are
/// `RECORDS`; some keys end deleted. Versions of one key appear in increasing order, as the
/// fetcher publishes them.
fn inputs(rng: &mut ChaCha8Rng) -> Vec<RawRecord> {
    let entity_of = |n: usize| match n % 10 {
        0..=5 => Entity::Incident,
        6..=7 => Entity::ChangeRequest,
        8 => Entity::User,
        _ => Entity::FieldDefinition,
    };
    let mut versions = vec![1_i64; KEYS];
    let mut order: Vec<usize> = (0..KEYS).collect();
    for _ in KEYS..RECORDS {
        let n = rng.random_range(0..KEYS / 4);
        versions[n] += 1;
        order.push(n);
    }
    order.shuffle(rng);
    let mut emitted = vec![0_i64; KEYS];
    order
        .into_iter()
        .map(|n| {
            emitted[n] += 1;
            let last = emitted[n] == versions[n];
            let op = if last && versions[n] > 1 && n % 7 == 0 {
                RecordOp::Delete
            } else {
                RecordOp::Upsert
            };
            raw(entity_of(n), &format!("k{n:05}"), emitted[n], op)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_version_of_every_record_survives_kill_9_at_random_moments() -> anyhow::Result<()>
{
    let seed = seed();
    println!("seed {seed} (set NOWSTREAM_TEST_SEED to reproduce)");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let broker = KafkaBroker::shared()?;
    let mut setup = Setup::new(broker);
    setup.normalizer = "max_in_flight = 5000".into();
    // Outputs wait a while in the producer before they are sent, so a kill always finds many
    // of them unacknowledged: a stage that committed inputs before their outputs' ack would
    // lose records here.
    setup.kafka_properties = "\"linger.ms\" = \"500\"".into();
    setup.create_raw_topics().await;
    let dir = tempfile::tempdir()?;
    let config = setup.write(dir.path(), "normalizer.toml");

    let inputs = inputs(&mut rng);
    let expected = expected_end_state(&inputs);
    assert!(
        expected.values().any(Option::is_none),
        "some records end deleted"
    );
    let started = Instant::now();
    let writer = RawWriter::new(&setup);
    let feed = tokio::spawn(async move {
        for chunk in inputs.chunks(CHUNK) {
            writer.write(chunk).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    let mut stage = spawn_normalizer(&config, &[]);
    for kill in 1..=KILLS {
        let after = Duration::from_millis(rng.random_range(1_000..5_000));
        tokio::time::sleep(after).await;
        assert!(
            stage.is_running(),
            "the stage died by itself:\n{}",
            stage.text()
        );
        stage.kill();
        println!("kill {kill} at {:?}", started.elapsed());
        tokio::time::sleep(RESTART_PAUSE).await;
        stage = spawn_normalizer(&config, &[]);
    }
    feed.await?;
    println!(
        "all {RECORDS} raw records written at {:?}",
        started.elapsed()
    );

    let mut reader = OutputReader::new(&setup);
    let complete = reader
        .read_until(Duration::from_secs(120), |reader| {
            missing(reader, &expected) == 0
        })
        .await;
    println!(
        "{} entity messages read for {} records at {:?}",
        reader.messages,
        expected.len(),
        started.elapsed()
    );
    assert!(
        complete,
        "{} of {} records lack their newest version; stage output:\n{}",
        missing(&reader, &expected),
        expected.len(),
        stage.text()
    );
    assert!(reader.dead_letters.is_empty(), "nothing was dead-lettered");
    let status = stage.stop(Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|status| status.success()),
        "clean exit on SIGTERM: {status:?}"
    );
    Ok(())
}
