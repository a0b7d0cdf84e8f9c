//! A 400 that is not SEI's contract error (an HTML page from a proxy or WAF in front of SEI)
//! is not a bad record: the sink parks instead of bisecting the batch into the DLQ, and once
//! the block is lifted everything arrives.

use crate::common;
use nowstream_testkit::StageProcess;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{API_KEY, Env, TENANT, dataset, produce, spawn_sink};
use nowstream_model::Entity;
use nowstream_sei_local::{Fault, FaultRule};
use nowstream_testkit::unique;

/// `/readyz` of the sink binary: its status code and body.
async fn readyz(sink: &StageProcess) -> Result<(u16, serde_json::Value)> {
    let probe = sink.probe_addr(Duration::from_secs(60)).await?;
    let response = reqwest::get(format!("http://{probe}/readyz")).await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or_default()))
}

async fn metrics_text(sink: &StageProcess) -> Result<String> {
    let probe = sink.probe_addr(Duration::from_secs(60)).await?;
    Ok(reqwest::get(format!("http://{probe}/metrics"))
        .await?
        .text()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_400_parks_the_sink_without_dead_letters_or_commits_and_everything_arrives_once_lifted()
-> Result<()> {
    let env = Env::start().await?;
    let data = dataset(600);
    produce(&env.kafka(), &env.topics(), &data.records).await?;
    env.sei.set_faults(vec![
        FaultRule::always(Fault::HtmlBadRequest).on_path("/v1/ingest/"),
    ]);
    let dir = tempfile::tempdir()?;
    let group = unique("sink");
    let config = dir.path().join("sink.toml");
    std::fs::write(
        &config,
        env.config_toml(API_KEY, &group, "batch_max_records = 100"),
    )?;
    let mut sink = spawn_sink(&config, &dir.path().join("sink.log"))?;

    // Parked: /readyz says why.
    let deadline = Instant::now() + Duration::from_secs(60);
    let readiness = loop {
        let (status, body) = readyz(&sink).await?;
        let parked = body["not_ready"].as_array().is_some_and(|components| {
            components.iter().any(|component| {
                component["component"] == "sink.sei"
                    && component["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("400"))
            })
        });
        if status == 503 && parked {
            break body;
        }
        if Instant::now() >= deadline {
            bail!("/readyz never reported the 400; log:\n{}", sink.text());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        readiness.to_string().contains("text/html"),
        "says what SEI answered: {readiness}"
    );
    // Let in-flight batches be refused too and a few probes go out (back-off up to 2 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        env.sei.stats().count(400) >= 2,
        "the refused batch was tried again: {:?}",
        env.sei.stats()
    );
    assert!(env.dlq_is_empty()?, "nothing was dead-lettered");
    assert!(
        env.committed(&group)?.iter().all(Option::is_none),
        "nothing was committed: {:?}",
        env.committed(&group)?
    );
    for entity in Entity::ALL {
        assert!(
            env.sei
                .records(TENANT, common::INTEGRATION, entity)?
                .is_empty()
        );
    }
    let errors: Vec<String> = sink
        .events()
        .into_iter()
        .filter(|line| line["level"] == "ERROR")
        .map(|line| line.to_string())
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{}", sink.text());
    for expected in ["400", "text/html", "Request blocked", "foreign_400"] {
        assert!(
            errors[0].contains(expected),
            "names {expected}: {}",
            errors[0]
        );
    }
    assert!(!sink.text().contains(API_KEY), "the key is never shown");
    let metrics = metrics_text(&sink).await?;
    assert!(
        metrics.lines().any(|line| {
            line.starts_with("nowstream_sink_refusals_total{") && line.contains("foreign_400")
        }),
        "refusals are counted:\n{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|line| line == "nowstream_sink_parked 1"),
        "parked is shown:\n{metrics}"
    );

    // The proxy lets requests through again: the probe is taken and everything arrives.
    env.sei.set_faults(Vec::new());
    env.wait_for_state(&data.expected, Duration::from_secs(120))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz(&sink).await?.0 != 200 {
        if Instant::now() >= deadline {
            bail!("never ready again; log:\n{}", sink.text());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
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
    assert!(env.dlq_is_empty()?, "still nothing dead-lettered");
    Ok(())
}
