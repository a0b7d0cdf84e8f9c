//! The whole product as its users run it: the three stage binaries as real processes over an
//! Apache Kafka broker, the ServiceNow simulator as the source and sei-local as SEI. At the end
//! SEI must equal ServiceNow minus the excluded fields — also after a `kill -9` of every stage.

use crate::stack;

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::NaiveDateTime;
use nowstream_model::Entity;
use nowstream_sei_local::RunningSeiLocal;
use nowstream_servicenow_sim::RunningSim;
use nowstream_testkit::KafkaBroker;
use serde_json::{Value, json};
use stack::{API_KEY, STAGES, Stack, StackConfig, TENANT};

/// The stack on the broker shared by this test process.
async fn start_stack() -> anyhow::Result<Stack> {
    let broker = KafkaBroker::shared()?;
    Stack::start(StackConfig::new(broker.bootstrap_servers(), 20_000)).await
}

/// Mean and median hours to restore over the simulator's resolved incidents.
fn mttr_of_the_simulator(sim: &RunningSim) -> anyhow::Result<(u64, f64, f64)> {
    let time = |value: &str| NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S");
    let mut hours = Vec::new();
    for incident in sim.snapshot("incident")? {
        match (incident.get("opened_at"), incident.get("resolved_at")) {
            (Some(opened), Some(resolved)) if !opened.is_empty() && !resolved.is_empty() => {
                hours.push(
                    (time(resolved)? - time(opened)?).num_milliseconds() as f64 / 3_600_000.0,
                );
            }
            _ => {}
        }
    }
    hours.sort_by(f64::total_cmp);
    let count = hours.len();
    anyhow::ensure!(count > 0, "the simulator generated no resolved incident");
    let mean = hours.iter().sum::<f64>() / count as f64;
    let median = if count % 2 == 1 {
        hours[count / 2]
    } else {
        (hours[count / 2 - 1] + hours[count / 2]) / 2.0
    };
    Ok((count as u64, mean, median))
}

async fn mttr_of_sei(sei: &RunningSeiLocal) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/metrics/mttr", sei.base_url()))
        .query(&[
            ("integration_id", "4711"),
            ("from", "1970-01-01T00:00:00Z"),
            ("to", "2100-01-01T00:00:00Z"),
        ])
        .header("Authorization", format!("Apikey {API_KEY}"))
        .header("X-Tenant", TENANT)
        .send()
        .await?
        .error_for_status()?;
    Ok(response.json().await?)
}

fn assert_mttr_matches(sim: &RunningSim, report: &Value) -> anyhow::Result<()> {
    let (count, mean, median) = mttr_of_the_simulator(sim)?;
    let overall = &report["overall"];
    assert_eq!(overall["count"].as_u64(), Some(count), "{report}");
    let close =
        |value: &Value, want: f64| value.as_f64().is_some_and(|got| (got - want).abs() < 1e-6);
    assert!(
        close(&overall["mean_hours"], mean),
        "mean: SEI {} vs ServiceNow {mean}",
        overall["mean_hours"]
    );
    assert!(
        close(&overall["median_hours"], median),
        "median: SEI {} vs ServiceNow {median}",
        overall["median_hours"]
    );
    Ok(())
}

/// Live changes in ServiceNow after the backfill: a create, an update, a delete.
fn change_servicenow(sim: &RunningSim) -> anyhow::Result<()> {
    sim.insert("incident", json!({"short_description": "secret summary", "priority": "1", "urgency": "1", "impact": "1"}))?;
    let incidents = sim.snapshot("incident")?;
    let first = incidents[0].get("sys_id").cloned().context("sys_id")?;
    sim.update(
        "incident",
        &first,
        json!({"priority": "2", "comments": "secret comment"}),
    )?;
    let second = incidents[1].get("sys_id").cloned().context("sys_id")?;
    sim.delete("incident", &second)?;
    let change = sim.snapshot("change_request")?[0]
        .get("sys_id")
        .cloned()
        .context("sys_id")?;
    sim.delete("change_request", &change)?;
    Ok(())
}

const SETTLE: Duration = Duration::from_secs(900);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sei_equals_servicenow_minus_excluded_fields_after_backfill_and_live_changes()
-> anyhow::Result<()> {
    let mut stack = start_stack().await?;
    let left = stack.wait_until_equal(SETTLE).await?;
    assert!(left.is_empty(), "after the backfill: {left:#?}");
    assert_mttr_matches(&stack.sim, &mttr_of_sei(&stack.sei).await?)?;
    // The schema v2 fields arrived with values, not only as equal nulls.
    let live = |entity| stack.live(entity);
    assert!(
        live(Entity::Incident)?
            .values()
            .any(|i| !i["caused_by"].is_null())
    );
    assert!(
        live(Entity::User)?
            .values()
            .any(|u| !u["employee_number"].is_null())
    );

    change_servicenow(&stack.sim)?;
    let left = stack.wait_until_equal(Duration::from_secs(120)).await?;
    assert!(left.is_empty(), "after live changes: {left:#?}");
    assert_mttr_matches(&stack.sim, &mttr_of_sei(&stack.sei).await?)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sei_still_equals_servicenow_after_a_kill_9_of_every_stage() -> anyhow::Result<()> {
    let mut stack = start_stack().await?;
    // Kill each stage once while data flows: the fetcher mid-backfill, then the normalizer and
    // the sink while they still have input.
    for stage in STAGES {
        let deadline = Instant::now() + Duration::from_secs(300);
        let arrived_before = stack.live(Entity::Incident)?.len();
        while stack.live(Entity::Incident)?.len() < arrived_before + 2_000
            && Instant::now() < deadline
        {
            stack.assert_running()?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        stack.kill_and_restart(stage).await?;
    }
    change_servicenow(&stack.sim)?;
    let left = stack.wait_until_equal(SETTLE).await?;
    assert!(left.is_empty(), "after kills: {left:#?}");
    assert_mttr_matches(&stack.sim, &mttr_of_sei(&stack.sei).await?)?;
    Ok(())
}
