//! Replay: re-normalizing the raw topics under a changed configuration, without fetching.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use common::{OutputReader, RawWriter, Setup, key, raw, spawn_normalizer};
use nowstream_model::{AvroRecord, Entity, Incident, RecordOp};
use nowstream_normalizer::{ReplayFrom, replay};
use nowstream_runtime::Health;
use nowstream_testkit::KafkaBroker;
use tokio_util::sync::CancellationToken;

fn incidents(range: std::ops::Range<usize>) -> Vec<nowstream_model::RawRecord> {
    range
        .map(|n| raw(Entity::Incident, &format!("inc-{n}"), 1, RecordOp::Upsert))
        .collect()
}

fn incident(reader: &OutputReader, sys_id: &str) -> anyhow::Result<Incident> {
    let value = reader
        .get(Entity::Incident, &key(sys_id))
        .and_then(Option::as_ref)
        .with_context(|| format!("no entity for {sys_id}"))?;
    Ok(Incident::decode(value)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_adding_an_excluded_field_publishes_entities_without_it()
-> anyhow::Result<()> {
    const COUNT: usize = 300;
    let broker = KafkaBroker::shared()?;
    let mut setup = Setup::new(broker);
    setup.create_raw_topics().await;
    RawWriter::new(&setup).write(&incidents(0..COUNT)).await;

    // First pass: nothing excluded, the summaries are published.
    let shutdown = CancellationToken::new();
    let stage = tokio::spawn(nowstream_normalizer::run(
        setup.config(),
        Health::new(),
        shutdown.clone(),
    ));
    let mut reader = OutputReader::new(&setup);
    let all = |reader: &OutputReader| {
        (0..COUNT).all(|n| {
            reader
                .get(Entity::Incident, &key(&format!("inc-{n}")))
                .is_some()
        })
    };
    assert!(
        reader.read_until(Duration::from_secs(60), all).await,
        "first pass incomplete"
    );
    shutdown.cancel();
    stage.await??;
    assert_eq!(
        incident(&reader, "inc-7")?.short_description.as_deref(),
        Some("summary of inc-7 v1")
    );

    // The policy changes; the binary replays the raw topics under it and exits.
    setup.exclude_fields = vec!["Summary".into()];
    let dir = tempfile::tempdir()?;
    let config = setup.write(dir.path(), "normalizer.toml");
    let mut replaying = spawn_normalizer(&config, &["replay", "--from-beginning"]);
    let status = replaying.wait_exit(Duration::from_secs(120)).await;
    assert!(
        status.is_some_and(|status| status.success()),
        "replay exit {status:?}:\n{}",
        replaying.text()
    );
    assert!(
        replaying.text().contains("replay complete (4 partitions"),
        "{}",
        replaying.text()
    );
    assert!(
        replaying
            .text()
            .contains(&format!("{COUNT} records read, {COUNT} published")),
        "{}",
        replaying.text()
    );

    let before = reader.messages;
    assert!(
        reader
            .read_until(Duration::from_secs(30), |reader| reader.messages
                >= before + COUNT)
            .await,
        "replayed entities not seen"
    );
    for n in 0..COUNT {
        let entity = incident(&reader, &format!("inc-{n}"))?;
        assert_eq!(
            entity.short_description, None,
            "inc-{n} still has its summary"
        );
        assert!(
            entity
                .excluded_fields
                .contains(&"short_description".to_owned()),
            "inc-{n}: {:?}",
            entity.excluded_fields
        );
        assert_eq!(
            entity.number.as_deref(),
            Some(format!("N-inc-{n}").as_str()),
            "other fields kept"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_since_a_time_renormalizes_only_what_was_published_after_it() -> anyhow::Result<()>
{
    let broker = KafkaBroker::shared()?;
    let mut setup = Setup::new(broker);
    setup.create_raw_topics().await;
    let writer = RawWriter::new(&setup);
    writer.write(&incidents(0..100)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let since = Utc::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer.write(&incidents(100..150)).await;

    setup.exclude_fields = vec!["short_description".into()];
    let report = replay(
        setup.config(),
        ReplayFrom::Since(since),
        CancellationToken::new(),
    )
    .await?;
    println!("{report:?}");
    assert!(report.completed, "{report:?}");
    assert_eq!(report.summary.records_out, 50, "{}", report.summary);
    assert_eq!(report.planned, 50, "{report:?}");

    let mut reader = OutputReader::new(&setup);
    reader
        .read_until(Duration::from_secs(10), |reader| reader.messages >= 50)
        .await;
    // Nothing more arrives: the replay stopped at the end it captured.
    reader.read_until(Duration::from_secs(2), |_| false).await;
    let published: HashSet<String> = reader.latest.keys().map(|(_, key)| key.clone()).collect();
    let expected: HashSet<String> = (100..150).map(|n| key(&format!("inc-{n}"))).collect();
    assert_eq!(published, expected);
    assert_eq!(incident(&reader, "inc-120")?.short_description, None);
    Ok(())
}
