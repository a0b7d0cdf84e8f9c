//! Records SEI rejects, and records nobody can read, go to the DLQ; the rest lands.

use crate::common;

use std::time::Duration;

use anyhow::Result;
use common::{Env, Final, INTEGRATION, Produced, at, entity_value, incident, produce};
use nowstream_bus::dlq::headers;
use nowstream_model::{AvroRecord, Entity, Version};
use nowstream_testkit::unique;

fn header(message: &nowstream_testkit::TopicMessage, name: &str) -> String {
    message.header(name).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_sei_rejects_goes_to_the_dlq_while_its_batch_mates_land() -> Result<()> {
    let env = Env::start().await?;
    let mut records = Vec::new();
    let mut expected = common::Expected::new();
    for index in 0..40 {
        let sys_id = format!("{index:032x}");
        let (value, version) = entity_value(Entity::Incident, &sys_id, index, 1);
        records.push(Produced {
            entity: Entity::Incident,
            sys_id: sys_id.clone(),
            value: Some(value),
        });
        expected.insert((Entity::Incident, sys_id), Final::Live(version));
    }
    // Valid Avro, but against SEI's rules: a negative time to restore.
    let bad_id = "badbadbadbadbadbadbadbadbadbad00";
    let mut bad = incident(bad_id, at(5), Some(1));
    bad.time_to_restore_ms = Some(-1);
    let bad_bytes = bad.encode()?;
    records.insert(
        17,
        Produced {
            entity: Entity::Incident,
            sys_id: bad_id.into(),
            value: Some(bad_bytes.clone()),
        },
    );
    produce(&env.kafka(), &env.topics(), &records).await?;

    // One batch holds everything, so the bad record has 40 batch-mates.
    let sink = common::InProcessSink::start(env.config(
        common::API_KEY,
        &unique("sink"),
        "batch_max_records = 100\nlinger = \"2s\"",
    ));
    env.wait_for_state(&expected, Duration::from_secs(120))
        .await?;
    let dead = common::read_topic(
        &env.kafka(),
        &env.topics().dlq(),
        1,
        Duration::from_secs(60),
    )
    .await?;
    sink.stop().await?;

    let message = &dead[0];
    assert_eq!(
        message.key.as_deref(),
        Some(format!("{INTEGRATION}:{bad_id}").as_bytes())
    );
    assert_eq!(
        message.payload.as_deref(),
        Some(bad_bytes.as_slice()),
        "original bytes"
    );
    assert_eq!(header(message, headers::STAGE), "sink");
    assert_eq!(header(message, headers::REASON), "rejected_by_sei");
    let detail = header(message, headers::DETAIL);
    assert!(
        detail.contains("400") && detail.contains("time_to_restore_ms"),
        "SEI's message is the detail: {detail}"
    );
    assert_eq!(
        header(message, headers::SOURCE_TOPIC),
        env.topics().entity(Entity::Incident)
    );
    // The batch with batch-mates was refused, then the bad record alone: two 400s.
    assert_eq!(
        env.sei.stats().count(400),
        2,
        "SEI refused the whole batch, then the isolated record: {:?}",
        env.sei.stats()
    );
    env.check_state(&expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_goes_to_the_dlq_and_the_stream_goes_on() -> Result<()> {
    let env = Env::start().await?;
    let good_id = "00000000000000000000000000000001";
    let (good, version) = entity_value(Entity::User, good_id, 1, 1);
    let garbage = b"{\"not\": \"avro\"}".to_vec();
    let records = vec![
        Produced {
            entity: Entity::User,
            sys_id: "00000000000000000000000000000000".into(),
            value: Some(garbage.clone()),
        },
        Produced {
            entity: Entity::User,
            sys_id: good_id.into(),
            value: Some(good),
        },
    ];
    produce(&env.kafka(), &env.topics(), &records).await?;
    let sink = common::InProcessSink::start(env.config(common::API_KEY, &unique("sink"), ""));
    let expected = common::Expected::from([(
        (Entity::User, good_id.to_owned()),
        Final::Live(Version::new(at(61), Some(1))),
    )]);
    assert_eq!(expected.values().next(), Some(&Final::Live(version)));
    env.wait_for_state(&expected, Duration::from_secs(120))
        .await?;
    let dead = common::read_topic(
        &env.kafka(),
        &env.topics().dlq(),
        1,
        Duration::from_secs(60),
    )
    .await?;
    sink.stop().await?;
    assert_eq!(dead[0].payload.as_deref(), Some(garbage.as_slice()));
    assert_eq!(header(&dead[0], headers::REASON), "undecodable");
    assert!(header(&dead[0], headers::DETAIL).contains("single-object"));
    Ok(())
}
