//! The whole product as its users run it, shared by the end-to-end tests: the three stage
//! binaries as real processes over an Apache Kafka broker (or cluster), the ServiceNow simulator
//! as the source and sei-local as SEI. [`Stack::differences`] compares SEI with ServiceNow minus
//! the excluded fields.
//!
//! Each test binary uses a different part of it, so what one of them leaves unused is allowed.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::NaiveDateTime;
use nowstream_model::Entity;
use nowstream_sei_local::{RecordState, RunningSeiLocal, SeiLocal, SeiLocalConfig};
use nowstream_servicenow_sim::{GeneratorConfig, RunningSim, SimConfig, Simulator};
use nowstream_testkit::{ConfigFile, Integration, StageProcess, basic_auth, unique};
use serde_json::Value;

pub const STAGES: [&str; 3] = [
    "nowstream-fetcher",
    "nowstream-normalizer",
    "nowstream-sink",
];
pub const TENANT: &str = "acme";
pub const API_KEY: &str = "e2e-api-key";
/// The shortest `session.timeout.ms` Apache Kafka accepts by default
/// (`group.min.session.timeout.ms`), so a killed stage's partitions move soon.
const SESSION_TIMEOUT_MS: u32 = 6_000;
const HEARTBEAT_INTERVAL_MS: u32 = SESSION_TIMEOUT_MS / 4;
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

/// What to run the stack on and with how much data.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub bootstrap_servers: String,
    /// `replication_factor` of every topic the stages create (fetcher, normalizer, sink).
    pub replication_factor: i32,
    pub incidents: usize,
    pub change_requests: usize,
    pub users: usize,
}

impl StackConfig {
    pub fn new(bootstrap_servers: String, incidents: usize) -> Self {
        Self {
            bootstrap_servers,
            replication_factor: 1,
            incidents,
            change_requests: incidents / 4,
            users: incidents / 20,
        }
    }
}

#[derive(Debug)]
pub struct Stack {
    pub sim: RunningSim,
    pub sei: RunningSeiLocal,
    dir: tempfile::TempDir,
    bin: PathBuf,
    config: PathBuf,
    topic_prefix: String,
    processes: BTreeMap<&'static str, StageProcess>,
    starts: usize,
}

impl Stack {
    pub async fn start(settings: StackConfig) -> anyhow::Result<Self> {
        let bin = stage_binaries()?;
        let sim = Simulator::start(SimConfig {
            data: GeneratorConfig {
                incidents: settings.incidents,
                change_requests: settings.change_requests,
                users: settings.users,
                same_second: settings.incidents / 10,
                ..GeneratorConfig::default()
            },
            ..SimConfig::default()
        })
        .await?;
        let sei = SeiLocal::start(SeiLocalConfig::for_tenant(TENANT, API_KEY)).await?;
        let dir = tempfile::tempdir()?;
        let topic_prefix = format!("{}.", unique("e2e"));
        let mut integration = Integration::new(sim.base_url());
        integration.allow_http = true;
        integration.exclude_fields = ["Summary", "Description", "Comments"]
            .map(str::to_owned)
            .to_vec();
        integration.auth = basic_auth("nowstream.integration", "integration-password");
        let replication = format!("replication_factor = {}", settings.replication_factor);
        let config = ConfigFile::new(&settings.bootstrap_servers, &topic_prefix)
            .kafka_property("session.timeout.ms", SESSION_TIMEOUT_MS)
            .kafka_property("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS)
            .sei(sei.base_url(), TENANT, API_KEY)
            .integration(integration)
            .telemetry("log_format = \"json\"")
            .section(
                "fetcher",
                &format!("poll_interval = \"1s\"\noverlap = \"2s\"\n{replication}"),
            )
            .section("normalizer", &replication)
            .section("sink", &format!("linger = \"200ms\"\n{replication}"))
            .write(dir.path(), "nowstream.toml");
        let mut stack = Self {
            sim,
            sei,
            dir,
            bin,
            config,
            topic_prefix,
            processes: BTreeMap::new(),
            starts: 0,
        };
        for stage in STAGES {
            stack.spawn(stage)?;
        }
        Ok(stack)
    }

    /// Where the stages' logs are, for failure messages.
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `[kafka] topic_prefix`: every topic of this stack starts with it.
    pub fn topic_prefix(&self) -> &str {
        &self.topic_prefix
    }

    pub fn spawn(&mut self, stage: &'static str) -> anyhow::Result<()> {
        self.starts += 1;
        let log_path = self.dir.path().join(format!("{stage}-{}.log", self.starts));
        let process = StageProcess::command(self.bin.join(stage), &self.config)
            .log_file(log_path)
            .spawn()?;
        self.processes.insert(stage, process);
        Ok(())
    }

    /// SIGKILL, then start again once the group noticed the death.
    ///
    /// The pause lets the killed member's session expire before its successor joins, so the
    /// successor's first assignment is the whole stage's.
    pub async fn kill_and_restart(&mut self, stage: &'static str) -> anyhow::Result<()> {
        if let Some(mut process) = self.processes.remove(stage) {
            process.kill();
        }
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        self.spawn(stage)
    }

    /// An error naming the first stage process that exited.
    pub fn assert_running(&mut self) -> anyhow::Result<()> {
        for (stage, process) in &mut self.processes {
            if let Some(status) = process.exit_status() {
                let lines = process.lines();
                let tail = &lines[lines.len().saturating_sub(20)..];
                bail!(
                    "{stage} exited ({status}); its log ends with:\n{}",
                    tail.join("\n")
                );
            }
        }
        Ok(())
    }

    /// The `/metrics` text of `stage`; its address comes from the line the stage logs when
    /// its listener is up (`[http] listen` is port 0).
    pub async fn metrics(&self, stage: &str) -> anyhow::Result<Metrics> {
        let process = self
            .processes
            .get(stage)
            .with_context(|| format!("{stage} is not running"))?;
        let addr = process
            .logged_probe_addr()
            .with_context(|| format!("{stage} has not logged its listener address yet"))?;
        let text = reqwest::Client::new()
            .get(format!("http://{addr}/metrics"))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Metrics(text))
    }

    pub fn live(&self, entity: Entity) -> anyhow::Result<HashMap<String, Value>> {
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
    pub async fn wait_until_equal(&mut self, timeout: Duration) -> anyhow::Result<Vec<String>> {
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

    /// How SEI differs from ServiceNow minus the excluded fields (at most 20 lines).
    pub fn differences(&self) -> anyhow::Result<Vec<String>> {
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
                // Schema v2 fields: ServiceNow's stored value (a sys_id for the reference),
                // null in SEI where ServiceNow's is empty.
                let stored = |field: &str| record.get(field).filter(|value| !value.is_empty());
                if table == "sys_user"
                    && got["employee_number"].as_str()
                        != stored("employee_number").map(String::as_str)
                {
                    differences.push(format!("sys_user {sys_id}: employee_number differs"));
                }
                if table == "incident" {
                    if got["caused_by"]["sys_id"].as_str()
                        != stored("caused_by").map(String::as_str)
                    {
                        differences.push(format!("incident {sys_id}: caused_by differs"));
                    }
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
        // A failed assertion names the log directory: keep it to be read. NOWSTREAM_E2E_KEEP_LOGS
        // keeps it after a passing run too, e.g. to see why a recovery took as long as it did.
        if std::thread::panicking() || std::env::var_os("NOWSTREAM_E2E_KEEP_LOGS").is_some() {
            eprintln!("stage logs kept in {}", self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
        // Each stage is killed as its process is dropped.
        self.processes.clear();
    }
}

/// A stage's Prometheus text exposition.
#[derive(Debug, Clone)]
pub struct Metrics(pub String);

impl Metrics {
    /// The sum of every series of `name` (all label sets); 0 when the metric was never
    /// recorded.
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let metric = series.split('{').next()?;
                (metric == name).then(|| value.parse::<f64>().ok())?
            })
            .fold(0.0, |sum, value| sum + value)
    }
}

pub fn time_rfc3339(servicenow: &str) -> String {
    NaiveDateTime::parse_from_str(servicenow, "%Y-%m-%d %H:%M:%S")
        .map(|time| {
            time.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_default()
}
