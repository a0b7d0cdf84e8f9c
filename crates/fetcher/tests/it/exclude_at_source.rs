//! `exclude_at_source = true`: excluded fields are never asked for, so their values never
//! reach the raw topics, while the dot-walked fields SEI needs still do.

use crate::common;

use std::time::Duration;

use common::{RawReader, Setup, sim_ids, start_sim};
use nowstream_model::RecordOp;
use nowstream_runtime::Health;
use nowstream_testkit::{KafkaBroker, unique};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The top-level field names of a raw payload.
fn payload_fields(payload: &str) -> Vec<String> {
    match serde_json::from_str::<Value>(payload).expect("payload is JSON") {
        Value::Object(fields) => fields.keys().cloned().collect(),
        other => panic!("payload is not an object: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_fields_are_never_fetched_but_dot_walked_departments_still_are()
-> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let sim = start_sim(120, 40, 10, 0).await;
    // The generator fills u_root_cause on resolved incidents: make sure the test data has
    // values that could leak.
    let root_causes = sim
        .snapshot("incident")?
        .iter()
        .filter(|record| {
            record
                .get("u_root_cause")
                .is_some_and(|value| !value.is_empty())
        })
        .count();
    assert!(
        root_causes > 0,
        "the simulator generates incidents with a root cause"
    );

    let prefix = format!("{}.", unique("exclude"));
    let mut setup = Setup::new(broker, &sim, &prefix);
    setup.integration = r#"exclude_fields = ["Summary", "u_root_cause"]
exclude_at_source = true"#
        .to_owned();
    setup.fetcher = "page_size = 50".to_owned();
    let shutdown = CancellationToken::new();
    let fetcher = tokio::spawn(nowstream_fetcher::run(
        setup.config(),
        Health::new(),
        shutdown.clone(),
    ));

    let incidents = sim_ids(&sim, "incident");
    let changes = sim_ids(&sim, "change_request");
    let users = sim_ids(&sim, "sys_user");
    let mut reader = RawReader::new(broker, &prefix);
    let complete = reader
        .read_until(Duration::from_secs(120), |seen| {
            incidents.is_subset(&seen.ids("incident", RecordOp::Upsert))
                && changes.is_subset(&seen.ids("change_request", RecordOp::Upsert))
                && users.is_subset(&seen.ids("sys_user", RecordOp::Upsert))
        })
        .await;
    assert!(
        complete,
        "every incident, change request and user is published"
    );

    for record in reader.seen.latest.values() {
        let Some(payload) = record.payload.as_deref() else {
            continue;
        };
        let fields = payload_fields(payload);
        match record.table.as_str() {
            "incident" | "change_request" => {
                for excluded in ["short_description", "u_root_cause", "summary"] {
                    assert!(
                        !fields.iter().any(|field| field == excluded),
                        "{} {} carries excluded field {excluded}: {fields:?}",
                        record.table,
                        record.sys_id
                    );
                }
                assert!(
                    fields
                        .iter()
                        .any(|field| field == "business_service.department"),
                    "{} {} lacks business_service.department: {fields:?}",
                    record.table,
                    record.sys_id
                );
                // Everything else is still asked for.
                for kept in ["number", "priority", "state", "opened_at", "sys_updated_on"] {
                    assert!(
                        fields.iter().any(|field| field == kept),
                        "{} {} lacks {kept}: {fields:?}",
                        record.table,
                        record.sys_id
                    );
                }
                // Not even nested under another field.
                assert!(
                    !payload.contains("short_description") && !payload.contains("u_root_cause")
                );
            }
            "sys_user" => assert!(
                fields.iter().any(|field| field == "user_name"),
                "users keep their ordinary fields: {fields:?}"
            ),
            _ => {}
        }
    }
    let incident_fields = reader
        .seen
        .latest
        .values()
        .find(|record| record.table == "incident")
        .and_then(|record| record.payload.as_deref())
        .map(payload_fields)
        .unwrap_or_default();
    assert!(
        incident_fields
            .iter()
            .any(|field| field == "u_customer_impact"),
        "custom fields that are not excluded are still fetched: {incident_fields:?}"
    );

    shutdown.cancel();
    fetcher.await??;
    Ok(())
}
