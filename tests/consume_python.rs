//! The documented Python consumer (docs/examples/consume_entities.py) decodes what nowstream
//! writes: run against an Apache Kafka broker, with confluent-kafka and fastavro. It reads records
//! written with the current schema and with each released one (v1 producers still running while
//! the topics already carry v2), resolving every one into the current schema.

use std::path::Path;
use std::process::Command;

use apache_avro::to_avro_datum;
use nowstream_bus::{OutRecord, Producer, TopicSpec, ensure_topics};
use nowstream_model::single_object::MAGIC;
use nowstream_model::{AvroRecord, Incident, User};
use nowstream_testkit::{KafkaBroker, unique};
use serde_json::{Value, json};

const INCIDENT_SYS_ID: &str = "9d385017c611228701d22104cc95c371";
const USER_SYS_ID: &str = "5137153cc611227c000bbd1bd8cd2005";

fn incident() -> Incident {
    serde_json::from_value(json!({
        "integration_id": "4711",
        "sys_id": INCIDENT_SYS_ID,
        "sys_updated_on": "2026-01-02T03:04:05Z",
        "sys_mod_count": 3,
        "number": "INC0010001",
        "priority": {"value": "1", "label": "1 - Critical"},
        "opened_at": "2026-01-02T01:00:00Z",
        "resolved_at": "2026-01-02T03:00:00Z",
        "time_to_restore_ms": 7_200_000,
        "caused_by": {"sys_id": "c83c5e5347c12200e0ef563dbb9a7190", "display_value": "CHG0030002"},
        "excluded_fields": ["short_description"],
        "custom_fields": {"u_root_cause": {"value": "dns", "display_value": "DNS ☁"}}
    }))
    .expect("a valid incident")
}

fn user() -> User {
    serde_json::from_value(json!({
        "integration_id": "4711",
        "sys_id": USER_SYS_ID,
        "sys_updated_on": "2026-03-04T05:06:07Z",
        "user_name": "zoe.angstrom",
        "name": "Zoë Ångström",
        "email": "zoe@example.com",
        "employee_number": "100042",
        "excluded_fields": []
    }))
    .expect("a valid user")
}

/// The record as a producer on released schema `version` writes it: resolved into that
/// schema (fields it lacks are dropped) and headed with its fingerprint.
fn written_with_release<T: AvroRecord>(record: &T, version: u32) -> anyhow::Result<Vec<u8>> {
    let Some(release) = T::contract()
        .released()
        .iter()
        .find(|release| release.version() == version)
    else {
        anyhow::bail!("{} has no v{version}", T::contract().full_name());
    };
    let value = record.to_avro().resolve(release.schema())?;
    let mut message = MAGIC.to_vec();
    message.extend(release.fingerprint().wire_bytes());
    message.extend(to_avro_datum(release.schema(), value)?);
    Ok(message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_decodes_entities_of_every_schema_version_and_tombstones()
-> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let kafka = broker.kafka_config();
    let incidents = unique("sei.servicenow.incident");
    let users = unique("sei.servicenow.user");
    ensure_topics(
        &kafka,
        &[
            TopicSpec::compacted(&incidents, 1),
            TopicSpec::compacted(&users, 1),
        ],
    )
    .await?;
    let producer = Producer::new(&kafka)?;
    let messages: [(&str, String, Option<Vec<u8>>); 5] = [
        (
            &incidents,
            format!("4711:{INCIDENT_SYS_ID}"),
            Some(incident().encode()?),
        ),
        (
            &incidents,
            "4711:incident-v1".to_owned(),
            Some(written_with_release(&incident(), 1)?),
        ),
        (&incidents, "4711:deadbeef".to_owned(), None),
        (
            &users,
            format!("4711:{USER_SYS_ID}"),
            Some(user().encode()?),
        ),
        (
            &users,
            "4711:user-v1".to_owned(),
            Some(written_with_release(&user(), 1)?),
        ),
    ];
    for (topic, key, value) in &messages {
        producer
            .send(OutRecord::new(topic, key.as_bytes(), value.as_deref()))
            .await?;
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = tokio::task::spawn_blocking({
        let bootstrap = broker.bootstrap_servers();
        let (incidents, users) = (incidents.clone(), users.clone());
        move || {
            Command::new("python3")
                .arg(root.join("docs/examples/consume_entities.py"))
                .args(["--bootstrap", &bootstrap])
                .arg("--schemas")
                .arg(root.join("schemas"))
                .args(["--topic", &incidents, "--topic", &users])
                .args(["--group", &unique("python"), "--max-idle", "5"])
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
    assert_eq!(lines.len(), messages.len(), "{lines:?}");
    let line = |key: &str| {
        lines
            .iter()
            .find(|line| line["key"] == key)
            .unwrap_or_else(|| panic!("nothing printed for {key}: {lines:?}"))
    };

    // Written with the current schema (v2).
    let live = line(&format!("4711:{INCIDENT_SYS_ID}"));
    assert_eq!(live["topic"], incidents.as_str());
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
    assert_eq!(
        decoded["caused_by"],
        json!({"sys_id": "c83c5e5347c12200e0ef563dbb9a7190", "display_value": "CHG0030002"})
    );

    // Written by a v1 producer: the same fields, caused_by filled with its default.
    let from_v1 = &line("4711:incident-v1")["value"];
    let mut expected = decoded.clone();
    expected["caused_by"] = Value::Null;
    assert_eq!(from_v1, &expected);

    let user_v2 = &line(&format!("4711:{USER_SYS_ID}"))["value"];
    assert_eq!(user_v2["name"], "Zoë Ångström");
    assert_eq!(user_v2["employee_number"], "100042");
    let user_v1 = &line("4711:user-v1")["value"];
    let mut expected = user_v2.clone();
    expected["employee_number"] = Value::Null;
    assert_eq!(user_v1, &expected);

    let deleted = line("4711:deadbeef");
    assert_eq!(deleted["deleted"], true);
    assert!(deleted["value"].is_null());
    Ok(())
}
