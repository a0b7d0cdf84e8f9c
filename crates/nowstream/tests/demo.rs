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

/// What the DORA report must count, straight from the simulator: change requests with a
/// `closed_at` (the demo's window spans the whole history) and resolved incidents with a
/// creation time.
async fn dora_counts_from_the_simulator() -> anyhow::Result<(u64, u64)> {
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
    let set = |row: &std::collections::BTreeMap<String, String>, field: &str| {
        row.get(field).is_some_and(|value| !value.is_empty())
    };
    let closed = sim
        .snapshot("change_request")?
        .iter()
        .filter(|row| set(row, "closed_at"))
        .count();
    let restored = sim
        .snapshot("incident")?
        .iter()
        .filter(|row| set(row, "sys_created_on") && set(row, "resolved_at"))
        .count();
    Ok((closed as u64, restored as u64))
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

    // The three DORA figures are printed with their grades, as sei-local computed them.
    let (closed, restored) = dora_counts_from_the_simulator().await?;
    let dora = &summary.dora["overall"];
    assert_eq!(
        dora["deployment_frequency"]["count"].as_u64(),
        Some(closed),
        "{printed}"
    );
    assert_eq!(dora["mttr"]["count"].as_u64(), Some(restored), "{printed}");
    let dora_section: Vec<&str> = printed
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("DORA ("))
        .collect();
    let line = |label: &str| {
        dora_section
            .iter()
            .find(|line| line.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line in:\n{printed}"))
            .to_string()
    };
    let mttr_line = line("mean time to restore");
    assert!(
        mttr_line.contains(&format!(
            "{:.1} h median",
            dora["mttr"]["median_hours"].as_f64().unwrap_or(f64::NAN)
        )) && mttr_line.ends_with(dora["mttr"]["grade"].as_str().unwrap_or("?")),
        "{mttr_line}"
    );
    let df_line = line("deployment frequency");
    assert!(
        df_line.contains(&format!(
            "{:.2} per week, {closed} change requests closed",
            dora["deployment_frequency"]["per_week"]
                .as_f64()
                .unwrap_or(f64::NAN)
        )) && df_line.ends_with(
            dora["deployment_frequency"]["grade"]
                .as_str()
                .unwrap_or("?")
        ),
        "{df_line}"
    );
    let cfr = &dora["change_failure_rate"];
    let cfr_line = line("change failure rate");
    assert!(
        cfr_line.contains(&format!(
            "({} failure incidents / {closed} deployments)",
            cfr["failures"]
        )) && cfr_line.ends_with(cfr["grade"].as_str().unwrap_or("-")),
        "{cfr_line}"
    );
    let attributed = line("attributed by caused_by");
    if summary.dora["incidents_with_caused_by"].as_u64() == Some(0) {
        assert!(attributed.contains("no incident names"), "{attributed}");
    } else {
        assert!(
            attributed.contains(&format!("of {closed} changes")),
            "{attributed}"
        );
    }
    println!("{printed}");
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
    assert!(
        printed.contains("Kafka at the given bootstrap address"),
        "{printed}"
    );
    assert_eq!(summary.counts["incidents"], (100, 100), "{printed}");
    Ok(())
}
