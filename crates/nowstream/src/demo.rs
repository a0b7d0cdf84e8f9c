//! `nowstream demo`: the whole pipeline on one machine, with no external service.
//!
//! ServiceNow is the simulator, Kafka is librdkafka's in-process mock cluster (or a broker the
//! user names with `--broker`), SEI is sei-local; the three stages run as tasks of this process with the same
//! `run` functions their binaries call. The demo excludes Summary, Description and Comments, as
//! a privacy-minded customer would, and ends with what arrived, the MTTR by priority and the
//! three DORA figures (MTTR, deployment frequency, change failure rate) with their grades.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::mocking::MockCluster;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use nowstream_model::{Entity, TopicNames};
use nowstream_runtime::{Config, Format, Health, LogFormat, TelemetryConfig, telemetry};
use nowstream_sei_local::{RunningSeiLocal, SeiLocal, SeiLocalConfig};
use nowstream_servicenow_sim::{GeneratorConfig, RunningSim, SimConfig, Simulator};

const INTEGRATION: &str = "4711";
const TENANT: &str = "demo";
/// What the demo's customer keeps out of SEI, in SEI's own field names.
pub const EXCLUDED: [&str; 3] = ["Summary", "Description", "Comments"];
const DEADLINE: Duration = Duration::from_secs(600);
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Partitions of every topic on the mock cluster: the most any stage's defaults require.
const MOCK_PARTITIONS: i32 = 12;

/// Which Kafka the demo runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// librdkafka's in-process mock cluster: nothing to install.
    Mock,
    /// A running Kafka, by its bootstrap address (`host:port[,host:port…]`). The demo's topics
    /// get a prefix of their own per run, so runs never see each other's records or offsets.
    Bootstrap(String),
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub broker: BrokerChoice,
    pub incidents: usize,
    pub change_requests: usize,
    pub users: usize,
    pub seed: u64,
    pub keep_running: bool,
    pub log_level: String,
}

/// What the demo saw at the end.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// Every record of the simulator arrived in sei-local.
    pub complete: bool,
    /// Per entity: (expected from the simulator, live in sei-local).
    pub counts: BTreeMap<&'static str, (usize, usize)>,
    /// Incidents in sei-local that still carry a value of an excluded field (must be 0).
    pub leaked_excluded_values: usize,
    /// sei-local's MTTR report grouped by priority.
    pub mttr: serde_json::Value,
    /// sei-local's DORA report over the simulator's whole history.
    pub dora: serde_json::Value,
}

/// The broker the demo runs on; kept alive until the demo ends.
enum Broker {
    Mock(MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
    External { bootstrap: String, prefix: String },
}

impl Broker {
    fn start(choice: &BrokerChoice) -> anyhow::Result<Self> {
        Ok(match choice {
            BrokerChoice::Mock => {
                let cluster = MockCluster::new(1).context("cannot start the mock Kafka cluster")?;
                // The mock cluster serves no CreateTopics: create every topic up front, with
                // at least as many partitions as any stage asks for by default.
                let names = TopicNames::new("")?;
                let mut topics: Vec<String> =
                    ["incident", "change_request", "sys_user", "sys_dictionary"]
                        .iter()
                        .map(|table| names.raw(table))
                        .collect::<Result<_, _>>()?;
                topics.extend(Entity::ALL.iter().map(|entity| names.entity(*entity)));
                topics.push(names.checkpoints());
                topics.push(names.dlq());
                topics.push(names.fetcher_dlq());
                topics.push(nowstream_fetcher::supervisor::COORDINATION_TOPIC.to_owned());
                for topic in topics {
                    cluster.create_topic(&topic, MOCK_PARTITIONS, 1)?;
                }
                Broker::Mock(cluster)
            }
            BrokerChoice::Bootstrap(bootstrap) => Broker::External {
                bootstrap: bootstrap.clone(),
                prefix: format!(
                    "nowstream-demo-{}-{}.",
                    chrono::Utc::now().format("%Y%m%d%H%M%S"),
                    std::process::id()
                ),
            },
        })
    }

    fn bootstrap_servers(&self) -> String {
        match self {
            Broker::Mock(cluster) => cluster.bootstrap_servers(),
            Broker::External { bootstrap, .. } => bootstrap.clone(),
        }
    }

    /// The topic prefix of this run: none on the mock cluster, which lives only as long as
    /// the demo.
    fn topic_prefix(&self) -> &str {
        match self {
            Broker::Mock(_) => "",
            Broker::External { prefix, .. } => prefix,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Broker::Mock(_) => "librdkafka mock cluster (in-process)",
            Broker::External { .. } => "Kafka at the given bootstrap address",
        }
    }
}

/// Runs the demo, writing progress and the summary to `out`.
pub async fn run(options: DemoOptions, mut out: impl Write) -> anyhow::Result<DemoSummary> {
    telemetry::init(&TelemetryConfig {
        log_format: LogFormat::Text,
        log_level: options.log_level.clone(),
    })?;
    let broker = Broker::start(&options.broker)?;
    let data = GeneratorConfig {
        seed: options.seed,
        incidents: options.incidents,
        change_requests: options.change_requests,
        users: options.users,
        ..GeneratorConfig::default()
    };
    let window = DoraWindow::of(&data);
    let sim = Simulator::start(SimConfig {
        data,
        ..SimConfig::default()
    })
    .await?;
    let api_key = format!("demo-{}", std::process::id());
    let sei = SeiLocal::start(SeiLocalConfig::for_tenant(TENANT, &api_key)).await?;
    let config = demo_config(
        &broker.bootstrap_servers(),
        broker.topic_prefix(),
        sim.base_url(),
        sei.base_url(),
        &api_key,
    )?;
    let expected = expected_counts(&sim)?;

    writeln!(out, "nowstream demo")?;
    writeln!(out, "  ServiceNow simulator  {}", sim.base_url())?;
    writeln!(
        out,
        "  Kafka                 {} at {}",
        broker.describe(),
        broker.bootstrap_servers()
    )?;
    writeln!(
        out,
        "  SEI (sei-local)       {}  tenant {TENANT}",
        sei.base_url()
    )?;
    writeln!(out, "  excluded fields       {}", EXCLUDED.join(", "))?;
    writeln!(out)?;

    let shutdown = CancellationToken::new();
    let health = Health::new();
    let stages = start_stages(&config, &health, &shutdown);
    let started = Instant::now();
    let complete = loop {
        let counts = arrived_counts(&sei, &expected)?;
        let line: Vec<String> = counts
            .iter()
            .map(|(name, (want, got))| format!("{name} {got}/{want}"))
            .collect();
        writeln!(
            out,
            "  [{:>4}s] {}",
            started.elapsed().as_secs(),
            line.join("  ")
        )?;
        if counts.values().all(|(want, got)| got >= want) {
            break true;
        }
        if let Some((stage, _)) = stages.iter().find(|(_, task)| task.is_finished()) {
            writeln!(out, "  the {stage} stopped early; its error follows")?;
            break false;
        }
        if started.elapsed() > DEADLINE {
            writeln!(out, "  gave up after {DEADLINE:?}")?;
            break false;
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    };

    let counts = arrived_counts(&sei, &expected)?;
    let leaked_excluded_values = leaked_excluded_values(&sei)?;
    let mttr = mttr_by_priority(&sei, &api_key).await?;
    let dora = dora_report(&sei, &api_key, &window).await?;
    print_summary(&mut out, &counts, leaked_excluded_values, &mttr)?;
    print_dora(&mut out, &dora)?;

    if options.keep_running {
        writeln!(out)?;
        writeln!(out, "sei-local keeps running (Ctrl-C stops the demo).")?;
        writeln!(
            out,
            "  DORA dashboard: {}/dashboard?tenant={TENANT}&integration_id={INTEGRATION}&from={}&to={}&failure_priority=1",
            sei.base_url(),
            window.from,
            window.to
        )?;
        writeln!(out, "  or the API:")?;
        writeln!(
            out,
            "  curl -H 'Authorization: Apikey {api_key}' -H 'X-Tenant: {TENANT}' \
             '{}/v1/servicenow/{INTEGRATION}/incidents?limit=5'",
            sei.base_url()
        )?;
        out.flush()?;
        tokio::signal::ctrl_c().await?;
    }
    shutdown.cancel();
    for (stage, task) in stages {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => writeln!(out, "  {stage}: {error:#}")?,
            Err(error) => writeln!(out, "  {stage} task failed: {error}")?,
        }
    }
    drop(sim);
    drop(broker);
    Ok(DemoSummary {
        complete: complete && leaked_excluded_values == 0,
        counts,
        leaked_excluded_values,
        mttr,
        dora,
    })
}

/// The DORA report's window: the simulator's whole history (a day more at the start, a second
/// more at the end: `to` is exclusive), so every generated change and incident counts, and the
/// rates are spread over the time the data really spans.
#[derive(Debug, Clone)]
struct DoraWindow {
    from: String,
    to: String,
}

impl DoraWindow {
    fn of(data: &GeneratorConfig) -> Self {
        let text = |time: chrono::DateTime<chrono::Utc>| {
            time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        Self {
            from: text(data.data_end - chrono::Duration::days(i64::from(data.history_days) + 1)),
            to: text(data.data_end + chrono::Duration::seconds(1)),
        }
    }
}

async fn dora_report(
    sei: &RunningSeiLocal,
    api_key: &str,
    window: &DoraWindow,
) -> anyhow::Result<serde_json::Value> {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/metrics/dora", sei.base_url()))
        .query(&[
            ("integration_id", INTEGRATION),
            ("from", window.from.as_str()),
            ("to", window.to.as_str()),
            // Critical incidents only: the simulator's priority 2 incidents are frequent
            // enough to outnumber its changes, which would say little about the changes.
            ("failure_priority", "1"),
        ])
        .header("Authorization", format!("Apikey {api_key}"))
        .header("X-Tenant", TENANT)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("sei-local's DORA endpoint answered {}", response.status());
    }
    Ok(response.json().await?)
}

/// The three DORA figures, each with its grade.
fn print_dora(out: &mut impl Write, dora: &serde_json::Value) -> anyhow::Result<()> {
    let overall = &dora["overall"];
    let (mttr, df, cfr) = (
        &overall["mttr"],
        &overall["deployment_frequency"],
        &overall["change_failure_rate"],
    );
    let grade = |value: &serde_json::Value| value.as_str().unwrap_or("-").to_owned();
    let count = |value: &serde_json::Value| value.as_u64().unwrap_or_default();
    let percent = |value: &serde_json::Value| {
        value
            .as_f64()
            .map_or_else(|| "-".to_owned(), |rate| format!("{:.1} %", rate * 100.0))
    };
    writeln!(
        out,
        "  DORA ({} to {}; failures: priority {}):",
        dora["from"].as_str().unwrap_or("?"),
        dora["to"].as_str().unwrap_or("?"),
        dora["definitions"]["failure_priorities"]
            .as_array()
            .map(|list| list
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
    )?;
    writeln!(
        out,
        "    mean time to restore   {} h median, {} h mean, {} incidents (from creation)  {}",
        hours(&mttr["median_hours"]),
        hours(&mttr["mean_hours"]),
        count(&mttr["count"]),
        grade(&mttr["grade"]),
    )?;
    writeln!(
        out,
        "    deployment frequency   {:.2} per week, {} change requests closed  {}",
        df["per_week"].as_f64().unwrap_or_default(),
        count(&df["count"]),
        grade(&df["grade"]),
    )?;
    writeln!(
        out,
        "    change failure rate    {} ({} failure incidents / {} deployments)  {}",
        percent(&cfr["rate"]),
        count(&cfr["failures"]),
        count(&cfr["deployments"]),
        grade(&cfr["grade"]),
    )?;
    let attributed = &cfr["attributed"];
    if count(&dora["incidents_with_caused_by"]) == 0 {
        writeln!(
            out,
            "      attributed by caused_by  - (no incident names the change that caused it)"
        )?;
    } else {
        writeln!(
            out,
            "      attributed by caused_by  {} ({} of {} changes caused an incident)  {}",
            percent(&attributed["rate"]),
            count(&attributed["failed_deployments"]),
            count(&attributed["deployments"]),
            grade(&attributed["grade"]),
        )?;
    }
    Ok(())
}

fn demo_config(
    bootstrap: &str,
    topic_prefix: &str,
    sim_url: &str,
    sei_url: &str,
    api_key: &str,
) -> anyhow::Result<Config> {
    let excluded: Vec<String> = EXCLUDED.iter().map(|name| format!("{name:?}")).collect();
    let text = format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
topic_prefix = "{topic_prefix}"

[sei]
url = "{sei_url}"
tenant = "{TENANT}"
api_key = "{api_key}"

[[integrations]]
id = "{INTEGRATION}"
url = "{sim_url}"
allow_http = true
exclude_fields = [{excluded}]
[integrations.auth]
type = "basic"
username = "nowstream.integration"
password = "integration-password"

[fetcher]
poll_interval = "2s"
overlap = "2s"
"#,
        excluded = excluded.join(", "),
    );
    Config::parse(&text, Format::Toml).context("the demo's configuration is invalid")
}

type StageTask = JoinHandle<anyhow::Result<()>>;

fn start_stages(
    config: &Config,
    health: &Health,
    shutdown: &CancellationToken,
) -> Vec<(&'static str, StageTask)> {
    let fetcher = tokio::spawn({
        let (config, health, shutdown) = (config.clone(), health.clone(), shutdown.child_token());
        async move { Ok(nowstream_fetcher::run(config, health, shutdown).await?) }
    });
    let normalizer = tokio::spawn({
        let (config, health, shutdown) = (config.clone(), health.clone(), shutdown.child_token());
        async move {
            nowstream_normalizer::run(config, health, shutdown).await?;
            Ok(())
        }
    });
    let sink = tokio::spawn({
        let (config, health, shutdown) = (config.clone(), health.clone(), shutdown.child_token());
        async move { Ok(nowstream_sink::run(config, health, shutdown).await?) }
    });
    vec![
        ("fetcher", fetcher),
        ("normalizer", normalizer),
        ("sink", sink),
    ]
}

/// What the simulator holds, per SEI entity.
fn expected_counts(sim: &RunningSim) -> anyhow::Result<BTreeMap<&'static str, usize>> {
    let count = |table: &str| sim.snapshot(table).map(|rows| rows.len());
    let custom_fields = sim
        .snapshot("sys_dictionary")?
        .iter()
        .filter(|row| {
            let table = row.get("name").map(String::as_str).unwrap_or_default();
            let element = row.get("element").map(String::as_str).unwrap_or_default();
            ["incident", "change_request", "task"].contains(&table) && element.starts_with("u_")
        })
        .count();
    Ok(BTreeMap::from([
        ("incidents", count("incident")?),
        ("change_requests", count("change_request")?),
        ("users", count("sys_user")?),
        ("field_definitions", custom_fields),
    ]))
}

fn arrived_counts(
    sei: &RunningSeiLocal,
    expected: &BTreeMap<&'static str, usize>,
) -> anyhow::Result<BTreeMap<&'static str, (usize, usize)>> {
    let mut counts = BTreeMap::new();
    for entity in Entity::ALL {
        let name = entity.api_path();
        let live = sei
            .records(TENANT, INTEGRATION, entity)?
            .iter()
            .filter(|record| matches!(record.state, nowstream_sei_local::RecordState::Live(_)))
            .count();
        let want = expected.get(name).copied().unwrap_or_default();
        counts.insert(name, (want, live));
    }
    Ok(counts)
}

/// Incidents whose summary, description or comments reached SEI (must be none).
fn leaked_excluded_values(sei: &RunningSeiLocal) -> anyhow::Result<usize> {
    let fields = ["short_description", "description", "comments", "work_notes"];
    Ok(sei
        .records(TENANT, INTEGRATION, Entity::Incident)?
        .iter()
        .filter(|record| match &record.state {
            nowstream_sei_local::RecordState::Live(value) => fields
                .iter()
                .any(|field| value.get(field).is_some_and(|v| !v.is_null())),
            _ => false,
        })
        .count())
}

async fn mttr_by_priority(
    sei: &RunningSeiLocal,
    api_key: &str,
) -> anyhow::Result<serde_json::Value> {
    let to = (chrono::Utc::now() + chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let response = reqwest::Client::new()
        .get(format!("{}/v1/metrics/mttr", sei.base_url()))
        .query(&[
            ("integration_id", INTEGRATION),
            ("from", "1970-01-01T00:00:00Z"),
            ("to", to.as_str()),
            ("group_by", "priority"),
        ])
        .header("Authorization", format!("Apikey {api_key}"))
        .header("X-Tenant", TENANT)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("sei-local's MTTR endpoint answered {}", response.status());
    }
    Ok(response.json().await?)
}

fn print_summary(
    out: &mut impl Write,
    counts: &BTreeMap<&'static str, (usize, usize)>,
    leaked: usize,
    mttr: &serde_json::Value,
) -> anyhow::Result<()> {
    writeln!(out)?;
    writeln!(out, "Summary")?;
    writeln!(out, "  records in SEI (simulator → sei-local):")?;
    for (name, (want, got)) in counts {
        let mark = if got >= want { "ok" } else { "MISSING" };
        writeln!(out, "    {name:<18} {got:>7} of {want:<7} {mark}")?;
    }
    writeln!(
        out,
        "  fields excluded: {} — values found in SEI: {leaked}",
        EXCLUDED.join(", ")
    )?;
    writeln!(
        out,
        "  mean time to restore by priority (resolved incidents):"
    )?;
    writeln!(
        out,
        "    {:<10} {:>6} {:>10} {:>12}  DORA grade",
        "priority", "count", "mean (h)", "median (h)"
    )?;
    let row = |label: &str, stats: &serde_json::Value| {
        format!(
            "    {:<10} {:>6} {:>10} {:>12}  {}",
            label,
            stats["count"].as_u64().unwrap_or_default(),
            hours(&stats["mean_hours"]),
            hours(&stats["median_hours"]),
            stats["grade"].as_str().unwrap_or("-"),
        )
    };
    for group in mttr["groups"].as_array().into_iter().flatten() {
        writeln!(out, "{}", row(group["key"].as_str().unwrap_or("?"), group))?;
    }
    writeln!(out, "{}", row("all", &mttr["overall"]))?;
    Ok(())
}

fn hours(value: &serde_json::Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "-".to_owned(), |hours| format!("{hours:.1}"))
}
