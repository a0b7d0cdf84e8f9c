//! Checkpoint store and replica coordination against a real Apache Kafka broker.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use nowstream_bus::{Producer, TopicSpec, ensure_topics};
use nowstream_fetcher::checkpoints::CheckpointStore;
use nowstream_fetcher::coordination::Coordinator;
use nowstream_model::Checkpoint;
use nowstream_testkit::{KafkaBroker, unique};
use tokio::sync::watch;

fn checkpoint(table: &str, second: u32, sys_id: &str) -> Checkpoint {
    Checkpoint {
        integration_id: "4711".into(),
        table: table.into(),
        last_updated_on: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, second).unwrap(),
        last_sys_id: sys_id.into(),
        updated_at: Utc::now(),
        records_total: i64::from(second),
        deletes_last_created_on: None,
        deletes_last_sys_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_checkpoint_of_each_unit_is_read_back() -> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    let topic = unique("checkpoints");
    ensure_topics(&kafka, &[TopicSpec::compacted(&topic, 3)]).await?;
    let store = CheckpointStore::new(kafka.clone(), Producer::new(&kafka)?, topic);

    assert!(
        store.load_all().await?.is_empty(),
        "a new topic has no checkpoints"
    );
    for second in 1..=5 {
        store
            .save(
                "4711:incident",
                &checkpoint("incident", second, &format!("a{second}")),
            )
            .await?;
    }
    store
        .save("4711:sys_user", &checkpoint("sys_user", 9, "u9"))
        .await?;

    let all = store.load_all().await?;
    assert_eq!(all.len(), 2);
    assert_eq!(
        all["4711:incident"],
        checkpoint_like(&all["4711:incident"], "incident", 5, "a5")
    );
    assert_eq!(all["4711:sys_user"].last_sys_id, "u9");
    assert_eq!(store.load("4711:change_request").await?, None);
    Ok(())
}

/// Compares everything but `updated_at`, which is the wall-clock time of the save.
fn checkpoint_like(actual: &Checkpoint, table: &str, second: u32, sys_id: &str) -> Checkpoint {
    Checkpoint {
        updated_at: actual.updated_at,
        ..checkpoint(table, second, sys_id)
    }
}

async fn wait_for(
    receivers: &mut [&mut watch::Receiver<BTreeSet<i32>>],
    condition: impl Fn(&[BTreeSet<i32>]) -> bool,
) -> Vec<BTreeSet<i32>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let sets: Vec<BTreeSet<i32>> = receivers.iter().map(|r| r.borrow().clone()).collect();
        if condition(&sets) {
            return sets;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "assignments never settled: {sets:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_the_partitions_and_the_survivor_takes_all_when_one_leaves()
-> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    let topic = unique("coordination");
    let group = unique("fetchers");
    ensure_topics(&kafka, &[TopicSpec::new(&topic, 6)]).await?;
    let all: BTreeSet<i32> = (0..6).collect();

    let first = Coordinator::join(&kafka, &group, &topic)?;
    let mut first_owned = first.owned();
    wait_for(&mut [&mut first_owned], |sets| sets[0] == all).await;

    let second = Coordinator::join(&kafka, &group, &topic)?;
    let mut second_owned = second.owned();
    let split = wait_for(&mut [&mut first_owned, &mut second_owned], |sets| {
        !sets[0].is_empty()
            && !sets[1].is_empty()
            && sets[0].is_disjoint(&sets[1])
            && sets[0].union(&sets[1]).copied().collect::<BTreeSet<_>>() == all
    })
    .await;
    assert_eq!(split[0].len() + split[1].len(), 6);

    second.leave().await;
    wait_for(&mut [&mut first_owned], |sets| sets[0] == all).await;
    first.leave().await;
    Ok(())
}
