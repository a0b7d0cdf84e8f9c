//! `nowstream_sink_freshness_seconds`: the time from a record's `sys_updated_on` to SEI's
//! acknowledgement, observed once per delivered upsert, on the sink binary's `/metrics`; and
//! the process's resident memory beside it.

use crate::common;

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use common::{API_KEY, Env, Expected, Final, Produced, incident, produce, spawn_sink};
use nowstream_model::{AvroRecord, Entity, Version};
use nowstream_testkit::{StageProcess, unique};

/// Upserts with known times.
const UPSERTS: usize = 40;
/// Tombstones: they carry no time and must not be observed.
const DELETES: usize = 5;

async fn metrics_text(sink: &StageProcess) -> Result<String> {
    let probe = sink.probe_addr(Duration::from_secs(60)).await?;
    Ok(reqwest::get(format!("http://{probe}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The value of the series `series` (name and labels exactly as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivered_upsert_is_observed_once_with_at_least_its_age_and_deletes_are_not()
-> Result<()> {
    let env = Env::start().await?;
    // Whole seconds, as ServiceNow's sys_updated_on; between 2 and 3 hours old.
    let now = DateTime::<Utc>::from_timestamp(Utc::now().timestamp(), 0).context("now")?;
    let mut records = Vec::new();
    let mut expected = Expected::new();
    let mut changed_at = Vec::new();
    for index in 0..UPSERTS {
        let sys_id = format!("{:032x}", 0xf00 + index);
        let updated = now - TimeDelta::hours(2) - TimeDelta::seconds(index as i64 * 60);
        records.push(Produced {
            entity: Entity::Incident,
            sys_id: sys_id.clone(),
            value: Some(incident(&sys_id, updated, Some(1)).encode()?),
        });
        expected.insert(
            (Entity::Incident, sys_id),
            Final::Live(Version::new(updated, Some(1))),
        );
        changed_at.push(updated);
    }
    for index in 0..DELETES {
        let sys_id = format!("{:032x}", 0xd00 + index);
        records.push(Produced {
            entity: Entity::Incident,
            sys_id: sys_id.clone(),
            value: None,
        });
        expected.insert((Entity::Incident, sys_id), Final::Deleted);
    }
    produce(&env.kafka(), &env.topics(), &records).await?;

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sink.toml");
    std::fs::write(
        &config,
        env.config_toml(API_KEY, &unique("sink"), "batch_max_records = 10"),
    )?;
    // Every acknowledgement comes after this instant: the lower bound of every age.
    let started = Utc::now();
    let mut sink = spawn_sink(&config, &dir.path().join("sink.log"))?;
    env.wait_for_state(&expected, Duration::from_secs(120))
        .await?;
    // sei-local answers before the sink records the acknowledgement: wait for the last one.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = metrics_text(&sink).await?;
        let sent = value(
            &text,
            "nowstream_sink_records_sent_total{entity=\"incident\",op=\"upsert\"}",
        );
        if sent == Some(UPSERTS as f64) || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let series = |suffix: &str| format!("nowstream_sink_freshness_seconds{suffix}");
    let count = value(&text, &series("_count{entity=\"incident\"}"))
        .with_context(|| format!("no freshness count in:\n{text}"))?;
    assert_eq!(count, UPSERTS as f64, "one observation per upsert:\n{text}");
    let sum = value(&text, &series("_sum{entity=\"incident\"}")).context("no freshness sum")?;
    let at_least: f64 = changed_at
        .iter()
        .map(|changed| (started - *changed).num_milliseconds() as f64 / 1000.0)
        .sum();
    assert!(
        sum >= at_least,
        "the sum {sum} s is at least the ages when the sink started, {at_least} s"
    );
    // Every record is over two hours old: none in a bucket up to one hour, all in the +Inf one.
    assert_eq!(
        value(&text, &series("_bucket{entity=\"incident\",le=\"3600\"}")),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, &series("_bucket{entity=\"incident\",le=\"+Inf\"}")),
        Some(UPSERTS as f64),
        "{text}"
    );
    // The process's memory is on the same page.
    let resident = value(&text, "process_resident_memory_bytes").context("no resident memory")?;
    assert!(resident > 0.0, "{resident}");

    sink.stop(Duration::from_secs(30)).await;
    Ok(())
}
