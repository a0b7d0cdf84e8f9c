//! Poison records between good ones: every good record is published, every poison record is
//! parked in the DLQ with its reason and where it came from, and the stream goes on.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use common::{OutputReader, RawWriter, Setup, key, raw};
use nowstream_bus::dlq::headers;
use nowstream_model::{AvroRecord, Entity, RecordOp};
use nowstream_runtime::Health;
use nowstream_testkit::TansuBroker;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dlq_with_their_reason_and_good_ones_come_out()
-> anyhow::Result<()> {
    let broker = TansuBroker::start()?;
    let setup = Setup::new(&broker);
    setup.create_raw_topics().await;
    let topics = setup.topics();
    let incidents = topics.raw("incident")?;

    // Poison, each with the reason it must be dead-lettered for.
    let mut not_json = raw(Entity::Incident, "p-not-json", 1, RecordOp::Upsert);
    not_json.payload = Some(r#"{"number": {"value": "INC1", "displ"#.into());
    let mut no_sys_id = raw(Entity::Incident, "p-no-sys-id", 1, RecordOp::Upsert);
    no_sys_id.sys_id = String::new();
    no_sys_id.payload = Some(r#"{"number": "INC2"}"#.into());
    let mut bad_time = raw(Entity::Incident, "p-bad-time", 1, RecordOp::Upsert);
    bad_time.payload =
        Some(r#"{"opened_at": {"value": "yesterday", "display_value": "yesterday"}}"#.into());
    let mut unknown_table = raw(Entity::Incident, "p-unknown-table", 1, RecordOp::Upsert);
    unknown_table.table = "problem".into();
    let mut unknown_integration = raw(
        Entity::Incident,
        "p-unknown-integration",
        1,
        RecordOp::Upsert,
    );
    unknown_integration.integration_id = "9999".into();
    let poison: Vec<(String, Vec<u8>, &str)> = vec![
        (key("p-not-json"), not_json.encode()?, "payload_not_json"),
        (key("p-no-sys-id"), no_sys_id.encode()?, "missing_sys_id"),
        (key("p-bad-time"), bad_time.encode()?, "unparseable_time"),
        (
            key("p-unknown-table"),
            unknown_table.encode()?,
            "unknown_table",
        ),
        (
            key("p-unknown-integration"),
            unknown_integration.encode()?,
            "unknown_integration",
        ),
        (
            key("p-not-avro"),
            b"{\"sys_id\": \"plain json\"}".to_vec(),
            "undecodable_avro",
        ),
    ];

    // Good records before, between and after the poison ones, all on the same topic.
    let writer = RawWriter::new(&setup);
    let good = |range: std::ops::Range<usize>| -> Vec<_> {
        range
            .map(|n| raw(Entity::Incident, &format!("good-{n}"), 1, RecordOp::Upsert))
            .collect()
    };
    writer.write(&good(0..50)).await;
    for (index, (poison_key, value, _)) in poison.iter().enumerate() {
        writer
            .write_bytes(&[(incidents.as_str(), poison_key.as_str(), value.as_slice())])
            .await;
        writer.write(&good(50 + index * 10..60 + index * 10)).await;
    }
    writer.write(&good(200..250)).await;

    let shutdown = CancellationToken::new();
    let health = Health::new();
    let stage = tokio::spawn(nowstream_normalizer::run(
        setup.config(),
        health.clone(),
        shutdown.clone(),
    ));

    let good_keys: HashSet<String> = (0..50)
        .chain(50..110)
        .chain(200..250)
        .map(|n| key(&format!("good-{n}")))
        .collect();
    let mut reader = OutputReader::new(&setup);
    let complete = reader
        .read_until(Duration::from_secs(90), |reader| {
            reader.dead_letters.len() >= poison.len()
                && good_keys
                    .iter()
                    .all(|key| reader.get(Entity::Incident, key).is_some())
        })
        .await;
    let readiness = health.readiness();
    assert!(
        readiness.ready,
        "poison records do not make the stage unready: {readiness:?}"
    );
    shutdown.cancel();
    let summary = stage.await??;
    assert!(
        complete,
        "published {} of {}, dead-lettered {} of {}",
        reader.messages,
        good_keys.len(),
        reader.dead_letters.len(),
        poison.len()
    );

    let reasons: BTreeMap<String, String> = reader
        .dead_letters
        .iter()
        .map(|seen| {
            (
                seen.key.clone(),
                seen.header(headers::REASON).unwrap_or_default(),
            )
        })
        .collect();
    for (poison_key, value, reason) in &poison {
        assert_eq!(
            reasons.get(poison_key).map(String::as_str),
            Some(*reason),
            "{poison_key}"
        );
        let parked = reader
            .dead_letters
            .iter()
            .find(|seen| &seen.key == poison_key)
            .context("parked")?;
        assert_eq!(
            parked.value.as_deref(),
            Some(value.as_slice()),
            "original bytes kept"
        );
        assert_eq!(parked.header(headers::STAGE).as_deref(), Some("normalizer"));
        assert_eq!(
            parked.header(headers::SOURCE_TOPIC).as_deref(),
            Some(incidents.as_str())
        );
        assert!(
            parked
                .header(headers::SOURCE_OFFSET)
                .is_some_and(|offset| offset.parse::<i64>().is_ok())
        );
        assert!(
            parked
                .header(headers::DETAIL)
                .is_some_and(|detail| !detail.is_empty())
        );
    }
    assert_eq!(summary.dead_lettered, poison.len() as u64, "{summary}");
    assert_eq!(
        reader.messages,
        good_keys.len(),
        "no poison record reached an entity topic"
    );
    Ok(())
}
