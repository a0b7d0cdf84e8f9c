//! The whole product as its users run it: the three stage binaries as real processes over a
//! tansu broker, the ServiceNow simulator as the source and sei-local as SEI. At the end SEI
//! must equal ServiceNow minus the excluded fields — also after a `kill -9` of every stage.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::NaiveDateTime;
use nowstream_model::Entity;
use nowstream_sei_local::{RecordState, RunningSeiLocal, SeiLocal, SeiLocalConfig};
use nowstream_servicenow_sim::{GeneratorConfig, RunningSim, SimConfig, Simulator};
use nowstream_testkit::{KafkaBroker, unique};
use serde_json::{Value, json};

const STAGES: [&str; 3] = [
    "nowstream-fetcher",
    "nowstream-normalizer",
    "nowstream-sink",
];
const TENANT: &str = "acme";
const API_KEY: &str = "e2e-api-key";
const EXCLUDED: [&str; 4] = ["short_description", "description", "comments", "work_notes"];

/// Builds the stage binaries (a no-op when they are current) and returns their directory.
fn stage_binaries() -> anyhow::Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "nowstream-fetcher",
            "-p",
            "nowstream-normalizer",
            "-p",
            "nowstream-sink",
        ])
        .status()?;
    if !status.success() {
        bail!("building the stage binaries failed");
    }
    let test_binary = std::env::current_exe()?;
    // target/<profile>/deps/e2e-… → target/<profile>
    let dir = test_binary
        .parent()
        .and_then(Path::parent)
        .context("test binary location")?
        .to_path_buf();
    for stage in STAGES {
        anyhow::ensure!(
            dir.join(stage).is_file(),
            "{stage} not found in {}",
            dir.display()
        );
    }
    Ok(dir)
}

struct Stack {
    broker: &'static KafkaBroker,
    sim: RunningSim,
    sei: RunningSeiLocal,
    dir: tempfile::TempDir,
    bin: PathBuf,
    config: PathBuf,
    processes: BTreeMap<&'static str, Child>,
    starts: usize,
}

impl Stack {
    async fn start(incidents: usize, change_requests: usize, users: usize) -> anyhow::Result<Self> {
        let bin = stage_binaries()?;
        let broker = KafkaBroker::shared()?;
        let sim = Simulator::start(SimConfig {
            data: GeneratorConfig {
                incidents,
                change_requests,
                users,
                same_second: incidents / 10,
                ..GeneratorConfig::default()
            },
            ..SimConfig::default()
        })
        .await?;
        let sei = SeiLocal::start(SeiLocalConfig::for_tenant(TENANT, API_KEY)).await?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("nowstream.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[kafka]
bootstrap_servers = "{servers}"
topic_prefix = "{prefix}."
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[sei]
url = "{sei}"
tenant = "{TENANT}"
api_key = "{API_KEY}"

[[integrations]]
id = "4711"
url = "{sim}"
allow_http = true
exclude_fields = ["Summary", "Description", "Comments"]
[integrations.auth]
type = "basic"
username = "nowstream.integration"
password = "integration-password"

[telemetry]
log_format = "json"

[http]
listen = "127.0.0.1:0"

[fetcher]
poll_interval = "1s"
overlap = "2s"

[sink]
linger = "200ms"
"#,
                servers = broker.bootstrap_servers(),
                prefix = unique("e2e"),
                sei = sei.base_url(),
                sim = sim.base_url(),
            ),
        )?;
        let mut stack = Self {
            broker,
            sim,
            sei,
            dir,
            bin,
            config,
            processes: BTreeMap::new(),
            starts: 0,
        };
        for stage in STAGES {
            stack.spawn(stage)?;
        }
        Ok(stack)
    }

    fn spawn(&mut self, stage: &'static str) -> anyhow::Result<()> {
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.path().join(format!("{stage}-{}.log", self.starts)))?;
        let child = Command::new(self.bin.join(stage))
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {stage}"))?;
        self.processes.insert(stage, child);
        Ok(())
    }

    /// SIGKILL, then start again once the group noticed the death.
    ///
    /// The pause works around a tansu 0.6 bug: when a dead member's session expires after a
    /// new member joined, tansu keeps the group generation and can leave the new member with an
    /// empty assignment. Real Kafka rebalances either way.
    async fn kill_and_restart(&mut self, stage: &'static str) -> anyhow::Result<()> {
        if let Some(mut child) = self.processes.remove(stage) {
            child.kill()?;
            child.wait()?;
        }
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        self.spawn(stage)
    }

    fn assert_running(&mut self) -> anyhow::Result<()> {
        for (stage, child) in &mut self.processes {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{stage} exited ({status}); logs in {}",
                    self.dir.path().display()
                );
            }
        }
        Ok(())
    }

    fn live(&self, entity: Entity) -> anyhow::Result<HashMap<String, Value>> {
        Ok(self
            .sei
            .records(TENANT, "4711", entity)?
            .into_iter()
            .filter_map(|record| match record.state {
                RecordState::Live(value) => Some((record.sys_id, value)),
                _ => None,
            })
            .collect())
    }

    /// Waits until SEI equals the simulator minus excluded fields; returns the differences
    /// left when `timeout` passed (empty when equal).
    async fn wait_until_equal(&mut self, timeout: Duration) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running()?;
            let differences = self.differences()?;
            if differences.is_empty() || Instant::now() > deadline {
                return Ok(differences);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn differences(&self) -> anyhow::Result<Vec<String>> {
        let mut differences = Vec::new();
        for (table, entity) in [
            ("incident", Entity::Incident),
            ("change_request", Entity::ChangeRequest),
            ("sys_user", Entity::User),
        ] {
            let expected = self.sim.snapshot(table)?;
            let live = self.live(entity)?;
            if live.len() != expected.len() {
                differences.push(format!(
                    "{table}: {} in SEI, {} in ServiceNow",
                    live.len(),
                    expected.len()
                ));
            }
            for record in expected {
                let sys_id = record.get("sys_id").cloned().unwrap_or_default();
                let Some(got) = live.get(&sys_id) else {
                    differences.push(format!("{table} {sys_id} missing"));
                    continue;
                };
                let want_updated = record.get("sys_updated_on").map(|t| time_rfc3339(t));
                if got["sys_updated_on"].as_str().map(str::to_owned) != want_updated {
                    differences.push(format!(
                        "{table} {sys_id}: stale version {}",
                        got["sys_updated_on"]
                    ));
                }
                if table == "incident" {
                    for field in EXCLUDED {
                        if !got[field].is_null() {
                            differences
                                .push(format!("incident {sys_id}: excluded {field} reached SEI"));
                        }
                    }
                    if got["priority"]["value"].as_str()
                        != record.get("priority").map(String::as_str)
                    {
                        differences.push(format!("incident {sys_id}: priority differs"));
                    }
                }
            }
        }
        differences.truncate(20);
        Ok(differences)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in self.processes.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn time_rfc3339(servicenow: &str) -> String {
    NaiveDateTime::parse_from_str(servicenow, "%Y-%m-%d %H:%M:%S")
        .map(|time| {
            time.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_default()
}

/// Mean and median hours to restore over the simulator's resolved incidents.
fn mttr_of_the_simulator(sim: &RunningSim) -> anyhow::Result<(u64, f64, f64)> {
    let time = |value: &str| NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S");
    let mut hours = Vec::new();
    for incident in sim.snapshot("incident")? {
        match (incident.get("opened_at"), incident.get("resolved_at")) {
            (Some(opened), Some(resolved)) if !opened.is_empty() && !resolved.is_empty() => {
                hours.push(
                    (time(resolved)? - time(opened)?).num_milliseconds() as f64 / 3_600_000.0,
                );
            }
            _ => {}
        }
    }
    hours.sort_by(f64::total_cmp);
    let count = hours.len();
    anyhow::ensure!(count > 0, "the simulator generated no resolved incident");
    let mean = hours.iter().sum::<f64>() / count as f64;
    let median = if count % 2 == 1 {
        hours[count / 2]
    } else {
        (hours[count / 2 - 1] + hours[count / 2]) / 2.0
    };
    Ok((count as u64, mean, median))
}

async fn mttr_of_sei(sei: &RunningSeiLocal) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/metrics/mttr", sei.base_url()))
        .query(&[
            ("integration_id", "4711"),
            ("from", "1970-01-01T00:00:00Z"),
            ("to", "2100-01-01T00:00:00Z"),
        ])
        .header("Authorization", format!("Apikey {API_KEY}"))
        .header("X-Tenant", TENANT)
        .send()
        .await?
        .error_for_status()?;
    Ok(response.json().await?)
}

fn assert_mttr_matches(sim: &RunningSim, report: &Value) -> anyhow::Result<()> {
    let (count, mean, median) = mttr_of_the_simulator(sim)?;
    let overall = &report["overall"];
    assert_eq!(overall["count"].as_u64(), Some(count), "{report}");
    let close =
        |value: &Value, want: f64| value.as_f64().is_some_and(|got| (got - want).abs() < 1e-6);
    assert!(
        close(&overall["mean_hours"], mean),
        "mean: SEI {} vs ServiceNow {mean}",
        overall["mean_hours"]
    );
    assert!(
        close(&overall["median_hours"], median),
        "median: SEI {} vs ServiceNow {median}",
        overall["median_hours"]
    );
    Ok(())
}

/// Live changes in ServiceNow after the backfill: a create, an update, a delete.
fn change_servicenow(sim: &RunningSim) -> anyhow::Result<()> {
    sim.insert("incident", json!({"short_description": "secret summary", "priority": "1", "urgency": "1", "impact": "1"}))?;
    let incidents = sim.snapshot("incident")?;
    let first = incidents[0].get("sys_id").cloned().context("sys_id")?;
    sim.update(
        "incident",
        &first,
        json!({"priority": "2", "comments": "secret comment"}),
    )?;
    let second = incidents[1].get("sys_id").cloned().context("sys_id")?;
    sim.delete("incident", &second)?;
    let change = sim.snapshot("change_request")?[0]
        .get("sys_id")
        .cloned()
        .context("sys_id")?;
    sim.delete("change_request", &change)?;
    Ok(())
}

const SETTLE: Duration = Duration::from_secs(900);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sei_equals_servicenow_minus_excluded_fields_after_backfill_and_live_changes()
-> anyhow::Result<()> {
    let mut stack = Stack::start(20_000, 5_000, 1_000).await?;
    let left = stack.wait_until_equal(SETTLE).await?;
    assert!(left.is_empty(), "after the backfill: {left:#?}");
    assert_mttr_matches(&stack.sim, &mttr_of_sei(&stack.sei).await?)?;

    change_servicenow(&stack.sim)?;
    let left = stack.wait_until_equal(Duration::from_secs(120)).await?;
    assert!(left.is_empty(), "after live changes: {left:#?}");
    assert_mttr_matches(&stack.sim, &mttr_of_sei(&stack.sei).await?)?;
    let _ = &stack.broker;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sei_still_equals_servicenow_after_a_kill_9_of_every_stage() -> anyhow::Result<()> {
    let mut stack = Stack::start(20_000, 5_000, 1_000).await?;
    // Kill each stage once while data flows: the fetcher mid-backfill, then the normalizer and
    // the sink while they still have input.
    for stage in STAGES {
        let deadline = Instant::now() + Duration::from_secs(300);
        let arrived_before = stack.live(Entity::Incident)?.len();
        while stack.live(Entity::Incident)?.len() < arrived_before + 2_000
            && Instant::now() < deadline
        {
            stack.assert_running()?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        stack.kill_and_restart(stage).await?;
    }
    change_servicenow(&stack.sim)?;
    let left = stack.wait_until_equal(SETTLE).await?;
    assert!(left.is_empty(), "after kills: {left:#?}");
    assert_mttr_matches(&stack.sim, &mttr_of_sei(&stack.sei).await?)?;
    Ok(())
}
