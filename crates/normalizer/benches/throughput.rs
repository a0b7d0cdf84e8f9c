//! End-to-end throughput through a real broker (Apache Kafka): the normalizer's records/s next to
//! the broker's own passthrough records/s (consume and produce the same bytes, acknowledging
//! inputs after their outputs, no transform) in the same run, on the same input.
//!
//! `cargo bench -p nowstream-normalizer --bench throughput`
//! (`NOWSTREAM_BENCH_RECORDS` sets the number of raw records; default 20,000.)
//!
//! The passthrough is the ceiling the broker and client allow for a consume-produce stage;
//! the ratio between the two numbers is the normalizer's own cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use nowstream_bus::{AckConsumer, OutRecord, Producer, TopicSpec, ensure_topics};
use nowstream_model::{AvroRecord, Entity, RawRecord, RecordOp, TopicNames};
use nowstream_runtime::{Config, Format, Health, KafkaConfig};
use nowstream_testkit::{KafkaBroker, unique};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;
const MAX_IN_FLIGHT: usize = 10_000;

fn records() -> usize {
    std::env::var("NOWSTREAM_BENCH_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

/// A realistic incident payload (the fields SEI maps, some it does not, a custom field).
fn incident(n: usize) -> RawRecord {
    let field = |value: &str| json!({"value": value, "display_value": value});
    let reference = |id: &str, name: &str| {
        json!({"value": id, "display_value": name,
               "link": format!("https://acme.service-now.com/api/now/table/sys_user/{id}")})
    };
    let sys_id = format!("{n:032x}");
    let payload = json!({
        "sys_id": field(&sys_id),
        "number": field(&format!("INC{n:07}")),
        "short_description": field("Email drops connections"),
        "description": field("Caller reports: email drops connections every few minutes."),
        "state": {"value": "7", "display_value": "Closed"},
        "priority": {"value": "2", "display_value": "2 - High"},
        "urgency": {"value": "2", "display_value": "2 - Medium"},
        "impact": {"value": "1", "display_value": "1 - High"},
        "category": {"value": "network", "display_value": "Network"},
        "opened_at": {"value": "2024-08-21 17:34:57", "display_value": "2024-08-21 12:34:57"},
        "resolved_at": {"value": "2024-08-22 09:23:52", "display_value": "2024-08-22 04:23:52"},
        "sys_created_on": {"value": "2024-08-21 17:34:57", "display_value": "2024-08-21 12:34:57"},
        "sys_updated_on": {"value": "2024-08-27 15:17:23", "display_value": "2024-08-27 10:17:23"},
        "assigned_to": reference("0939a7c6c7bae05c58f61d84c1c503a6", "Tara Popescu"),
        "opened_by": reference("f6e57ab2a828bd9a957327e3d26a66be", "Mira Popescu"),
        "close_notes": field("Solution provided: database lock contention."),
        "u_root_cause": field("Database lock contention"),
    });
    RawRecord {
        integration_id: "4711".into(),
        table: "incident".into(),
        sys_id,
        sys_updated_on: Utc.with_ymd_and_hms(2024, 8, 27, 15, 17, 23).unwrap(),
        sys_mod_count: Some(19),
        op: RecordOp::Upsert,
        fetched_at: Utc::now(),
        instance_url: "https://acme.service-now.com".into(),
        payload: Some(payload.to_string()),
    }
}

async fn produce_input(kafka: &KafkaConfig, topic: &str, count: usize) {
    let producer = Producer::new(kafka).expect("producer");
    let mut pending = Vec::with_capacity(count);
    for n in 0..count {
        let record = incident(n);
        let value = record.encode().expect("encodes");
        let key = format!("4711:{}", record.sys_id);
        pending.push(
            producer
                .enqueue(OutRecord::new(topic, key.as_bytes(), Some(&value)))
                .await
                .expect("enqueued"),
        );
    }
    for delivery in pending {
        delivery.acknowledged().await.expect("acknowledged");
    }
}

/// Consumes `count` records from `input` and produces each unchanged to `output`, storing an
/// input offset after its output's ack: the normalizer's loop without the normalizer.
async fn passthrough(kafka: KafkaConfig, input: String, output: String, count: usize) {
    let consumer = Arc::new(
        AckConsumer::subscribe(&kafka, &unique("passthrough"), &[&input]).expect("consumer"),
    );
    let producer = Producer::new(&kafka).expect("producer");
    let mut tasks = JoinSet::new();
    let mut done = 0;
    while done < count {
        tokio::select! {
            biased;
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let token = joined.expect("task");
                consumer.ack(&token).expect("ack");
                done += 1;
            }
            received = consumer.recv(), if tasks.len() < MAX_IN_FLIGHT => {
                let message = received.expect("message");
                let pending = producer
                    .enqueue(OutRecord::new(&output, message.key.as_deref().unwrap_or_default(), message.payload.as_deref()))
                    .await
                    .expect("enqueued");
                let token = message.token;
                tasks.spawn(async move {
                    pending.acknowledged().await.expect("acknowledged");
                    token
                });
            }
        }
    }
    consumer.commit().expect("commit");
}

/// Time from the first to the `count`-th record readable on `topic`. Both stages are timed
/// this way, at their output, so start-up (joining the group, creating topics) is left out of
/// both alike.
async fn time_output(kafka: &KafkaConfig, topic: &str, count: usize) -> Duration {
    let reader = AckConsumer::subscribe(kafka, &unique("counter"), &[topic]).expect("counter");
    let mut seen = 0;
    let mut started = None;
    while seen < count {
        if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(1), reader.recv()).await {
            started.get_or_insert_with(Instant::now);
            let _ = reader.ack(&message.token);
            seen += 1;
        }
    }
    started.map(|at| at.elapsed()).unwrap_or_default()
}

/// The normalizer's configuration for this broker and prefix.
fn normalizer_config(broker: &KafkaBroker, prefix: &str) -> Config {
    let text = format!(
        r#"
[kafka]
bootstrap_servers = "{servers}"
topic_prefix = "{prefix}"
[[integrations]]
id = "4711"
url = "https://acme.service-now.com"
exclude_fields = ["Comments", "u_root_cause"]
[integrations.auth]
type = "basic"
username = "reader"
password = "secret"
[fetcher]
raw_topic_partitions = {PARTITIONS}
[normalizer]
group_id = "{group}"
topic_partitions = {PARTITIONS}
max_in_flight = {MAX_IN_FLIGHT}
lag_interval = "1s"
"#,
        servers = broker.bootstrap_servers(),
        group = unique("normalizer"),
    );
    Config::parse(&text, Format::Toml).expect("config")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        // `cargo test --benches` lists benchmarks; there is nothing to list but this one.
        println!("throughput: bench");
        return;
    }
    let count = records();
    let broker = KafkaBroker::shared().expect("Kafka starts");
    let kafka = broker.kafka_config();
    let prefix = format!("{}.", unique("bench"));
    let topics = TopicNames::new(prefix.clone()).expect("prefix");
    let raw = topics.raw("incident").expect("raw topic");
    let copy = format!("{prefix}passthrough");
    ensure_topics(
        &kafka,
        &[
            TopicSpec::compacted(raw.clone(), PARTITIONS),
            TopicSpec::new(copy.clone(), PARTITIONS),
            TopicSpec::compacted(topics.entity(Entity::Incident), PARTITIONS),
        ],
    )
    .await
    .expect("topics");

    let started = Instant::now();
    produce_input(&kafka, &raw, count).await;
    let produced = started.elapsed();

    let stage = tokio::spawn(passthrough(kafka.clone(), raw.clone(), copy.clone(), count));
    let passthrough = time_output(&kafka, &copy, count).await;
    stage.await.expect("passthrough");

    let shutdown = CancellationToken::new();
    let stage = tokio::spawn(nowstream_normalizer::run(
        normalizer_config(broker, &prefix),
        Health::new(),
        shutdown.clone(),
    ));
    let normalized = time_output(&kafka, &topics.entity(Entity::Incident), count).await;
    shutdown.cancel();
    let summary = stage.await.expect("stage task").expect("stage");
    assert!(summary.records_out as usize >= count, "{summary}");

    // The passthrough copies each raw record whole; the normalizer writes the smaller entity.
    let config = normalizer_config(broker, &prefix);
    let sample = incident(0).encode().expect("encodes");
    let entity = nowstream_normalizer::Normalizer::new(topics.clone(), &config.integrations)
        .expect("policy")
        .normalize(Some(&sample))
        .expect("normalizes")
        .value
        .map_or(0, |value| value.len());

    let rate = |took: Duration| count as f64 / took.as_secs_f64().max(f64::EPSILON);
    println!(
        "{count} raw incidents through Apache Kafka, {PARTITIONS} partitions \
         ({} bytes per raw record, {entity} per entity):",
        sample.len()
    );
    println!(
        "  produce only           {:>10.0} records/s",
        rate(produced)
    );
    println!(
        "  passthrough (no work)  {:>10.0} records/s",
        rate(passthrough)
    );
    println!(
        "  normalizer             {:>10.0} records/s",
        rate(normalized)
    );
    println!(
        "  normalizer / passthrough = {:.2}",
        rate(normalized) / rate(passthrough)
    );
}
