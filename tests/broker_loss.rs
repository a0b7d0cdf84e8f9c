//! The whole product while a Kafka broker dies under it: a `kill -9` of one node of a three-node
//! cluster (replication factor 3, `min.insync.replicas` 2) in the middle of a backfill, and of a
//! lone broker mid-stream, each restarted later. Every stage process must ride it out — none
//! exits, none is restarted, none restarts its Kafka clients — and SEI must end equal to
//! ServiceNow minus the excluded fields.
//!
//! The time each stage took to move data again is printed (`--nocapture` shows it); it is
//! not asserted, since the machine's speed is not the product's behaviour.

use crate::stack;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nowstream_testkit::{KafkaBroker, KafkaCluster};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use stack::{STAGES, Stack, StackConfig};

/// Each stage's count of records it handed on (to Kafka, or to SEI for the sink): a stage
/// that moves data again after the broker came back has recovered.
const OUTPUT: [(&str, &str); 3] = [
    ("nowstream-fetcher", "nowstream_fetcher_records_total"),
    (
        "nowstream-normalizer",
        "nowstream_normalizer_records_out_total",
    ),
    ("nowstream-sink", "nowstream_sink_records_sent_total"),
];

/// Counters of restarts inside a stage: the fetcher restarting a failed work unit, the
/// normalizer dropping its Kafka clients and starting over from the committed offsets. Riding
/// out a broker loss means neither happens.
const RESTARTS: [(&str, &str); 2] = [
    ("nowstream-fetcher", "nowstream_fetcher_unit_restarts_total"),
    (
        "nowstream-normalizer",
        "nowstream_normalizer_restarts_total",
    ),
];

const INCIDENTS: usize = 20_000;
/// Fetcher output after which the broker dies: well into the backfill, far from its end
/// (20,000 incidents, 5,000 change requests, 1,000 users).
const KILL_AFTER_RECORDS: f64 = 6_000.0;
/// How long the broker stays dead: longer than the stages' session timeout (6 s), so their
/// groups notice, and long enough for librdkafka to give up connections and retry.
const DOWNTIME: Duration = Duration::from_secs(15);
const SETTLE: Duration = Duration::from_secs(900);
const RECOVERY: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_stage_rides_out_a_kill_9_of_a_partition_leader_in_a_three_node_cluster()
-> anyhow::Result<()> {
    let mut cluster = KafkaCluster::start()?;
    let mut stack = Stack::start(StackConfig {
        replication_factor: 3,
        ..StackConfig::new(cluster.bootstrap_servers(), INCIDENTS)
    })
    .await?;
    wait_for_fetcher_output(&mut stack, KILL_AFTER_RECORDS).await?;

    let victim_id = busiest_leader(&cluster.bootstrap_servers(), stack.topic_prefix())?;
    let victim = (0..KafkaCluster::SIZE)
        .find(|&index| cluster.node_id(index) == victim_id)
        .context("the leader is none of the cluster's nodes")?;
    let before_kill = outputs(&stack).await?;
    cluster.kill(victim);
    let killed_at = Instant::now();
    println!("killed node {victim_id} (leader of the most partitions of the stack's topics)");
    // The survivors take over its leaderships; the stages go on while it is dead.
    let failover = wait_for_progress(&mut stack, &before_kill, DOWNTIME, killed_at).await?;
    print_recovery("with the node dead", &failover);
    while killed_at.elapsed() < DOWNTIME {
        stack.assert_running()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    tokio::task::block_in_place(|| cluster.restart(victim))?;
    let back_at = Instant::now();
    println!(
        "node {victim_id} back after {:.1}s",
        (back_at - killed_at).as_secs_f64()
    );
    let recovery = recover(&mut stack, back_at).await?;
    print_recovery("after the node came back", &recovery);

    let left = stack.wait_until_equal(SETTLE).await?;
    assert!(
        left.is_empty(),
        "after losing node {victim_id}: {left:#?}; logs in {}",
        stack.log_dir().display()
    );
    assert_rode_it_out(&mut stack).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_stage_rides_out_a_kill_9_and_restart_of_a_lone_broker_mid_stream()
-> anyhow::Result<()> {
    let mut broker = KafkaBroker::start()?;
    let mut stack = Stack::start(StackConfig::new(broker.bootstrap_servers(), INCIDENTS)).await?;
    wait_for_fetcher_output(&mut stack, KILL_AFTER_RECORDS).await?;

    broker.kill();
    let killed_at = Instant::now();
    // Nothing can move without the broker; the stages must only wait.
    while killed_at.elapsed() < DOWNTIME {
        stack.assert_running()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::task::block_in_place(|| broker.restart())?;
    let back_at = Instant::now();
    println!(
        "broker back after {:.1}s on the same ports",
        (back_at - killed_at).as_secs_f64()
    );
    let recovery = recover(&mut stack, back_at).await?;
    print_recovery("after the broker came back", &recovery);

    let left = stack.wait_until_equal(SETTLE).await?;
    assert!(
        left.is_empty(),
        "after the broker restart: {left:#?}; logs in {}",
        stack.log_dir().display()
    );
    assert_rode_it_out(&mut stack).await
}

/// Waits until the fetcher published `records`, so the broker dies mid-backfill.
async fn wait_for_fetcher_output(stack: &mut Stack, records: f64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        stack.assert_running()?;
        // The listener may not be up yet right after the start.
        let published = match stack.metrics(STAGES[0]).await {
            Ok(metrics) => metrics.sum(OUTPUT[0].1),
            Err(_) => 0.0,
        };
        if published >= records {
            println!("killing the broker after {published} fetched records");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the fetcher published only {published} records; logs in {}",
                stack.log_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The broker id that leads the most partitions of the stack's topics.
fn busiest_leader(bootstrap: &str, prefix: &str) -> anyhow::Result<i32> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(30))?;
    let mut led = std::collections::BTreeMap::<i32, usize>::new();
    for topic in metadata.topics() {
        if topic.name().starts_with(prefix) {
            for partition in topic.partitions() {
                *led.entry(partition.leader()).or_default() += 1;
            }
        }
    }
    led.into_iter()
        .filter(|(leader, _)| *leader >= 0)
        .max_by_key(|(_, partitions)| *partitions)
        .map(|(leader, _)| leader)
        .context("no topic of the stack has a leader")
}

/// Each stage's output counter.
async fn outputs(stack: &Stack) -> anyhow::Result<Vec<f64>> {
    let mut values = Vec::new();
    for (stage, counter) in OUTPUT {
        values.push(stack.metrics(stage).await?.sum(counter));
    }
    Ok(values)
}

/// After the broker came back: changes ServiceNow, so every stage has work even when the
/// backfill was through before, and waits until each stage handed something on.
async fn recover(stack: &mut Stack, back_at: Instant) -> anyhow::Result<Vec<Option<Duration>>> {
    let before = outputs(stack).await?;
    change_servicenow(stack)?;
    wait_for_progress(stack, &before, RECOVERY, back_at).await
}

/// Until every stage's output passed `before` or `within` passed: for each stage, how long
/// after `since` its output first moved (`None`: not within the wait).
async fn wait_for_progress(
    stack: &mut Stack,
    before: &[f64],
    within: Duration,
    since: Instant,
) -> anyhow::Result<Vec<Option<Duration>>> {
    let deadline = Instant::now() + within;
    let mut moved = vec![None; OUTPUT.len()];
    while moved.iter().any(Option::is_none) && Instant::now() < deadline {
        stack.assert_running()?;
        for (index, (stage, counter)) in OUTPUT.iter().enumerate() {
            if moved[index].is_none() {
                // A scrape can fail while the stage is busy; the next round asks again.
                if let Ok(metrics) = stack.metrics(stage).await
                    && metrics.sum(counter) > before[index]
                {
                    moved[index] = Some(since.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(moved)
}

fn print_recovery(when: &str, moved: &[Option<Duration>]) {
    for ((stage, _), moved) in OUTPUT.iter().zip(moved) {
        match moved {
            Some(after) => println!("{stage}: output moved {:.1}s {when}", after.as_secs_f64()),
            None => println!("{stage}: no output {when} within the wait"),
        }
    }
}

/// New work for every stage: an incident created, one updated, one deleted.
fn change_servicenow(stack: &Stack) -> anyhow::Result<()> {
    let sim = &stack.sim;
    sim.insert(
        "incident",
        json!({"short_description": "after the broker loss", "priority": "1", "urgency": "1", "impact": "1"}),
    )?;
    let incidents = sim.snapshot("incident")?;
    let first = incidents[0].get("sys_id").cloned().context("sys_id")?;
    sim.update("incident", &first, json!({"priority": "2"}))?;
    let second = incidents[1].get("sys_id").cloned().context("sys_id")?;
    sim.delete("incident", &second)?;
    Ok(())
}

/// Every stage process still runs (the test never starts one again, so each is the first), and
/// no stage restarted a unit or its Kafka clients.
async fn assert_rode_it_out(stack: &mut Stack) -> anyhow::Result<()> {
    stack.assert_running()?;
    for (stage, counter) in RESTARTS {
        let restarts = stack.metrics(stage).await?.sum(counter);
        println!("{stage}: {counter} = {restarts}");
        assert_eq!(
            restarts,
            0.0,
            "{stage} restarted internally; logs in {}",
            stack.log_dir().display()
        );
    }
    Ok(())
}
