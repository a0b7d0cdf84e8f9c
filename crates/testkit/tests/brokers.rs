//! The harness itself: brokers start, serve transactions, survive restarts and node loss.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use nowstream_testkit::{KafkaBroker, KafkaCluster, unique};

fn create_topic(bootstrap: &str, topic: &str, replication: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(
                topic,
                1,
                TopicReplication::Fixed(replication),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("create topics");
    for result in results {
        result.expect("topic created");
    }
}

fn produce_in_transaction(bootstrap: &str, topic: &str, values: &[&str], commit: bool) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", unique("harness-tx"))
        .create()
        .expect("producer");
    producer
        .init_transactions(Duration::from_secs(60))
        .expect("init transactions");
    producer.begin_transaction().expect("begin");
    for value in values {
        producer
            .send(BaseRecord::<(), str>::to(topic).payload(*value))
            .expect("send");
    }
    if commit {
        producer
            .commit_transaction(Duration::from_secs(60))
            .expect("commit");
    } else {
        producer.flush(Duration::from_secs(30)).expect("flush");
        producer
            .abort_transaction(Duration::from_secs(60))
            .expect("abort");
    }
}

fn read_committed(bootstrap: &str, topic: &str, expect: usize) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("harness-reader"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut values = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while values.len() < expect && std::time::Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into());
        }
    }
    // A little longer, to see anything beyond what was expected.
    let quiet = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < quiet {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into());
        }
    }
    values
}

#[test]
fn the_shared_broker_runs_transactions_and_hides_aborted_ones_from_read_committed_readers() {
    let broker = KafkaBroker::shared().expect("broker starts");
    let topic = unique("harness-transactions");
    create_topic(&broker.bootstrap_servers(), &topic, 1);
    produce_in_transaction(&broker.bootstrap_servers(), &topic, &["aborted"], false);
    produce_in_transaction(&broker.bootstrap_servers(), &topic, &["a", "b"], true);
    assert_eq!(
        read_committed(&broker.bootstrap_servers(), &topic, 2),
        vec!["a", "b"]
    );
}

#[test]
fn a_killed_broker_restarts_with_its_committed_records() {
    let mut broker = KafkaBroker::start().expect("broker starts");
    let topic = unique("harness-restart");
    create_topic(&broker.bootstrap_servers(), &topic, 1);
    produce_in_transaction(&broker.bootstrap_servers(), &topic, &["kept"], true);
    broker.kill();
    assert!(!broker.is_running());
    broker.restart().expect("broker restarts");
    assert_eq!(read_committed(&broker.bootstrap_servers(), &topic, 1), vec!["kept"]);
}

#[test]
fn a_cluster_keeps_accepting_writes_with_one_node_killed_and_takes_it_back() {
    let mut cluster = KafkaCluster::start().expect("cluster starts");
    let topic = unique("harness-cluster");
    create_topic(&cluster.bootstrap_servers(), &topic, 3);
    cluster.kill(1);
    // acks=all with min.insync.replicas=2: two live replicas still take the write.
    produce_in_transaction(&cluster.bootstrap_servers(), &topic, &["while-down"], true);
    cluster.restart(1).expect("node restarts");
    produce_in_transaction(&cluster.bootstrap_servers(), &topic, &["after"], true);
    assert_eq!(
        read_committed(&cluster.bootstrap_servers(), &topic, 2),
        vec!["while-down", "after"]
    );
}
