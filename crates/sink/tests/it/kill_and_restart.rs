//! `kill -9` of the sink binary at random moments, restarted each time: SEI ends in exactly
//! the expected state.

use crate::common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{API_KEY, Env, dataset, produce, spawn_sink};
use nowstream_sei_local::{Fault, FaultRule};
use nowstream_testkit::unique;
use rand::{Rng, SeedableRng};

const KILLS: usize = 5;

/// Pause between a kill and the restart, as a crash-looping pod's restart back-off gives.
/// Apache Kafka hands the restarted member its partitions whether or not it already dropped the
/// killed one (`failover.rs` beside this file restarts at once, ten times).
const RESTART_PAUSE: Duration = Duration::from_millis(2_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_sink_at_random_moments_loses_nothing() -> Result<()> {
    let env = Env::start().await?;
    let data = dataset(12_000);
    produce(&env.kafka(), &env.topics(), &data.records).await?;
    // Slow requests, so kills land while batches are in flight.
    env.sei.set_faults(vec![
        FaultRule::always(Fault::Latency { millis: 60 }).on_path("/v1/ingest/"),
    ]);
    let dir = tempfile::tempdir()?;
    let group = unique("sink");
    // Commit often, so runs make progress between kills and replays start mid-stream. A short
    // session lets the broker forget a killed member quickly (see RESTART_PAUSE).
    let config_text = env
        .config_toml(
            API_KEY,
            &group,
            "batch_max_records = 150\nmax_in_flight_batches = 2",
        )
        .replace(
            "[sei]",
            "[kafka.properties]\n\"auto.commit.interval.ms\" = \"300\"\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\n[sei]",
        );
    let config = dir.path().join("sink.toml");
    std::fs::write(&config, config_text)?;

    let seed: u64 = rand::rng().random();
    eprintln!("kill schedule seed: {seed}");
    let mut schedule = rand::rngs::StdRng::seed_from_u64(seed);
    for run in 0..KILLS {
        let mut sink = spawn_sink(&config, &dir.path().join(format!("run-{run}.log")))?;
        let after = Duration::from_millis(schedule.random_range(300..3_000));
        tokio::time::sleep(after).await;
        sink.kill();
        tokio::time::sleep(RESTART_PAUSE).await;
        let held: usize = nowstream_model::Entity::ALL
            .iter()
            .map(|entity| {
                env.sei
                    .records(common::TENANT, common::INTEGRATION, *entity)
                    .map(|records| records.len())
                    .unwrap_or_default()
            })
            .sum();
        eprintln!(
            "run {run}: killed after {after:?}; sei-local held {held} of {} records",
            data.expected.len()
        );
    }

    let mut sink = spawn_sink(&config, &dir.path().join("final.log"))?;
    if let Err(error) = env
        .wait_for_state(&data.expected, Duration::from_secs(90))
        .await
    {
        anyhow::bail!("{error:#}\nlog of the last run:\n{}", sink.text());
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
        "everything is committed after the clean stop"
    );
    assert!(env.dlq_is_empty()?, "no record was dead-lettered");
    env.check_state(&data.expected)
}
