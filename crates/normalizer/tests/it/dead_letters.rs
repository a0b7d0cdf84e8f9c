//! Poison records between good ones: every good record is published, every poison record is
//! parked in the DLQ with its reason and where it came from — scrubbed of the integration's
//! excluded fields, or as a reference only — and the stream goes on. An output over the
//! producer's size limit is one of them.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use common::{OutputReader, RawWriter, Setup, key, raw};
use nowstream_bus::dlq::{content, headers};
use nowstream_bus::{OutRecord, Producer};
use nowstream_model::{AvroRecord, Entity, RawRecord, RecordOp};
use nowstream_runtime::Health;
use nowstream_testkit::KafkaBroker;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dlq_with_their_reason_and_good_ones_come_out()
-> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let mut setup = Setup::new(broker);
    setup.exclude_fields = vec!["short_description".into()];
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
    // What each dead letter must hold: the record without its excluded field (scrubbed), or
    // nothing but the reference where it cannot be scrubbed.
    let scrubbed = |record: &RawRecord| {
        let mut record = record.clone();
        record.payload = record.payload.as_deref().map(|payload| {
            let mut json: serde_json::Value = serde_json::from_str(payload).expect("JSON");
            json.as_object_mut()
                .expect("object")
                .remove("short_description");
            json.to_string()
        });
        // Through Avro, as the DLQ holds it (times in milliseconds).
        Some(RawRecord::decode(&record.encode().expect("encodes")).expect("decodes"))
    };
    let poison: Vec<(String, Vec<u8>, &str, Option<RawRecord>)> = vec![
        (
            key("p-not-json"),
            not_json.encode()?,
            "payload_not_json",
            None,
        ),
        (
            key("p-no-sys-id"),
            no_sys_id.encode()?,
            "missing_sys_id",
            scrubbed(&no_sys_id),
        ),
        (
            key("p-bad-time"),
            bad_time.encode()?,
            "unparseable_time",
            scrubbed(&bad_time),
        ),
        (
            key("p-unknown-table"),
            unknown_table.encode()?,
            "unknown_table",
            scrubbed(&unknown_table),
        ),
        (
            key("p-unknown-integration"),
            unknown_integration.encode()?,
            "unknown_integration",
            None,
        ),
        (
            key("p-not-avro"),
            b"{\"sys_id\": \"plain json\"}".to_vec(),
            "undecodable_avro",
            None,
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
    for (index, (poison_key, value, _, _)) in poison.iter().enumerate() {
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
    for (poison_key, _, reason, expected) in &poison {
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
        match expected {
            Some(expected) => {
                let value = parked.value.as_deref().context("a scrubbed value")?;
                assert_eq!(&RawRecord::decode(value)?, expected, "{poison_key}");
                assert_eq!(
                    parked.header(headers::CONTENT).as_deref(),
                    Some(content::SCRUBBED)
                );
            }
            None => {
                assert_eq!(parked.value, None, "{poison_key}: a reference only");
                assert_eq!(
                    parked.header(headers::CONTENT).as_deref(),
                    Some(content::REFERENCE)
                );
            }
        }
        assert!(
            !String::from_utf8_lossy(parked.value.as_deref().unwrap_or_default())
                .contains("summary of"),
            "{poison_key}: the excluded short description was parked"
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

/// A raw message with one header, as a producer other than the fetcher might attach it.
async fn write_with_header(setup: &Setup, topic: &str, key: &str, value: &[u8]) {
    let producer = Producer::new(&setup.kafka()).expect("producer");
    producer
        .send(
            OutRecord::new(topic, key.as_bytes(), Some(value))
                .with_headers(&[("note", b"header secret".as_slice())]),
        )
        .await
        .expect("written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_carries_none_of_the_input_headers() -> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let setup = Setup::new(broker);
    setup.create_raw_topics().await;
    let incidents = setup.topics().raw("incident")?;
    write_with_header(&setup, &incidents, &key("h-1"), b"not a raw record").await;

    let shutdown = CancellationToken::new();
    let stage = tokio::spawn(nowstream_normalizer::run(
        setup.config(),
        Health::new(),
        shutdown.clone(),
    ));
    let mut reader = OutputReader::new(&setup);
    let parked = reader
        .read_until(Duration::from_secs(60), |reader| {
            !reader.dead_letters.is_empty()
        })
        .await;
    shutdown.cancel();
    stage.await??;
    assert!(parked, "the record was dead-lettered");
    let letter = &reader.dead_letters[0];
    assert_eq!(letter.header("note"), None);
    assert!(
        letter
            .headers
            .iter()
            .all(|(_, value)| !String::from_utf8_lossy(value).contains("header secret")),
        "{:?}",
        letter.headers
    );
    Ok(())
}

/// The raw writer for the oversized record: a limit high enough for it, where the stage keeps
/// librdkafka's default (1,000,000 bytes).
fn large_record_writer(setup: &Setup) -> Producer {
    let mut kafka = setup.kafka();
    kafka.properties.insert(
        "message.max.bytes".into(),
        secrecy::SecretString::from("16000000"),
    );
    Producer::new(&kafka).expect("producer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_the_producer_limit_is_dead_lettered_and_the_stream_goes_on()
-> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let mut setup = Setup::new(broker);
    // librdkafka's 1 MB limit (nowstream's default, 8 MiB, would take the 2 MB record).
    setup.kafka_properties = "\"message.max.bytes\" = \"1000000\"".into();
    setup.exclude_fields = vec!["Comments".into(), "short_description".into()];
    setup.create_raw_topics().await;
    let incidents = setup.topics().raw("incident")?;

    // One incident with a 2 MB custom field (kept: too large to publish), one with a 2 MB
    // comments journal (excluded: published without it), good ones around them.
    let huge = |fill: char| {
        let text: String = std::iter::repeat_n(fill, 2_000_000).collect();
        serde_json::json!({"value": text, "display_value": text})
    };
    let mut oversized = raw(Entity::Incident, "big-custom", 1, RecordOp::Upsert);
    let mut payload: serde_json::Value =
        serde_json::from_str(oversized.payload.as_deref().context("payload")?)?;
    payload["u_attachment_text"] = huge('a');
    payload["comments"] = serde_json::json!({"value": "", "display_value": "secret journal"});
    oversized.payload = Some(payload.to_string());
    let mut long_journal = raw(Entity::Incident, "big-journal", 1, RecordOp::Upsert);
    let mut payload: serde_json::Value =
        serde_json::from_str(long_journal.payload.as_deref().context("payload")?)?;
    payload["comments"] = huge('j');
    long_journal.payload = Some(payload.to_string());

    let writer = RawWriter::new(&setup);
    let good = |range: std::ops::Range<usize>| -> Vec<_> {
        range
            .map(|n| raw(Entity::Incident, &format!("good-{n}"), 1, RecordOp::Upsert))
            .collect()
    };
    writer.write(&good(0..20)).await;
    let large = large_record_writer(&setup);
    for record in [&oversized, &long_journal] {
        let value = record.encode()?;
        large
            .send(OutRecord::new(
                &incidents,
                key(&record.sys_id).as_bytes(),
                Some(&value),
            ))
            .await?;
    }
    writer.write(&good(20..40)).await;

    let shutdown = CancellationToken::new();
    let health = Health::new();
    let stage = tokio::spawn(nowstream_normalizer::run(
        setup.config(),
        health.clone(),
        shutdown.clone(),
    ));
    let mut expected: HashSet<String> = (0..40).map(|n| key(&format!("good-{n}"))).collect();
    expected.insert(key("big-journal"));
    let mut reader = OutputReader::new(&setup);
    let complete = reader
        .read_until(Duration::from_secs(90), |reader| {
            !reader.dead_letters.is_empty()
                && expected
                    .iter()
                    .all(|key| reader.get(Entity::Incident, key).is_some())
        })
        .await;
    let readiness = health.readiness();
    shutdown.cancel();
    let summary = stage.await??;
    assert!(
        complete,
        "published {} of {}, dead-lettered {}",
        reader.messages,
        expected.len(),
        reader.dead_letters.len()
    );
    assert!(readiness.ready, "{readiness:?}");
    assert_eq!(summary.restarts, 0, "the record never failed the session");
    assert_eq!(reader.dead_letters.len(), 1);

    let letter = &reader.dead_letters[0];
    assert_eq!(letter.key, key("big-custom"));
    assert_eq!(letter.header(headers::REASON).as_deref(), Some("too_large"));
    let size: usize = letter.header(headers::SIZE).context("size")?.parse()?;
    assert!(size > 2_000_000, "size {size}");
    assert_eq!(letter.header(headers::LIMIT).as_deref(), Some("1000000"));
    assert_eq!(
        letter.header(headers::SYS_ID).as_deref(),
        Some("big-custom")
    );
    assert_eq!(
        letter.header(headers::CONTENT).as_deref(),
        Some(content::SCRUBBED)
    );
    assert_eq!(
        letter.header(headers::CUT_FIELDS).as_deref(),
        Some("u_attachment_text")
    );
    let parked = RawRecord::decode(letter.value.as_deref().context("value")?)?;
    let payload: serde_json::Value =
        serde_json::from_str(parked.payload.as_deref().context("payload")?)?;
    assert_eq!(
        payload["number"]["value"], "N-big-custom",
        "the rest is kept"
    );
    assert!(payload.get("comments").is_none(), "excluded journal parked");
    assert!(payload.get("short_description").is_none());

    let journal = reader
        .get(Entity::Incident, &key("big-journal"))
        .and_then(Option::as_ref)
        .context("the incident with a long excluded journal is published")?;
    let journal = nowstream_model::Incident::decode(journal)?;
    assert!(journal.excluded_fields.contains(&"comments".to_owned()));
    assert!(journal.comments.is_none());
    Ok(())
}
