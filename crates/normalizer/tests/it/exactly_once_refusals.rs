//! Refused transaction steps, staged on librdkafka's in-process mock cluster.
//!
//! Everything else about `exactly_once` is proven on Apache Kafka (`exactly_once.rs` beside this file).
//! These faults stay here because Apache Kafka cannot be made to produce them on demand: a
//! broker refuses `EndTxn` or `TxnOffsetCommit` only in states (a coordinator moving, an epoch
//! bumped mid-commit) that a test cannot time to hit one chosen transaction, while the mock's
//! request error injection refuses exactly that step. What the mock lets a test observe: it
//! has no `read_committed` isolation (aborted records stay visible) and accepts
//! `TxnOffsetCommit` without storing the offsets. So a refused commit or offset commit must
//! abort the transaction and publish the same batch again in a new one (the aborted attempt's
//! records stay visible as extra copies; each input is counted as published once), and the
//! group must have no offsets committed outside a transaction (any such commit *would* be
//! stored and visible).

use crate::common;

use std::time::Duration;

use common::{OutputReader, RawWriter, Setup, key, raw};
use nowstream_model::{Entity, RecordOp};
use nowstream_normalizer::Summary;
use nowstream_runtime::Health;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

const RECORDS: usize = 200;

/// Runs the stage with `exactly_once` over `RECORDS` raw incidents while `api` answers
/// `errors` first; checks everything was published and no offset committed outside a
/// transaction; returns the stage's summary and how many entity messages were visible.
async fn run_with_refusals(
    api: RDKafkaApiKey,
    errors: &[RDKafkaRespErr],
) -> anyhow::Result<(Summary, usize)> {
    let cluster = MockCluster::new(3)?;
    let mut setup = Setup::on(cluster.bootstrap_servers());
    // The mock's group coordinator never completed the join with a 2 s session; librdkafka's
    // own mock tests use 6 s.
    setup.session_timeout_ms = 6_000;
    setup.normalizer = "exactly_once = true\ntransaction_linger = \"200ms\"".into();
    let topics = setup.topics();
    // The mock does not serve CreateTopics: create what the stage needs up front, which is
    // also how a deployment without topic-creation rights runs.
    for entity in Entity::ALL {
        cluster.create_topic(
            &topics.raw(entity.source_table())?,
            common::RAW_PARTITIONS,
            3,
        )?;
        cluster.create_topic(&topics.entity(entity), 3, 3)?;
    }
    cluster.create_topic(&topics.dlq(), 3, 3)?;
    let inputs: Vec<_> = (0..RECORDS)
        .map(|n| raw(Entity::Incident, &format!("inc-{n}"), 1, RecordOp::Upsert))
        .collect();
    RawWriter::new(&setup).write(&inputs).await;

    cluster.request_errors(api, errors);
    let shutdown = CancellationToken::new();
    let stage = tokio::spawn(nowstream_normalizer::run(
        setup.config(),
        Health::new(),
        shutdown.clone(),
    ));
    let mut reader = OutputReader::new(&setup);
    let all = |reader: &OutputReader| {
        (0..RECORDS).all(|n| {
            reader
                .get(Entity::Incident, &key(&format!("inc-{n}")))
                .is_some()
        })
    };
    let published = reader.read_until(Duration::from_secs(60), all).await;
    // Let the stage finish whatever transaction is open before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    let summary = stage.await??;
    assert!(
        published,
        "only {} of {RECORDS} published: {summary}",
        reader.latest.len()
    );
    reader.read_until(Duration::from_secs(2), |_| false).await;
    assert_eq!(
        summary.records_out, RECORDS as u64,
        "each input committed once: {summary}"
    );

    // Offsets reached the group only through transactions, which the mock does not store.
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", &setup.group)
        .create()?;
    let mut partitions = TopicPartitionList::new();
    for partition in 0..common::RAW_PARTITIONS {
        partitions.add_partition(&topics.raw("incident")?, partition);
    }
    let committed = group.committed_offsets(partitions, Duration::from_secs(10))?;
    for element in committed.elements() {
        assert!(
            !matches!(element.offset(), Offset::Offset(_)),
            "{}[{}] has an offset committed outside a transaction: {:?}",
            element.topic(),
            element.partition(),
            element.offset()
        );
    }
    let visible = reader.messages;
    drop((reader, group, cluster));
    Ok((summary, visible))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_commit_is_aborted_and_the_same_batch_committed_again() -> anyhow::Result<()> {
    // The first commits are refused (and the abort after the first, too).
    let (summary, visible) = run_with_refusals(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE; 3],
    )
    .await?;
    assert!(
        summary.transactions_aborted >= 1,
        "the refused commit was aborted: {summary}"
    );
    assert!(summary.transactions_committed >= 1, "{summary}");
    assert!(
        visible > RECORDS,
        "the aborted attempt's copies are visible on the mock, so the batch was produced again: \
         {visible} messages"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn input_offsets_travel_in_the_transaction_so_a_refused_offset_commit_aborts_the_output()
-> anyhow::Result<()> {
    // Refusing the transactional offset commit must sink the whole transaction: the outputs
    // were produced in it, so they are aborted and produced again with the offsets.
    let (summary, visible) = run_with_refusals(
        RDKafkaApiKey::TxnOffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE; 1],
    )
    .await?;
    assert!(
        summary.transactions_aborted >= 1,
        "the transaction whose offsets were refused was aborted: {summary}"
    );
    assert!(
        visible > RECORDS,
        "{visible} messages: the batch was produced again"
    );
    Ok(())
}
