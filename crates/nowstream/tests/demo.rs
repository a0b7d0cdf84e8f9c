//! `nowstream demo` end to end on its embedded default (the in-process mock cluster).

use chrono::NaiveDateTime;
use nowstream::demo::{BrokerChoice, DemoOptions, run};
use nowstream_servicenow_sim::{GeneratorConfig, SimConfig, Simulator};

const INCIDENTS: usize = 400;
const CHANGE_REQUESTS: usize = 80;
const USERS: usize = 40;
const SEED: u64 = 7;

/// MTTR straight from the simulator's data: the same seed generates the same records.
async fn mttr_from_the_simulator() -> anyhow::Result<(usize, f64, f64)> {
    let sim = Simulator::start(SimConfig {
        data: GeneratorConfig {
            seed: SEED,
            incidents: INCIDENTS,
            change_requests: CHANGE_REQUESTS,
            users: USERS,
            ..GeneratorConfig::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let time = |value: &str| NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S");
    let mut hours: Vec<f64> = Vec::new();
    for incident in sim.snapshot("incident")? {
        let (Some(opened), Some(resolved)) =
            (incident.get("opened_at"), incident.get("resolved_at"))
        else {
            continue;
        };
        if opened.is_empty() || resolved.is_empty() {
            continue;
        }
        let restore = time(resolved)? - time(opened)?;
        hours.push(restore.num_milliseconds() as f64 / 3_600_000.0);
    }
    hours.sort_by(f64::total_cmp);
    let count = hours.len();
    let mean = hours.iter().sum::<f64>() / count as f64;
    let median = if count % 2 == 1 {
        hours[count / 2]
    } else {
        (hours[count / 2 - 1] + hours[count / 2]) / 2.0
    };
    Ok((count, mean, median))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_delivers_every_record_without_excluded_values_and_reports_the_true_mttr()
-> anyhow::Result<()> {
    let mut output = Vec::new();
    let summary = run(
        DemoOptions {
            broker: BrokerChoice::Mock,
            incidents: INCIDENTS,
            change_requests: CHANGE_REQUESTS,
            users: USERS,
            seed: SEED,
            keep_running: false,
            log_level: "warn".into(),
        },
        &mut output,
    )
    .await?;
    let printed = String::from_utf8(output)?;
    assert!(summary.complete, "{printed}");
    assert_eq!(
        summary.counts["incidents"],
        (INCIDENTS, INCIDENTS),
        "{printed}"
    );
    assert_eq!(
        summary.counts["change_requests"],
        (CHANGE_REQUESTS, CHANGE_REQUESTS)
    );
    assert!(summary.counts["users"].1 >= USERS);
    assert!(
        summary.counts["field_definitions"].1 > 0,
        "custom field definitions arrive"
    );
    assert_eq!(summary.leaked_excluded_values, 0);
    assert!(printed.contains("DORA grade"), "{printed}");

    let (count, mean, median) = mttr_from_the_simulator().await?;
    let overall = &summary.mttr["overall"];
    assert_eq!(overall["count"].as_u64(), Some(count as u64), "{printed}");
    let close = |got: &serde_json::Value, want: f64| {
        got.as_f64().is_some_and(|got| (got - want).abs() < 1e-6)
    };
    assert!(
        close(&overall["mean_hours"], mean),
        "mean {} vs {mean}",
        overall["mean_hours"]
    );
    assert!(
        close(&overall["median_hours"], median),
        "median {} vs {median}",
        overall["median_hours"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_also_runs_on_an_apache_kafka_broker_given_by_its_bootstrap_address()
-> anyhow::Result<()> {
    let broker = nowstream_testkit::KafkaBroker::shared()?;
    let mut output = Vec::new();
    let summary = run(
        DemoOptions {
            broker: BrokerChoice::Bootstrap(broker.bootstrap_servers()),
            incidents: 100,
            change_requests: 20,
            users: 10,
            seed: 3,
            keep_running: false,
            log_level: "warn".into(),
        },
        &mut output,
    )
    .await?;
    let printed = String::from_utf8(output)?;
    assert!(summary.complete, "{printed}");
    assert!(printed.contains("Kafka at the given bootstrap address"), "{printed}");
    assert_eq!(summary.counts["incidents"], (100, 100), "{printed}");
    Ok(())
}
