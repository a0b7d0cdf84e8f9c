//! The documented Python consumer (docs/examples/consume_entities.py) decodes what nowstream
//! writes: run against an Apache Kafka broker, with confluent-kafka and fastavro.

use std::path::Path;
use std::process::Command;

use nowstream_bus::{OutRecord, Producer, TopicSpec, ensure_topics};
use nowstream_model::{AvroRecord, Incident};
use nowstream_testkit::{KafkaBroker, unique};
use serde_json::{Value, json};

fn incident() -> Incident {
    serde_json::from_value(json!({
        "integration_id": "4711",
        "sys_id": "9d385017c611228701d22104cc95c371",
        "sys_updated_on": "2026-01-02T03:04:05Z",
        "sys_mod_count": 3,
        "number": "INC0010001",
        "priority": {"value": "1", "label": "1 - Critical"},
        "opened_at": "2026-01-02T01:00:00Z",
        "resolved_at": "2026-01-02T03:00:00Z",
        "time_to_restore_ms": 7_200_000,
        "excluded_fields": ["short_description"],
        "custom_fields": {"u_root_cause": {"value": "dns", "display_value": "DNS ☁"}}
    }))
    .expect("a valid incident")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_decodes_entities_and_tombstones() -> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    let topic = unique("sei.servicenow.incident");
    ensure_topics(&kafka, &[TopicSpec::compacted(&topic, 1)]).await?;
    let producer = Producer::new(&kafka)?;
    let record = incident();
    let value = record.encode()?;
    producer
        .send(OutRecord::new(
            &topic,
            b"4711:9d385017c611228701d22104cc95c371",
            Some(&value),
        ))
        .await?;
    producer
        .send(OutRecord::new(&topic, b"4711:deadbeef", None))
        .await?;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = tokio::task::spawn_blocking({
        let bootstrap = broker.bootstrap_servers();
        let topic = topic.clone();
        move || {
            Command::new("python3")
                .arg(root.join("docs/examples/consume_entities.py"))
                .args(["--bootstrap", &bootstrap])
                .arg("--schemas")
                .arg(root.join("schemas"))
                .args([
                    "--topic",
                    &topic,
                    "--group",
                    &unique("python"),
                    "--max-idle",
                    "5",
                ])
                .output()
        }
    })
    .await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the example failed (pip install confluent-kafka fastavro, or scripts/install-test-deps): {stderr}"
    );
    let lines: Vec<Value> = String::from_utf8(output.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 2, "{lines:?}");

    let live = &lines[0];
    assert_eq!(live["key"], "4711:9d385017c611228701d22104cc95c371");
    assert_eq!(live["deleted"], false);
    let decoded = &live["value"];
    assert_eq!(decoded["number"], "INC0010001");
    assert_eq!(decoded["priority"]["label"], "1 - Critical");
    assert_eq!(decoded["time_to_restore_ms"], 7_200_000);
    assert_eq!(
        decoded["custom_fields"]["u_root_cause"]["display_value"],
        "DNS ☁"
    );
    assert_eq!(decoded["excluded_fields"], json!(["short_description"]));
    assert!(decoded["short_description"].is_null());

    assert_eq!(lines[1]["key"], "4711:deadbeef");
    assert_eq!(lines[1]["deleted"], true);
    assert!(lines[1]["value"].is_null());
    Ok(())
}
