//! The topics nowstream creates, as Apache Kafka reports them (DescribeConfigs), and records
//! at the size limit those topics and the producers share.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use nowstream_bus::message_size::RECORD_OVERHEAD;
use nowstream_bus::{
    AckConsumer, OutRecord, Producer, TopicKind, TopicSpec, client_config, ensure_topics,
    max_message_bytes, topics_below_record_limit,
};
use nowstream_runtime::KafkaConfig;
use nowstream_testkit::{KafkaBroker, KafkaCluster, unique};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(90);

/// A topic config as the broker reports it: its value, and whether it was set on the topic
/// itself (rather than inherited from the broker's defaults).
#[derive(Debug, PartialEq, Eq)]
struct Reported {
    value: String,
    set_on_topic: bool,
}

/// DescribeConfigs of `topic`: every config the broker reports for it.
async fn describe(kafka: &KafkaConfig, topic: &str) -> Result<BTreeMap<String, Reported>> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka).create()?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await?;
    let resource = results
        .into_iter()
        .next()
        .context("no DescribeConfigs result")?
        .map_err(|code| anyhow::anyhow!("DescribeConfigs of {topic}: {code}"))?;
    Ok(resource
        .entries
        .into_iter()
        .map(|entry| {
            let reported = Reported {
                value: entry.value.unwrap_or_default(),
                set_on_topic: entry.source == ConfigSource::DynamicTopic,
            };
            (entry.name, reported)
        })
        .collect())
}

/// Asserts that `topic` carries each of `expected` as a config of its own.
async fn assert_configs(
    kafka: &KafkaConfig,
    topic: &str,
    expected: &[(&str, String)],
) -> Result<()> {
    let reported = describe(kafka, topic).await?;
    for (name, value) in expected {
        let entry = reported
            .get(*name)
            .with_context(|| format!("{topic}: Kafka reports no {name}"))?;
        assert_eq!(
            entry,
            &Reported {
                value: value.clone(),
                set_on_topic: true
            },
            "{topic}: {name}"
        );
    }
    Ok(())
}

/// One topic of each kind, named after `prefix`.
fn one_of_each(prefix: &str, replication_factor: i32) -> Vec<TopicSpec> {
    vec![
        TopicSpec::new(format!("{prefix}.log"), 2),
        TopicSpec::compacted(format!("{prefix}.compacted"), 2),
        TopicSpec::dead_letters(format!("{prefix}.dlq"), 2),
    ]
    .into_iter()
    .map(|spec| spec.with_replication_factor(replication_factor))
    .collect()
}

/// What every topic of `kind` must report with `kafka`'s settings and `min_insync`.
fn expected_for(
    kafka: &KafkaConfig,
    kind: TopicKind,
    min_insync: i32,
) -> Vec<(&'static str, String)> {
    let mut expected = vec![
        (
            "cleanup.policy",
            if kind == TopicKind::Compacted {
                "compact"
            } else {
                "delete"
            }
            .to_owned(),
        ),
        ("min.insync.replicas", min_insync.to_string()),
        ("max.message.bytes", kafka.max_message_bytes.to_string()),
    ];
    match kind {
        TopicKind::Compacted => expected.push((
            "delete.retention.ms",
            kafka.tombstone_retention.as_millis().to_string(),
        )),
        TopicKind::DeadLetters => {
            expected.push(("retention.ms", kafka.dlq_retention.as_millis().to_string()))
        }
        TopicKind::Log => {}
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_topic_reports_the_documented_default_configs() -> Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    let specs = one_of_each(&unique("defaults"), 1);
    ensure_topics(&kafka, &specs).await?;

    // The documented defaults, spelt out: 8 MiB records, tombstones kept 7 days (Kafka's own
    // default is 1 day), dead letters kept 14 days (Kafka's default retention is 7).
    let [log, compacted, dlq] = &specs[..] else {
        bail!("three specs")
    };
    let common = |policy: &str| {
        vec![
            ("cleanup.policy", policy.to_owned()),
            ("min.insync.replicas", "1".to_owned()),
            ("max.message.bytes", "8388608".to_owned()),
        ]
    };
    assert_configs(&kafka, &log.name, &common("delete")).await?;
    let mut expected = common("compact");
    expected.push(("delete.retention.ms", (7 * DAY_MS).to_string()));
    assert_configs(&kafka, &compacted.name, &expected).await?;
    let mut expected = common("delete");
    expected.push(("retention.ms", (14 * DAY_MS).to_string()));
    assert_configs(&kafka, &dlq.name, &expected).await?;

    let reported = describe(&kafka, &log.name).await?;
    assert!(
        !reported["retention.ms"].set_on_topic,
        "a plain topic keeps the broker's retention"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_sizes_and_retentions_reach_the_topics() -> Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = KafkaConfig {
        max_message_bytes: 3 * 1024 * 1024,
        tombstone_retention: Duration::from_secs(10 * 24 * 60 * 60),
        dlq_retention: Duration::from_secs(30 * 24 * 60 * 60),
        ..broker.kafka_config()
    };
    let specs = one_of_each(&unique("configured"), 1);
    ensure_topics(&kafka, &specs).await?;
    for spec in &specs {
        assert_configs(&kafka, &spec.name, &expected_for(&kafka, spec.kind, 1)).await?;
    }
    Ok(())
}

/// Random bytes that lz4 cannot shrink, so the record's size on the wire is its real size.
fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// The first message `group` reads from `topic`, acknowledged.
async fn read_one(kafka: &KafkaConfig, topic: &str) -> Result<nowstream_bus::ConsumedMessage> {
    let consumer = AckConsumer::subscribe(kafka, &unique("reader"), &[topic])?;
    let message = tokio::time::timeout(RECEIVE_TIMEOUT, consumer.recv())
        .await
        .with_context(|| format!("nothing arrived on {topic}"))??;
    consumer.ack(&message.token)?;
    Ok(message)
}

/// Writes a record exactly as large as the producer allows (key and value, incompressible:
/// `message.max.bytes` less librdkafka's record framing) to a topic nowstream created, and
/// reads it back whole.
async fn largest_record_round_trip(kafka: &KafkaConfig, topic: &str) -> Result<()> {
    let producer = Producer::new(kafka)?;
    let key = b"4711:0123456789abcdef0123456789abcdef";
    let limit = max_message_bytes(kafka);
    let value = incompressible(limit - RECORD_OVERHEAD - key.len(), 7);
    let started = Instant::now();
    producer
        .send(OutRecord::new(topic, key, Some(&value)))
        .await
        .with_context(|| format!("a record as large as message.max.bytes {limit} allows"))?;
    let message = read_one(kafka, topic).await?;
    println!(
        "{limit} bytes written and read back in {:?}",
        started.elapsed()
    );
    ensure!(
        message.key.as_deref() == Some(&key[..]),
        "another key came back"
    );
    ensure!(
        message.payload.as_deref() == Some(&value[..]),
        "the value came back changed ({:?} bytes)",
        message.payload.as_ref().map(Vec::len)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_as_large_as_the_producer_allows_is_written_and_read_back() -> Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    let topic = unique("largest");
    ensure_topics(&kafka, &[TopicSpec::compacted(&topic, 1)]).await?;
    largest_record_round_trip(&kafka, &topic).await
}

/// The high watermark of partition 0 of `topic`: how many records it holds.
fn records_in(kafka: &KafkaConfig, topic: &str) -> Result<i64> {
    let consumer: BaseConsumer = client_config(kafka).create()?;
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(30))?;
    Ok(high)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_limit_is_reported_too_large_and_the_producer_goes_on() -> Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = KafkaConfig {
        max_message_bytes: 256 * 1024,
        ..broker.kafka_config()
    };
    let topic = unique("too-large");
    ensure_topics(&kafka, &[TopicSpec::compacted(&topic, 1)]).await?;
    let producer = Producer::new(&kafka)?;
    let key = b"4711:big";
    let over = incompressible(
        max_message_bytes(&kafka) - RECORD_OVERHEAD - key.len() + 1,
        11,
    );
    let error = match producer
        .send(OutRecord::new(&topic, key, Some(&over)))
        .await
    {
        Ok(delivered) => bail!("one byte over the limit was stored at {delivered:?}"),
        Err(error) => error,
    };
    assert!(error.is_message_too_large(), "classified as {error}");

    // The producer is not poisoned by it: the next record is written as usual.
    producer
        .send(OutRecord::new(&topic, b"4711:small", Some(b"fits")))
        .await?;
    assert_eq!(records_in(&kafka, &topic)?, 1, "only the small record");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_topic_refuses_is_reported_too_large_by_the_broker_too() -> Result<()> {
    // An operator raised the producer's limit above the topic's (config validation forbids it
    // for the stages, but a topic created by hand can be smaller than nowstream's): the broker
    // refuses the batch, and the delivery error still says why.
    let broker = KafkaBroker::shared()?;
    let mut kafka = KafkaConfig {
        max_message_bytes: 256 * 1024,
        ..broker.kafka_config()
    };
    let topic = unique("topic-refuses");
    ensure_topics(&kafka, &[TopicSpec::new(&topic, 1)]).await?;
    kafka
        .properties
        .insert("message.max.bytes".into(), "1000000".to_owned().into());
    let producer = Producer::new(&kafka)?;
    let over_topic = incompressible(300 * 1024, 13);
    let error = match producer
        .send(OutRecord::new(&topic, b"4711:big", Some(&over_topic)))
        .await
    {
        Ok(delivered) => bail!("the topic stored a batch over its limit at {delivered:?}"),
        Err(error) => error,
    };
    assert!(error.is_message_too_large(), "classified as {error}");
    producer
        .send(OutRecord::new(&topic, b"4711:small", Some(b"fits")))
        .await?;
    assert_eq!(records_in(&kafka, &topic)?, 1, "only the small record");
    Ok(())
}

#[test]
fn on_three_brokers_min_insync_is_one_less_than_the_replicas_and_large_records_replicate()
-> Result<()> {
    let cluster = KafkaCluster::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let kafka = cluster.kafka_config();
        // The cluster's broker default is 2, so only "set on the topic" tells RF 3's 2 apart
        // from an inherited value; RF 2 and RF 1 must come out as 1.
        for (replication_factor, min_insync) in [(3, 2), (2, 1), (1, 1)] {
            let specs = one_of_each(
                &unique(&format!("rf{replication_factor}")),
                replication_factor,
            );
            ensure_topics(&kafka, &specs).await?;
            for spec in &specs {
                assert_configs(
                    &kafka,
                    &spec.name,
                    &expected_for(&kafka, spec.kind, min_insync),
                )
                .await?;
            }
        }
        // acks=all on three replicas: the largest record must reach every follower too
        // (their replica fetches start at 1 MiB and grow to fit it).
        let topic = unique("largest-rf3");
        ensure_topics(
            &kafka,
            &[TopicSpec::compacted(&topic, 1).with_replication_factor(3)],
        )
        .await?;
        largest_record_round_trip(&kafka, &topic).await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_topic_smaller_than_the_record_limit_is_found_and_left_alone() -> Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    // As a topic created before the limit was raised (Kafka's own default, 1 MiB + 12).
    let small = unique("small");
    let fitting = unique("fitting");
    ensure_topics(
        &kafka,
        &[
            TopicSpec::compacted(&small, 1).with_config("max.message.bytes", "1048588"),
            TopicSpec::compacted(&fitting, 1),
        ],
    )
    .await?;
    assert_eq!(
        topics_below_record_limit(&kafka, &[small.clone(), fitting.clone()]).await?,
        [(small.clone(), 1_048_588)]
    );
    // Ensuring it again (a stage's start-up) warns but does not alter it.
    ensure_topics(&kafka, &[TopicSpec::compacted(&small, 1)]).await?;
    assert_eq!(
        describe(&kafka, &small).await?["max.message.bytes"].value,
        "1048588"
    );
    Ok(())
}
