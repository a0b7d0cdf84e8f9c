//! Consumer-group failover of the sink on Apache Kafka, with the binary as processes: a
//! survivor takes over a killed replica's entity partitions, and a lone sink killed and
//! restarted at once gets its partitions back (with dynamic and with static membership, whose
//! recovery times are printed side by side: see docs/architecture.md, "Failover").

use crate::common;
use nowstream_testkit::StageProcess;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{
    API_KEY, Env, Expected, Final, INTEGRATION, PARTITIONS, Produced, TENANT, entity_value,
    produce, spawn_sink,
};
use nowstream_model::Entity;
use nowstream_testkit::unique;
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const RECORDS_SENT: &str = "nowstream_sink_records_sent_total";
/// Apache Kafka's smallest allowed `session.timeout.ms` (`group.min.session.timeout.ms`).
const SESSION_TIMEOUT_MS: u32 = 6_000;
/// Keys the fed records cycle through, so most keys get several versions.
const KEYS: usize = 2_000;
const FAST_RESTARTS: usize = 10;

/// A stream of entity records over [`KEYS`] keys, each key's versions in increasing order,
/// and the state SEI must end in for everything produced so far.
#[derive(Default)]
struct Stream {
    next: usize,
    expected: Expected,
}

impl Stream {
    fn take(&mut self, count: usize) -> Vec<Produced> {
        (self.next..self.next + count)
            .map(|n| {
                let index = n % KEYS;
                let entity = Entity::ALL[index % Entity::ALL.len()];
                let sys_id = format!("{index:032x}");
                let (value, version) = entity_value(entity, &sys_id, index, n / KEYS + 1);
                self.expected
                    .insert((entity, sys_id.clone()), Final::Live(version));
                self.next += 1;
                Produced {
                    entity,
                    sys_id,
                    value: Some(value),
                }
            })
            .collect()
    }
}

/// The sink's config: a short session (Kafka's minimum) and frequent commits, plus `sink`
/// lines.
fn write_config(env: &Env, dir: &Path, name: &str, group: &str, sink: &str) -> Result<PathBuf> {
    let text = env
        .config_toml(API_KEY, group, &format!("batch_max_records = 200\n{sink}"))
        .replace(
            "[sei]",
            &format!(
                "[kafka.properties]\n\"auto.commit.interval.ms\" = \"300\"\n\
                 \"session.timeout.ms\" = \"{SESSION_TIMEOUT_MS}\"\n\
                 \"heartbeat.interval.ms\" = \"1000\"\n\n[sei]"
            ),
        );
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A counter of `/metrics` at `addr`, summed over its labels; 0 when it does not answer.
fn counter(addr: SocketAddr, name: &str) -> f64 {
    let scrape = || -> Option<f64> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).ok()?;
        Some(
            body.lines()
                .filter(|line| line.starts_with(name) && !line.starts_with('#'))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    };
    scrape().unwrap_or(0.0)
}

/// Waits until `sink` has delivered records to SEI; returns its probe address.
async fn wait_for_output(sink: &StageProcess, timeout: Duration) -> Result<SocketAddr> {
    let deadline = Instant::now() + timeout;
    let addr = sink.probe_addr(timeout).await?;
    while counter(addr, RECORDS_SENT) == 0.0 {
        if Instant::now() > deadline {
            bail!(
                "the sink delivered nothing within {timeout:?}; log:\n{}",
                sink.text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(addr)
}

/// One marker record on every entity partition (written to the partition explicitly), so that
/// all of them reaching SEI proves every partition is consumed again.
async fn write_markers(env: &Env, tag: usize, expected: &mut Expected) -> Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", env.broker.bootstrap_servers())
        .create()?;
    for (e, entity) in Entity::ALL.into_iter().enumerate() {
        for partition in 0..PARTITIONS {
            let index = 1_000_000 + tag * 100 + e * 10 + partition as usize;
            let sys_id = format!("{index:032x}");
            let (value, version) = entity_value(entity, &sys_id, index, 1);
            let key = format!("{INTEGRATION}:{sys_id}");
            producer
                .send(
                    FutureRecord::to(&env.topics().entity(entity))
                        .partition(partition)
                        .key(&key)
                        .payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(error, _)| error)?;
            expected.insert((entity, sys_id), Final::Live(version));
        }
    }
    Ok(())
}

/// Whether sei-local holds every (entity, sys_id) of `expected`, whatever its version.
fn holds_all(env: &Env, expected: &Expected) -> bool {
    Entity::ALL.into_iter().all(|entity| {
        let held: BTreeSet<String> = env
            .sei
            .records(TENANT, INTEGRATION, entity)
            .unwrap_or_default()
            .into_iter()
            .map(|record| record.sys_id)
            .collect();
        expected
            .keys()
            .filter(|(of, _)| *of == entity)
            .all(|(_, sys_id)| held.contains(sys_id))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_one_of_two_sinks_is_killed_the_survivor_takes_over_its_partitions_and_nothing_is_lost()
-> Result<()> {
    let env = Env::start().await?;
    let dir = tempfile::tempdir()?;
    let group = unique("sink");
    let config = write_config(&env, dir.path(), "sink.toml", &group, "")?;
    let mut stream = Stream::default();

    // Records keep coming until both replicas have delivered some, so both hold partitions.
    let mut a = spawn_sink(&config, &dir.path().join("a.log"))?;
    let a_addr = a.probe_addr(Duration::from_secs(60)).await?;
    let mut b: Option<(StageProcess, SocketAddr)> = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let b_sent = b
            .as_ref()
            .map_or(0.0, |(_, addr)| counter(*addr, RECORDS_SENT));
        if counter(a_addr, RECORDS_SENT) > 0.0 && b_sent > 0.0 {
            break;
        }
        if b.is_none() && counter(a_addr, RECORDS_SENT) > 0.0 {
            let sink = spawn_sink(&config, &dir.path().join("b.log"))?;
            let addr = sink.probe_addr(Duration::from_secs(60)).await?;
            b = Some((sink, addr));
        }
        if Instant::now() > deadline {
            bail!(
                "both sinks must get partitions\nA:\n{}\nB:\n{}",
                a.text(),
                b.as_ref().map(|(b, _)| b.text()).unwrap_or_default()
            );
        }
        produce(&env.kafka(), &env.topics(), &stream.take(300)).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (b, _) = b.expect("B started");
    env.wait_for_state(&stream.expected, Duration::from_secs(120))
        .await?;

    a.kill();
    let killed = Instant::now();
    // Some of these land on A's partitions: only B can deliver them now.
    let mut markers = Expected::new();
    write_markers(&env, 1, &mut markers).await?;
    let marker_deadline = Instant::now() + Duration::from_secs(120);
    while !holds_all(&env, &markers) {
        if Instant::now() > marker_deadline {
            bail!(
                "records on the killed sink's partitions never reached SEI; B:\n{}",
                b.text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "recovery: every entity partition delivered again {:?} after the kill \
         (session.timeout.ms {SESSION_TIMEOUT_MS})",
        killed.elapsed()
    );
    produce(&env.kafka(), &env.topics(), &stream.take(3_000)).await?;
    let mut expected = stream.expected.clone();
    expected.extend(markers);
    if let Err(error) = env
        .wait_for_state(&expected, Duration::from_secs(120))
        .await
    {
        bail!("{error:#}\nB:\n{}", b.text());
    }
    assert!(env.dlq_is_empty()?, "no record was dead-lettered");
    Ok(())
}

/// How the restarted sink identifies itself to the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    /// A new member id per start: the group waits for the killed member's session to expire.
    Dynamic,
    /// `group_instance_id`: the restarted member takes the killed one's place.
    Static,
}

/// A lone sink, fed continuously, is killed (SIGKILL) and restarted within two seconds
/// [`FAST_RESTARTS`] times; each restarted process must deliver again (its partitions came
/// back), and in the end SEI holds the newest version of every record: nothing stale.
async fn fast_restarts(membership: Membership) -> Result<()> {
    let env = Env::start().await?;
    let dir = tempfile::tempdir()?;
    let group = unique("sink");
    let sink_lines = match membership {
        Membership::Dynamic => String::new(),
        Membership::Static => format!("group_instance_id = \"{}\"", unique("sink-0")),
    };
    let config = write_config(&env, dir.path(), "sink.toml", &group, &sink_lines)?;

    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (kafka, topics, stop) = (env.kafka(), env.topics(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut stream = Stream::default();
            while !stop.load(Ordering::Relaxed) {
                produce(&kafka, &topics, &stream.take(150)).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(stream.expected)
        })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::rng().random());
    let mut sink = spawn_sink(&config, &dir.path().join("run-0.log"))?;
    wait_for_output(&sink, Duration::from_secs(90)).await?;
    let mut recoveries = Vec::new();
    for cycle in 1..=FAST_RESTARTS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
        sink.kill();
        let killed = Instant::now();
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1_500))).await;
        sink = spawn_sink(&config, &dir.path().join(format!("run-{cycle}.log")))?;
        wait_for_output(&sink, Duration::from_secs(90)).await?;
        let took = killed.elapsed();
        println!("{membership:?} cycle {cycle}: first delivery {took:?} after the kill");
        recoveries.push(took);
    }
    stop.store(true, Ordering::Relaxed);
    let expected = feeder.await??;
    if let Err(error) = env
        .wait_for_state(&expected, Duration::from_secs(120))
        .await
    {
        bail!("{error:#}\nlog of the last run:\n{}", sink.text());
    }
    recoveries.sort();
    let mean = recoveries.iter().sum::<Duration>() / recoveries.len() as u32;
    println!(
        "{membership:?} membership, session.timeout.ms {SESSION_TIMEOUT_MS}: kill to first \
         delivery after a fast restart: mean {mean:?}, median {:?}, max {:?} over {} restarts; \
         {} keys, none stale",
        recoveries[recoveries.len() / 2],
        recoveries[recoveries.len() - 1],
        recoveries.len(),
        expected.len()
    );
    sink.terminate();
    let status = sink
        .wait_exit(Duration::from_secs(60))
        .await
        .with_context(|| format!("the sink did not exit within 60s; log:\n{}", sink.text()))?;
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    assert!(env.dlq_is_empty()?, "no record was dead-lettered");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_sink_killed_and_restarted_at_once_ten_times_gets_its_partitions_back_each_time()
-> Result<()> {
    fast_restarts(Membership::Dynamic).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_sink_killed_and_restarted_at_once_ten_times_gets_its_partitions_back_each_time()
-> Result<()> {
    fast_restarts(Membership::Static).await
}
