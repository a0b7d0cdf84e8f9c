//! bus against a real Apache Kafka broker, as the stages will use it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nowstream_bus::{
    AckConsumer, ConsumedMessage, DlqReason, DlqWriter, OutRecord, Producer, TopicSpec,
    Transaction, TransactionalProducer, dlq::headers, ensure_topics, spawn_lag_gauge,
};
use nowstream_runtime::KafkaConfig;
use nowstream_testkit::{KafkaBroker, unique};

const RECEIVE_TIMEOUT: Duration = Duration::from_secs(90);

fn key_of(index: usize) -> String {
    format!("4711:{index:032x}")
}

async fn produce_keyed(producer: &Producer, topic: &str, count: usize) -> Result<()> {
    let mut pending = Vec::with_capacity(count);
    for index in 0..count {
        let key = key_of(index);
        let payload = format!("value-{index}");
        pending.push(
            producer
                .enqueue(OutRecord::new(
                    topic,
                    key.as_bytes(),
                    Some(payload.as_bytes()),
                ))
                .await?,
        );
    }
    for delivery in pending {
        delivery.acknowledged().await?;
    }
    Ok(())
}

async fn recv_within(consumer: &AckConsumer, deadline: Instant) -> Result<Option<ConsumedMessage>> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(remaining, consumer.recv()).await {
        Ok(message) => Ok(Some(message?)),
        Err(_elapsed) => Ok(None),
    }
}

fn key_text(message: &ConsumedMessage) -> String {
    String::from_utf8_lossy(message.key.as_deref().unwrap_or_default()).into_owned()
}

async fn ensure(kafka: &KafkaConfig, topic: &str, partitions: i32) -> Result<()> {
    ensure_topics(kafka, &[TopicSpec::new(topic, partitions)]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_group_member_receives_every_unacknowledged_record() -> Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    let topic = unique("raw");
    let group = unique("group");
    ensure(&kafka, &topic, 3).await?;
    let producer = Producer::new(&kafka)?;
    produce_keyed(&producer, &topic, 10_000).await?;

    // First member: receives everything, acknowledges the first half it saw (a prefix of every
    // partition, since a partition is read in order) and every other record of the second half.
    let first = AckConsumer::subscribe(&kafka, &group, &[&topic])?;
    let deadline = Instant::now() + RECEIVE_TIMEOUT;
    let mut acked_prefix = HashSet::new();
    let mut unacked = HashSet::new();
    let mut seen = 0usize;
    while seen < 10_000 {
        let Some(message) = recv_within(&first, deadline).await? else {
            bail!("first member saw only {seen} of 10000 records");
        };
        let key = key_text(&message);
        if seen < 5_000 {
            first.ack(&message.token)?;
            acked_prefix.insert(key);
        } else if seen % 2 == 0 {
            first.ack(&message.token)?;
        } else {
            unacked.insert(key);
        }
        seen += 1;
    }
    assert_eq!(first.in_flight(), unacked.len());
    first.commit()?;
    drop(first);

    // Second member of the same group: must get every record that was not acknowledged.
    let second = AckConsumer::subscribe(&kafka, &group, &[&topic])?;
    let deadline = Instant::now() + RECEIVE_TIMEOUT;
    let mut received = HashSet::new();
    while !unacked.is_subset(&received) {
        let Some(message) = recv_within(&second, deadline).await? else {
            let missing = unacked.difference(&received).count();
            bail!("{missing} unacknowledged records never reached the second member");
        };
        received.insert(key_text(&message));
    }
    assert!(
        received.is_disjoint(&acked_prefix),
        "records acknowledged in order were delivered again: the ack was not committed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_while_producing_loses_nothing() -> Result<()> {
    let mut broker = KafkaBroker::start()?;
    let kafka = broker.kafka_config();
    let topic = unique("restart");
    ensure(&kafka, &topic, 3).await?;
    let producer = Producer::new(&kafka)?;

    let mut pending = Vec::with_capacity(10_000);
    for index in 0..10_000usize {
        if index == 4_000 {
            // Crash the broker mid-stream and bring it back on the same data file.
            tokio::task::block_in_place(|| broker.restart())?;
        }
        let key = key_of(index);
        let payload = format!("value-{index}");
        pending.push(
            producer
                .enqueue(OutRecord::new(
                    &topic,
                    key.as_bytes(),
                    Some(payload.as_bytes()),
                ))
                .await?,
        );
    }
    for delivery in pending {
        delivery
            .acknowledged()
            .await
            .context("a record was not acknowledged")?;
    }

    let consumer = AckConsumer::subscribe(&kafka, &unique("verify"), &[&topic])?;
    let deadline = Instant::now() + RECEIVE_TIMEOUT;
    let mut values: HashMap<String, String> = HashMap::new();
    while values.len() < 10_000 {
        let Some(message) = recv_within(&consumer, deadline).await? else {
            bail!(
                "only {} of 10000 records survived the broker restart",
                values.len()
            );
        };
        let payload = String::from_utf8_lossy(message.payload.as_deref().unwrap_or_default());
        values.insert(key_text(&message), payload.into_owned());
    }
    for index in 0..10_000usize {
        assert_eq!(values.get(&key_of(index)), Some(&format!("value-{index}")));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettered_records_keep_key_bytes_and_say_why() -> Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    let source = unique("source");
    let dlq = unique("dlq");
    ensure(&kafka, &source, 1).await?;
    ensure(&kafka, &dlq, 1).await?;
    let producer = Producer::new(&kafka)?;
    producer
        .send(
            OutRecord::new(&source, b"4711:abc", Some(b"\xffnot json"))
                .with_headers(&[("trace", b"t-1")]),
        )
        .await?;

    let consumer = AckConsumer::subscribe(&kafka, &unique("stage"), &[&source])?;
    let deadline = Instant::now() + RECEIVE_TIMEOUT;
    let poison = recv_within(&consumer, deadline)
        .await?
        .context("no source record")?;
    let writer = DlqWriter::new(producer.clone(), &dlq, "normalizer");
    writer
        .send(
            &poison,
            &DlqReason::new("payload_not_json", "expected JSON at byte 0"),
        )
        .await?;

    let reader = AckConsumer::subscribe(&kafka, &unique("dlq-reader"), &[&dlq])?;
    let parked = recv_within(&reader, deadline)
        .await?
        .context("nothing in the DLQ")?;
    assert_eq!(parked.key.as_deref(), Some(&b"4711:abc"[..]));
    assert_eq!(parked.payload.as_deref(), Some(&b"\xffnot json"[..]));
    assert_eq!(parked.header(headers::STAGE), Some(&b"normalizer"[..]));
    assert_eq!(
        parked.header(headers::REASON),
        Some(&b"payload_not_json"[..])
    );
    assert_eq!(
        parked.header(headers::DETAIL),
        Some(&b"expected JSON at byte 0"[..])
    );
    assert_eq!(
        parked.header(headers::SOURCE_TOPIC),
        Some(source.as_bytes())
    );
    assert_eq!(parked.header(headers::SOURCE_PARTITION), Some(&b"0"[..]));
    assert_eq!(
        parked.header(headers::SOURCE_OFFSET),
        Some(poison.offset.to_string().as_bytes())
    );
    assert_eq!(
        parked.header("trace"),
        Some(&b"t-1"[..]),
        "original headers are kept"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_topics_is_idempotent_and_refuses_too_few_partitions() -> Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    let checkpoints = unique("checkpoints");
    let spec = TopicSpec::compacted(&checkpoints, 2);
    ensure_topics(&kafka, std::slice::from_ref(&spec)).await?;
    ensure_topics(&kafka, std::slice::from_ref(&spec)).await?;

    let error = ensure_topics(&kafka, &[TopicSpec::compacted(&checkpoints, 4)])
        .await
        .expect_err("an existing topic with 2 partitions cannot satisfy 4");
    let message = error.to_string();
    assert!(message.contains(&checkpoints), "{message}");
    assert!(message.contains("2 partitions but 4"), "{message}");
    Ok(())
}

/// Keys and values a `read_committed` reader of `topic` sees within `window` after the last one.
async fn read_committed(kafka: &KafkaConfig, topic: &str, window: Duration) -> Result<Vec<String>> {
    let reader = AckConsumer::subscribe_with(
        kafka,
        &unique("committed-reader"),
        &[topic],
        &[("isolation.level", "read_committed")],
    )?;
    let mut seen = Vec::new();
    while let Ok(message) = tokio::time::timeout(window, reader.recv()).await {
        seen.push(key_text(&message?));
    }
    Ok(seen)
}

/// Starts a transaction, enqueues `key` in it and waits for the broker's acknowledgement.
async fn produce_in_transaction(
    producer: &mut TransactionalProducer,
    topic: &str,
    key: &str,
) -> Result<Transaction> {
    let transaction = producer.begin().await?;
    transaction
        .producer()
        .send(OutRecord::new(topic, key.as_bytes(), Some(b"v")))
        .await?;
    Ok(transaction)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_transaction_stays_invisible_and_the_same_producer_commits_the_next()
-> Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    let topic = unique("transactional");
    ensure(&kafka, &topic, 1).await?;
    let mut producer = TransactionalProducer::start(&kafka, &unique("txn")).await?;

    let _abandoned = produce_in_transaction(&mut producer, &topic, "4711:aborted").await?;
    // The stage's own step failed (a record it could not encode, say): the transaction is
    // aborted and the stage's error reported as it was.
    let reported = producer
        .abort_after(anyhow::anyhow!("the stage's own step failed"))
        .await;
    assert_eq!(reported.to_string(), "the stage's own step failed");
    produce_in_transaction(&mut producer, &topic, "4711:committed")
        .await?
        .commit()
        .await?;

    let seen = read_committed(&kafka, &topic, Duration::from_secs(5)).await?;
    assert_eq!(seen, vec!["4711:committed".to_owned()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_producer_stops_for_good_and_never_fences_the_producer_that_fenced_it()
-> Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    let topic = unique("transactional");
    ensure(&kafka, &topic, 1).await?;
    let id = unique("txn");
    let mut old = TransactionalProducer::start(&kafka, &id).await?;
    let open = produce_in_transaction(&mut old, &topic, "4711:old").await?;

    // A second producer with the same transactional.id: its initialisation fences the first
    // and aborts the first one's open transaction.
    let mut new = TransactionalProducer::start(&kafka, &id).await?;
    let refused = match open.commit().await {
        Ok(()) => bail!("a fenced producer committed"),
        Err(error) => error,
    };
    let reported = old.abort_after(refused).await;
    assert!(
        reported.is_fenced() && reported.is_fatal(),
        "the failure is reported as fencing: {reported}"
    );
    assert!(reported.to_string().contains(&id), "{reported}");
    let again = old
        .begin()
        .await
        .expect_err("a fenced producer begins nothing");
    assert!(again.is_fenced(), "{again}");

    // Had the fenced one initialised its id again, this commit would fail in turn.
    produce_in_transaction(&mut new, &topic, "4711:new")
        .await?
        .commit()
        .await?;
    let seen = read_committed(&kafka, &topic, Duration::from_secs(5)).await?;
    assert_eq!(seen, vec!["4711:new".to_owned()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_gauge_counts_the_records_a_consumer_has_not_read_yet() -> Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    let topic = unique("lagging");
    ensure(&kafka, &topic, 1).await?;
    produce_keyed(&Producer::new(&kafka)?, &topic, 10).await?;

    let consumer = Arc::new(AckConsumer::subscribe(&kafka, &unique("stage"), &[&topic])?);
    let deadline = Instant::now() + RECEIVE_TIMEOUT;
    for _ in 0..3 {
        recv_within(&consumer, deadline)
            .await?
            .context("fewer than 3 records")?;
    }
    let reported: Arc<Mutex<HashMap<(String, i32), i64>>> = Arc::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let gauge = spawn_lag_gauge(
        &kafka,
        Arc::clone(&consumer),
        Duration::from_millis(100),
        stopped,
        {
            let reported = Arc::clone(&reported);
            move |topic: &str, partition: i32, lag: i64| {
                reported
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert((topic.to_owned(), partition), lag);
            }
        },
    );
    let lag = loop {
        let lag = reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(topic.clone(), 0))
            .copied();
        match lag {
            Some(lag) => break lag,
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            None => bail!("no lag reported"),
        }
    };
    let _ = stop.send(());
    gauge.await?;
    assert_eq!(lag, 7, "10 records, 3 of them read");
    Ok(())
}
