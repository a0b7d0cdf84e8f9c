//! The documented Java consumer (docs/examples/java) decodes what nowstream writes: built with
//! Maven from the pre-fetched dependencies, run against Apache Kafka, fed every entity written with
//! every version of its schema (the current one and each released one) plus a tombstone per topic.
//! What it prints must equal what nowstream's own decoder makes of the same bytes.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use apache_avro::to_avro_datum;
use nowstream_bus::{OutRecord, Producer, TopicSpec, ensure_topics};
use nowstream_model::single_object::MAGIC;
use nowstream_model::{
    AvroRecord, ChangeRequest, Entity, FieldDefinition, Incident, TopicNames, User,
};
use nowstream_testkit::{KafkaBroker, KafkaInstall, unique};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Maven must be installed (Debian: maven); scripts/install-test-deps checks for it and fetches.
const INSTALL_HINT: &str = "run scripts/install-test-deps: it needs Maven (Debian: maven) and \
     pre-fetches the example's dependencies (mvn -f docs/examples/java/pom.xml package)";

/// One record put on a topic, and the line the example must print for it.
struct Written {
    topic: String,
    key: String,
    /// The entity as nowstream's decoder reads it; `None` for a tombstone.
    expected: Option<Value>,
    message: Option<Vec<u8>>,
}

/// A sample of each entity, as SEI entity JSON; `sys_id` is set per schema version.
fn sample(entity: Entity) -> Value {
    let custom_fields = json!({
        "u_root_cause": {"value": "dns", "display_value": "DNS — 名前解決 ☁"},
        "u_empty": {"value": null, "display_value": null}
    });
    match entity {
        Entity::Incident => json!({
            "integration_id": "4711",
            "sys_updated_on": "2026-01-02T03:04:05.678Z",
            "sys_mod_count": 3,
            "number": "INC0010001",
            "description": "Zahlungen 💸 hängen\nseit 08:00 — see \"payments\"",
            "priority": {"value": "1", "label": "1 - Critical"},
            "close_code": {"value": "Solved (Permanently)", "label": null},
            "opened_at": "2026-01-02T01:00:00Z",
            "resolved_at": "2026-01-02T03:00:00Z",
            "time_to_restore_ms": 7_200_000,
            "assigned_to": {"sys_id": "5137153cc611227c000bbd1bd8cd2005", "display_value": "Fred Luddy"},
            // Since v2: dropped when written with v1, read back as null.
            "caused_by": {"sys_id": "c83c5e5347c12200e0ef563dbb9a7190", "display_value": "CHG0030002"},
            "excluded_fields": ["short_description", "comments"],
            "custom_fields": custom_fields
        }),
        Entity::ChangeRequest => json!({
            "integration_id": "4711",
            "sys_updated_on": "2026-02-03T04:05:06Z",
            "sys_mod_count": 12,
            "number": "CHG0030001",
            "short_description": "Rotate TLS certificates",
            "state": {"value": "3", "label": "Closed"},
            "start_date": "2026-02-03T01:00:00Z",
            "end_date": "2026-02-03T02:30:00.001Z",
            "requested_by_department": {"sys_id": "221f79b7c6112284005d646b76ab978c", "display_value": null},
            "excluded_fields": [],
            "custom_fields": custom_fields
        }),
        Entity::User => json!({
            "integration_id": "4711",
            "sys_updated_on": "2026-03-04T05:06:07Z",
            "user_name": "zoe.angstrom",
            "name": "Zoë Ångström",
            "email": "zoe@example.com",
            // Since v2.
            "employee_number": "100042",
            "active": true,
            "manager": {"sys_id": "6816f79cc0a8016401c5a33be04be441", "display_value": "System Administrator"},
            "excluded_fields": ["title"]
        }),
        Entity::FieldDefinition => json!({
            "integration_id": "4711",
            "sys_updated_on": "2026-04-05T06:07:08Z",
            "sys_mod_count": 0,
            "table": "incident",
            "element": "u_root_cause",
            "column_label": "Root cause",
            "internal_type": "string",
            "mandatory": false,
            "active": true,
            "max_length": 40
        }),
    }
}

/// The sample written with the current schema (as the normalizer writes it) and with every
/// released version (as an earlier nowstream release wrote it), each under its own key.
fn written<T>(entity: Entity, topic: &str) -> anyhow::Result<Vec<Written>>
where
    T: AvroRecord + Serialize + DeserializeOwned,
{
    let contract = T::contract();
    assert!(
        !contract.released().is_empty(),
        "{} has no released version to write with",
        contract.full_name()
    );
    let mut versions = vec![("current".to_owned(), None)];
    versions.extend(
        contract
            .released()
            .iter()
            .map(|released| (format!("v{}", released.version()), Some(released))),
    );
    let mut written = Vec::new();
    for (version, released) in versions {
        let sys_id = format!("{}-{version}", entity.name());
        let mut json = sample(entity);
        json["sys_id"] = json!(sys_id);
        let record: T = serde_json::from_value(json)?;
        let message = match released {
            None => record.encode()?,
            Some(released) => {
                let value = record.to_avro().resolve(released.schema())?;
                let mut message = MAGIC.to_vec();
                message.extend(released.fingerprint().wire_bytes());
                message.extend(to_avro_datum(released.schema(), value)?);
                message
            }
        };
        written.push(Written {
            topic: topic.to_owned(),
            key: format!("4711:{sys_id}"),
            expected: Some(serde_json::to_value(T::decode(&message)?)?),
            message: Some(message),
        });
    }
    written.push(Written {
        topic: topic.to_owned(),
        key: format!("4711:{}-deleted", entity.name()),
        expected: None,
        message: None,
    });
    Ok(written)
}

/// `mvn package` offline, once per test process: the suite never downloads, and
/// scripts/install-test-deps already did.
fn example_jar() -> PathBuf {
    static JAR: OnceLock<PathBuf> = OnceLock::new();
    JAR.get_or_init(|| {
        let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/java");
        let output = Command::new("mvn")
            .args(["-q", "-B", "--offline", "-Dstyle.color=never", "-f"])
            .arg(project.join("pom.xml"))
            .arg("package")
            .output();
        let output = match output {
            Err(error) if error.kind() == ErrorKind::NotFound => {
                panic!("Maven (mvn) is not on PATH; {INSTALL_HINT}")
            }
            Err(error) => panic!("cannot run mvn: {error}"),
            Ok(output) => output,
        };
        assert!(
            output.status.success(),
            "building the Java example failed; {INSTALL_HINT}\n{}",
            describe(&output)
        );
        project.join("target/consume-entities.jar")
    })
    .clone()
}

/// Runs the example until it has been idle for a while, and returns its lines by record key.
async fn run_example(
    broker: &KafkaBroker,
    schemas: &Path,
    topics: &[String],
) -> anyhow::Result<BTreeMap<String, Value>> {
    let java = KafkaInstall::locate()?.java;
    let mut command = Command::new(java);
    command
        .arg("-jar")
        .arg(tokio::task::spawn_blocking(example_jar).await?)
        .args(["--bootstrap", &broker.bootstrap_servers()])
        .arg("--schemas")
        .arg(schemas)
        // Generous: the idle clock starts before the consumer has joined its group.
        .args(["--group", &unique("java-example"), "--max-idle", "20"]);
    for topic in topics {
        command.args(["--topic", topic]);
    }
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    assert!(
        output.status.success(),
        "the example failed: {}",
        describe(&output)
    );

    let mut printed = BTreeMap::new();
    for line in String::from_utf8(output.stdout.clone())?.lines() {
        let line: Value = serde_json::from_str(line)
            .map_err(|error| anyhow::anyhow!("not a JSON line ({error}): {line}"))?;
        let key = line["key"].as_str().unwrap_or_default().to_owned();
        assert!(
            printed.insert(key.clone(), line).is_none(),
            "{key} printed twice: {}",
            describe(&output)
        );
    }
    Ok(printed)
}

/// Creates the topics and writes the records, as nowstream's producer does.
async fn produce(broker: &KafkaBroker, records: &[Written]) -> anyhow::Result<()> {
    let kafka = broker.kafka_config();
    let mut topics: Vec<&str> = records.iter().map(|record| record.topic.as_str()).collect();
    topics.dedup();
    let specs: Vec<TopicSpec> = topics
        .iter()
        .map(|topic| TopicSpec::compacted(*topic, 1))
        .collect();
    ensure_topics(&kafka, &specs).await?;
    let producer = Producer::new(&kafka)?;
    for record in records {
        producer
            .send(OutRecord::new(
                &record.topic,
                record.key.as_bytes(),
                record.message.as_deref(),
            ))
            .await?;
    }
    Ok(())
}

/// Every record has exactly its line: the entity as expected, or a deletion.
fn assert_printed(printed: &BTreeMap<String, Value>, records: &[Written]) {
    assert_eq!(
        printed.len(),
        records.len(),
        "one line per record: {printed:#?}"
    );
    for record in records {
        let Some(line) = printed.get(&record.key) else {
            panic!("nothing printed for {}: {printed:#?}", record.key);
        };
        assert_eq!(line["topic"], record.topic.as_str(), "{line}");
        match &record.expected {
            Some(entity) => {
                assert_eq!(line["deleted"], false, "{line}");
                assert_eq!(&line["value"], entity, "{} decoded differently", record.key);
            }
            None => {
                assert_eq!(line["deleted"], true, "{line}");
                assert!(line["value"].is_null(), "{line}");
            }
        }
    }
}

fn describe(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn repository_schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_example_decodes_every_entity_in_every_schema_version_and_every_tombstone()
-> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    // A deployment prefix in front of the documented names, as `kafka.topic_prefix` puts it.
    let names = TopicNames::new(format!("{}.", unique("java")))?;
    let mut records = Vec::new();
    for entity in Entity::ALL {
        let topic = names.entity(entity);
        records.extend(match entity {
            Entity::Incident => written::<Incident>(entity, &topic)?,
            Entity::ChangeRequest => written::<ChangeRequest>(entity, &topic)?,
            Entity::User => written::<User>(entity, &topic)?,
            Entity::FieldDefinition => written::<FieldDefinition>(entity, &topic)?,
        });
    }
    // v1 and v2 really differ: what v2 added is lost on the way through v1, and only there.
    let expected = |key: &str| {
        records
            .iter()
            .find(|record| record.key == key)
            .and_then(|record| record.expected.clone())
            .unwrap_or_default()
    };
    for (entity, added) in [("incident", "caused_by"), ("user", "employee_number")] {
        assert!(!expected(&format!("4711:{entity}-v2"))[added].is_null());
        assert!(!expected(&format!("4711:{entity}-current"))[added].is_null());
        assert!(expected(&format!("4711:{entity}-v1"))[added].is_null());
    }
    produce(broker, &records).await?;

    let topics: Vec<String> = Entity::ALL.iter().map(|&e| names.entity(e)).collect();
    let printed = run_example(broker, &repository_schemas(), &topics).await?;
    assert_printed(&printed, &records);
    Ok(())
}

/// The test above resolves v1 incidents and users into v2, but change requests and field
/// definitions have one release only. Here the incident reader schema gains two fields with
/// defaults (as the next release might): everything nowstream writes now is then an older
/// version, found by fingerprint among `released/` and resolved, the new fields defaulted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_example_resolves_values_written_with_an_older_schema_into_a_newer_one()
-> anyhow::Result<()> {
    let schemas = tempfile::tempdir()?;
    copy_avsc_files(&repository_schemas(), schemas.path())?;
    let current = schemas.path().join("incident.avsc");
    let mut evolved: Value = serde_json::from_str(&std::fs::read_to_string(&current)?)?;
    let Some(fields) = evolved["fields"].as_array_mut() else {
        anyhow::bail!("incident.avsc has no fields array");
    };
    fields.push(json!({"name": "reopen_count", "type": "long", "default": 0, "doc": "test"}));
    fields.push(
        json!({"name": "u_later", "type": ["null", "string"], "default": null, "doc": "test"}),
    );
    std::fs::write(&current, serde_json::to_string_pretty(&evolved)?)?;

    let broker = KafkaBroker::shared()?;
    let topic = TopicNames::new(format!("{}.", unique("java-evolved")))?.entity(Entity::Incident);
    let mut records = written::<Incident>(Entity::Incident, &topic)?;
    for record in &mut records {
        if let Some(Value::Object(entity)) = &mut record.expected {
            entity.insert("reopen_count".into(), json!(0));
            entity.insert("u_later".into(), Value::Null);
        }
    }
    produce(broker, &records).await?;

    let printed = run_example(broker, schemas.path(), &[topic]).await?;
    assert_printed(&printed, &records);
    Ok(())
}

/// Copies every `.avsc` file under `from` (the current schemas and `released/`) to `to`.
fn copy_avsc_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_avsc_files(&path, &target)?;
        } else if path
            .extension()
            .is_some_and(|extension| extension == "avsc")
        {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}
