//! 50,000 entity records through a real broker into sei-local.

use crate::common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{Env, Final, dataset, produce};
use nowstream_testkit::unique;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_records_arrive_with_the_newest_version_of_each_and_an_exact_count()
-> Result<()> {
    let env = Env::start().await?;
    let data = dataset(50_000);
    assert_eq!(data.records.len(), 50_000);
    let deleted = data
        .expected
        .values()
        .filter(|state| **state == Final::Deleted)
        .count();
    assert!(deleted > 1_000, "the data set has tombstones");
    assert!(
        data.expected.len() < 30_000,
        "the data set has several versions of many keys"
    );

    let started = Instant::now();
    produce(&env.kafka(), &env.topics(), &data.records).await?;
    let produced = started.elapsed();

    let sink = common::InProcessSink::start(env.config(
        common::API_KEY,
        &unique("sink"),
        "batch_max_records = 1000",
    ));
    env.wait_for_state(&data.expected, Duration::from_secs(300))
        .await?;
    let delivered = started.elapsed() - produced;
    sink.stop().await?;
    eprintln!("produced 50000 records in {produced:?}; the sink delivered them in {delivered:?}");

    // Nothing was refused on the way, and nothing went to the DLQ.
    let stats = env.sei.stats();
    assert_eq!(
        stats.requests,
        stats.count(200),
        "every request succeeded: {stats:?}"
    );
    env.check_state(&data.expected)
}
