//! Sink throughput into sei-local, through an Apache Kafka broker, for batch sizes 100, 500 and 2,000.
//!
//! `cargo bench -p nowstream-sink --bench sink` prints records per second for each size. It
//! measures, it asserts nothing; under `cargo test` it does nothing. Each size gets its own
//! broker, sei-local and pre-produced topics, so runs do not disturb each other.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use common::{API_KEY, Env, INTEGRATION, Produced, TENANT, entity_value, produce};
use nowstream_model::Entity;
use nowstream_testkit::{BrokerError, unique};

/// Distinct records per run.
const RECORDS: usize = 30_000;
const BATCH_SIZES: [usize; 3] = [100, 500, 2_000];
const POLL: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("sink bench: skipped outside `cargo bench`");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start a tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sink bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench() -> Result<()> {
    let records: Vec<Produced> = (0..RECORDS)
        .map(|index| {
            let entity = Entity::ALL[index % 4];
            let sys_id = format!("{index:032x}");
            let (value, _) = entity_value(entity, &sys_id, index, 1);
            Produced {
                entity,
                sys_id,
                value: Some(value),
            }
        })
        .collect();
    println!("sink → sei-local, {RECORDS} records over 4 entities, through Apache Kafka");
    for batch_size in BATCH_SIZES {
        let env = match Env::start().await {
            Ok(env) => env,
            Err(error) if error.downcast_ref::<BrokerError>().is_some() => {
                println!("Kafka is not available, nothing measured: {error}");
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        produce(&env.kafka(), &env.topics(), &records).await?;
        let config = env.config(
            API_KEY,
            &unique("bench"),
            &format!(
                "batch_max_records = {batch_size}\nmax_unacked_messages = {}",
                (batch_size * 16).max(20_000)
            ),
        );
        let started = Instant::now();
        let sink = common::InProcessSink::start(config);
        let (first, first_count) = wait_for(&env, 1, started).await?;
        let (done, _) = wait_for(&env, RECORDS, started).await?;
        sink.stop().await?;
        let steady = (RECORDS - first_count) as f64 / (done - first).as_secs_f64().max(1e-3);
        println!(
            "batch_max_records = {batch_size:>5}: {:>8.0} records/s steady ({:>8.0} records/s \
             including {:.2?} start-up), {} requests",
            steady,
            RECORDS as f64 / done.as_secs_f64(),
            first,
            env.sei.stats().requests
        );
    }
    Ok(())
}

/// Waits until sei-local holds at least `count` records; returns when (since `started`) and
/// how many it held then.
async fn wait_for(env: &Env, count: usize, started: Instant) -> Result<(Duration, usize)> {
    let deadline = started + Duration::from_secs(600);
    loop {
        let mut held = 0;
        for entity in Entity::ALL {
            held += env.sei.records(TENANT, INTEGRATION, entity)?.len();
        }
        if held >= count {
            return Ok((started.elapsed(), held));
        }
        if Instant::now() > deadline {
            bail!("only {held} of {count} records arrived within 10 minutes");
        }
        tokio::time::sleep(POLL).await;
    }
}
