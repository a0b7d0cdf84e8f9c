//! What SEI ends with when versions and operations of one record meet: a rejected newest
//! operation does not swallow the ones it replaced, and the update counter orders versions
//! before the update time.

use crate::common;

use std::time::Duration;

use anyhow::Result;
use common::{API_KEY, Env, Expected, Final, Produced, at, incident, produce};
use nowstream_model::{AvroRecord, Entity, Version};
use nowstream_testkit::unique;

fn upsert(sys_id: &str, seconds: i64, mod_count: i64, bad: bool) -> Result<Produced> {
    let mut record = incident(sys_id, at(seconds), Some(mod_count));
    if bad {
        // Valid Avro, but against SEI's rules: sei-local answers 400 naming the record.
        record.time_to_restore_ms = Some(-1);
    }
    Ok(Produced {
        entity: Entity::Incident,
        sys_id: sys_id.into(),
        value: Some(record.encode()?),
    })
}

fn delete(sys_id: &str) -> Produced {
    Produced {
        entity: Entity::Incident,
        sys_id: sys_id.into(),
        value: None,
    }
}

fn live(seconds: i64, mod_count: i64) -> Final {
    Final::Live(Version::new(at(seconds), Some(mod_count)))
}

fn key(sys_id: &str) -> (Entity, String) {
    (Entity::Incident, sys_id.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_newest_operation_does_not_swallow_the_ones_it_replaced() -> Result<()> {
    let env = Env::start().await?;
    let (x, y, z) = (
        "0000000000000000000000000000000a",
        "0000000000000000000000000000000b",
        "0000000000000000000000000000000c",
    );
    // A long linger: each round is one batch, so operations of one sys_id collapse.
    let sink = common::InProcessSink::start(env.config(
        API_KEY,
        &unique("sink"),
        "batch_max_records = 100\nlinger = \"2s\"",
    ));
    produce(
        &env.kafka(),
        &env.topics(),
        &[upsert(x, 10, 1, false)?, upsert(y, 10, 1, false)?],
    )
    .await?;
    let first = Expected::from([(key(x), live(10, 1)), (key(y), live(10, 1))]);
    env.wait_for_state(&first, Duration::from_secs(120)).await?;

    // x: deleted, then a bad upsert; y: a good v2, then a bad v3; z: a batch-mate.
    produce(
        &env.kafka(),
        &env.topics(),
        &[
            delete(x),
            upsert(x, 30, 2, true)?,
            upsert(y, 20, 2, false)?,
            upsert(y, 30, 3, true)?,
            upsert(z, 10, 1, false)?,
        ],
    )
    .await?;
    let expected = Expected::from([
        (key(x), Final::Deleted),
        (key(y), live(20, 2)),
        (key(z), live(10, 1)),
    ]);
    env.wait_for_state(&expected, Duration::from_secs(120))
        .await?;
    let dead = common::read_topic(
        &env.kafka(),
        &env.topics().dlq(),
        2,
        Duration::from_secs(60),
    )
    .await?;
    sink.stop().await?;
    let mut dead_keys: Vec<String> = dead
        .iter()
        .map(|message| String::from_utf8_lossy(message.key.as_deref().unwrap_or_default()).into())
        .collect();
    dead_keys.sort();
    assert_eq!(
        dead_keys,
        vec![
            format!("{}:{x}", common::INTEGRATION),
            format!("{}:{y}", common::INTEGRATION)
        ],
        "only the two rejected upserts are dead-lettered"
    );
    env.check_state(&expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_write_with_an_earlier_update_time_but_a_higher_mod_count_reaches_sei() -> Result<()>
{
    let env = Env::start().await?;
    let x = "0000000000000000000000000000000d";
    let sink = common::InProcessSink::start(env.config(API_KEY, &unique("sink"), ""));
    produce(&env.kafka(), &env.topics(), &[upsert(x, 200, 7, false)?]).await?;
    env.wait_for_state(
        &Expected::from([(key(x), live(200, 7))]),
        Duration::from_secs(120),
    )
    .await?;
    // Update 8 committed on a node whose clock is 50 s behind.
    produce(&env.kafka(), &env.topics(), &[upsert(x, 150, 8, false)?]).await?;
    let expected = Expected::from([(key(x), live(150, 8))]);
    env.wait_for_state(&expected, Duration::from_secs(120))
        .await?;
    sink.stop().await?;
    env.check_state(&expected)
}
