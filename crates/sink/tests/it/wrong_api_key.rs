//! A wrong API key stops the sink cleanly: nothing committed, nothing dead-lettered, one
//! clear log line, readiness failing; with the key fixed, a restart delivers everything.

use crate::common;
use nowstream_testkit::StageProcess;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{API_KEY, Env, TENANT, dataset, produce, spawn_sink};
use nowstream_model::Entity;
use nowstream_testkit::unique;

const WRONG_KEY: &str = "not-the-key-9f8e7d";

async fn wait_not_ready(sink: &StageProcess, timeout: Duration) -> Result<serde_json::Value> {
    let probe = sink.probe_addr(Duration::from_secs(60)).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let response = reqwest::get(format!("http://{probe}/readyz")).await?;
        if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            let body: serde_json::Value = response.json().await?;
            if body.to_string().contains("sink.sei") {
                return Ok(body);
            }
        }
        if Instant::now() >= deadline {
            bail!("/readyz never reported sink.sei; log:\n{}", sink.text());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_key_stops_the_sink_without_committing_and_a_fixed_key_delivers_everything()
-> Result<()> {
    let env = Env::start().await?;
    let data = dataset(2_000);
    produce(&env.kafka(), &env.topics(), &data.records).await?;
    let dir = tempfile::tempdir()?;
    let group = unique("sink");
    let sink_keys = "batch_max_records = 100";

    // Wrong key.
    let config = dir.path().join("wrong.toml");
    std::fs::write(&config, env.config_toml(WRONG_KEY, &group, sink_keys))?;
    let mut sink = spawn_sink(&config, &dir.path().join("wrong.log"))?;
    let readiness = wait_not_ready(&sink, Duration::from_secs(60)).await?;
    assert_eq!(readiness["ready"], false);
    // Not ready may mean "not yet in its group" on Apache Kafka: wait for SEI's refusal itself.
    let refused_by = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < refused_by
        && !sink.events().iter().any(|line| line["level"] == "ERROR")
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give every other in-flight batch time to be refused too: still only one line.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let errors: Vec<serde_json::Value> = sink
        .events()
        .into_iter()
        .filter(|line| line["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error line:\n{}", sink.text());
    let line = errors[0].to_string();
    assert!(line.contains(TENANT), "names the tenant: {line}");
    assert!(line.contains(env.sei.base_url()), "names the URL: {line}");
    assert!(line.contains("401"), "says what SEI answered: {line}");
    assert!(
        !sink.text().contains(WRONG_KEY) && !readiness.to_string().contains(WRONG_KEY),
        "the key is never shown"
    );
    assert!(env.sei.stats().count(401) >= 1);
    if std::env::var_os("SHOW_SINK_LOG").is_some() {
        eprintln!("{}", sink.text());
    }

    sink.terminate();
    let status = sink
        .wait_exit(Duration::from_secs(60))
        .await
        .with_context(|| format!("the sink did not exit within 60s; log:\n{}", sink.text()))?;
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    assert!(
        env.committed(&group)?.iter().all(Option::is_none),
        "no offset was committed: {:?}",
        env.committed(&group)?
    );
    assert!(env.dlq_is_empty()?, "nothing was dead-lettered");
    for entity in Entity::ALL {
        assert!(
            env.sei
                .records(TENANT, common::INTEGRATION, entity)?
                .is_empty()
        );
    }

    // Fixed key, same group: everything arrives.
    let config = dir.path().join("fixed.toml");
    std::fs::write(&config, env.config_toml(API_KEY, &group, sink_keys))?;
    let mut sink = spawn_sink(&config, &dir.path().join("fixed.log"))?;
    env.wait_for_state(&data.expected, Duration::from_secs(120))
        .await?;
    // Delivered records, batches, latency and lag are on /metrics.
    let metrics = metrics_text(&sink).await?;
    for expected in [
        "nowstream_sink_records_sent_total{entity=\"incident\",op=\"upsert\"}",
        "nowstream_sink_batches_total{entity=\"user\"}",
        "nowstream_sink_records_sent_total{entity=\"field_definition\",op=\"delete\"}",
        "nowstream_sink_consumer_lag{",
        "nowstream_sink_request_duration_seconds",
    ] {
        assert!(
            metrics.contains(expected),
            "/metrics has {expected}:\n{metrics}"
        );
    }
    sink.terminate();
    let status = sink
        .wait_exit(Duration::from_secs(60))
        .await
        .with_context(|| format!("the sink did not exit within 60s; log:\n{}", sink.text()))?;
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    assert_eq!(
        env.committed(&group)?,
        env.high_watermarks()?,
        "everything is committed after a clean stop"
    );
    Ok(())
}

/// `/metrics` of a running sink, once the consumer lag was measured.
async fn metrics_text(sink: &StageProcess) -> Result<String> {
    let probe = sink.probe_addr(Duration::from_secs(30)).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = reqwest::get(format!("http://{probe}/metrics"))
            .await?
            .text()
            .await?;
        if text.contains("nowstream_sink_consumer_lag{") || std::time::Instant::now() > deadline {
            return Ok(text);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
