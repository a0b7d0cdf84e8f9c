//! Against a ServiceNow whose `sys_dictionary` lists only custom fields, every field the
//! normalizer maps still reaches the raw topics: the fetcher asks for them whatever the
//! dictionary says.

use crate::common;

use std::time::Duration;

use common::{RawReader, config, sim_config, sim_records};
use nowstream_fetcher::fields::mapped_fields;
use nowstream_model::RecordOp;
use nowstream_runtime::Health;
use nowstream_servicenow_sim::Simulator;
use nowstream_testkit::{KafkaBroker, unique};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_mapped_field_arrives_when_the_dictionary_lists_only_custom_fields()
-> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let mut sim_settings = sim_config(60, 20, 10, 0);
    sim_settings.data.dictionary_base_fields = false;
    let sim = Simulator::start(sim_settings).await?;
    let prefix = format!("{}.", unique("mapped"));
    let shutdown = CancellationToken::new();
    let fetcher = tokio::spawn(nowstream_fetcher::run(
        config(broker, &sim, &prefix, ""),
        Health::new(),
        shutdown.clone(),
    ));
    let mut reader = RawReader::new(broker, &prefix);
    reader
        .assert_all_of(&sim_records(&sim), Duration::from_secs(180))
        .await;

    for table in ["incident", "change_request"] {
        let stored = sim.snapshot(table)?;
        // The mapped fields this simulator has columns for (it keeps no journals), and the
        // dot-walked ones.
        let expected: Vec<&str> = mapped_fields(table)
            .into_iter()
            .filter(|field| field.contains('.') || stored[0].contains_key(*field))
            .collect();
        assert!(expected.len() > 15, "{expected:?}");
        for record in stored {
            let sys_id = &record["sys_id"];
            let raw = reader
                .seen
                .latest
                .get(&(table.to_owned(), sys_id.clone()))
                .filter(|raw| raw.op == RecordOp::Upsert)
                .unwrap_or_else(|| panic!("{table} {sys_id} published"));
            let payload: Map<String, Value> =
                serde_json::from_str(raw.payload.as_deref().expect("payload"))?;
            for field in &expected {
                assert!(
                    payload.contains_key(*field),
                    "{table} {sys_id} lacks {field}: {payload:?}"
                );
            }
            for field in ["number", "sys_created_on"] {
                assert_eq!(
                    payload[field]["value"].as_str(),
                    Some(record[field].as_str()),
                    "{table} {sys_id} {field}"
                );
            }
        }
    }
    shutdown.cancel();
    fetcher.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_without_a_number_is_published_and_reported_by_table_and_sys_id()
-> anyhow::Result<()> {
    let broker = KafkaBroker::shared()?;
    let sim = Simulator::start(sim_config(20, 5, 5, 0)).await?;
    let numberless = sim.insert(
        "incident",
        serde_json::json!({"short_description": "imported without a number"}),
    )?;
    let sys_id = numberless["sys_id"].clone();
    sim.update("incident", &sys_id, serde_json::json!({"number": ""}))?;
    let prefix = format!("{}.", unique("identity"));
    let dir = tempfile::tempdir()?;
    let mut setup = common::Setup::new(broker, &sim, &prefix);
    setup.json_logs = true;
    let path = setup.write(dir.path(), "fetcher.toml");
    let fetcher = common::spawn_fetcher(&path, "info");

    let mut reader = RawReader::new(broker, &prefix);
    reader
        .assert_all_of(&sim_records(&sim), Duration::from_secs(180))
        .await;
    let report = fetcher
        .wait_for_event(Duration::from_secs(30), |event| {
            event["message"]
                .as_str()
                .is_some_and(|m| m.contains("without a mapped identity field"))
                && event["table"] == "incident"
                && event["sys_id"] == sys_id.as_str()
        })
        .await;
    assert!(report.is_some(), "reported\n{}", fetcher.text());
    let others = fetcher
        .events()
        .into_iter()
        .filter(|event| {
            event["message"]
                .as_str()
                .is_some_and(|m| m.contains("without a mapped identity field"))
                && event["sys_id"] != sys_id.as_str()
        })
        .count();
    assert_eq!(others, 0, "only the numberless record is reported");
    Ok(())
}
