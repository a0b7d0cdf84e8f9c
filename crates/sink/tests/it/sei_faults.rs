//! SEI failing, throttling and slow: the sink retries until everything is in, exactly once.

use crate::common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{Env, dataset, produce};
use nowstream_sei_local::{Fault, FaultRule};
use nowstream_testkit::unique;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_or_duplicated_while_sei_fails_a_fifth_of_requests() -> Result<()> {
    let env = Env::start().await?;
    let data = dataset(8_000);
    produce(&env.kafka(), &env.topics(), &data.records).await?;
    env.sei.set_faults(vec![
        FaultRule::every_nth(
            5,
            Fault::ServerError {
                status: 503,
                retry_after_secs: None,
            },
        )
        .on_path("/v1/ingest/"),
        FaultRule::every_nth(
            13,
            Fault::RateLimited {
                retry_after_secs: 1,
            },
        )
        .on_path("/v1/ingest/"),
        FaultRule::always(Fault::Latency { millis: 20 }).on_path("/v1/ingest/"),
    ]);

    let sink = common::InProcessSink::start(env.config(
        common::API_KEY,
        &unique("sink"),
        "batch_max_records = 200\nmax_in_flight_batches = 4",
    ));
    env.wait_for_state(&data.expected, Duration::from_secs(300))
        .await?;
    sink.stop().await?;

    let stats = env.sei.stats();
    assert!(stats.count(503) > 0, "503s were injected: {stats:?}");
    assert!(stats.count(429) > 0, "429s were injected: {stats:?}");
    assert!(
        stats.count(503) * 100 / stats.requests >= 15,
        "about a fifth of the requests failed: {stats:?}"
    );
    // The exact state, row for row: every key once, each with its newest version.
    env.check_state(&data.expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_sei_is_down_and_recovers_when_it_is_back() -> Result<()> {
    let env = Env::start().await?;
    let data = dataset(300);
    produce(&env.kafka(), &env.topics(), &data.records).await?;
    env.sei.set_faults(vec![
        FaultRule::always(Fault::ServerError {
            status: 503,
            retry_after_secs: None,
        })
        .on_path("/v1/ingest/"),
    ]);
    let sink = common::InProcessSink::start(env.config(
        common::API_KEY,
        &unique("sink"),
        "retry_max_backoff = \"200ms\"",
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let readiness = sink.health.readiness();
        if readiness
            .not_ready
            .iter()
            .any(|component| component.component == "sink.sei" && component.reason.contains("503"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "never not-ready: {readiness:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        env.sei
            .records(
                common::TENANT,
                common::INTEGRATION,
                nowstream_model::Entity::User
            )?
            .is_empty()
    );

    env.sei.set_faults(Vec::new());
    env.wait_for_state(&data.expected, Duration::from_secs(60))
        .await?;
    // The last answers reach the sink just after sei-local stored them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sink.health.readiness().ready {
        assert!(
            Instant::now() < deadline,
            "ready again once SEI took batches: {:?}",
            sink.health.readiness()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sink.stop().await
}
