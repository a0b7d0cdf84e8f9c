//! The pipeline benchmark: the three stage binaries as processes over Apache Kafka, the
//! ServiceNow simulator as the source and sei-local (a process) as SEI, measured next to the
//! ceilings of what they stand on — all in one run. `benches/pipeline.rs` runs it with large
//! figures; the smoke test in `pipeline_bench.rs` runs the same code with tiny ones.
//!
//! Phases, in order:
//!
//! 1. **Stage by stage** (prefix A, sei-local A): the fetcher backfills alone; the broker's
//!    passthrough ceiling is measured over the raw topics it wrote; the normalizer then reads
//!    them alone; sei-local's ingest ceiling is measured on a fresh sei-local of its own with
//!    the batches the sink would send; the sink then loads the entity topics alone. Each stage
//!    thus works through a full backlog without sharing the CPU with the others, which is what
//!    the ratios to the ceilings need.
//! 2. **Live** (all three stages running): the simulator changes incidents at a steady rate;
//!    the sink's `nowstream_sink_freshness_seconds` over that window gives p50 and p99, and
//!    each stage's resident memory is sampled.
//! 3. **SEI down**: sei-local A is stopped for the outage while the changes go on, each stage's
//!    resident memory is sampled, then sei-local A is started again on the same port and
//!    database and the benchmark waits until every changed incident arrived in its newest
//!    version.
//! 4. **End to end** (prefix B, a fresh sei-local): the three stages start together on the
//!    same simulator; records per second from the start to the last record in SEI.
//!
//! Every figure is printed; nothing here asserts a duration.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nowstream_bus::{AckConsumer, OutRecord, Producer, TopicSpec, ensure_topics};
use nowstream_model::{Entity, EntityRecord, TopicNames};
use nowstream_runtime::process_memory::ResidentMemory;
use nowstream_runtime::{KafkaConfig, NormalizerConfig, SinkConfig};
use nowstream_servicenow_sim::{GeneratorConfig, RunningSim, SimConfig, Simulator};
use nowstream_testkit::{
    ConfigFile, Integration, Isolation, KafkaBroker, StageProcess, TopicReader, basic_auth, unique,
};
use serde_json::Value;

const TENANT: &str = "acme";
const API_KEY: &str = "pipeline-bench-key";
const INTEGRATION: &str = "4711";
const FETCHER: &str = "nowstream-fetcher";
const NORMALIZER: &str = "nowstream-normalizer";
const SINK: &str = "nowstream-sink";
const SEI_LOCAL: &str = "nowstream-sei-local";
const STAGES: [&str; 3] = [FETCHER, NORMALIZER, SINK];
/// How often a stage's counters are sampled while its rate is measured: a busy time is
/// measured up to one sample too long, and the normalizer's backlog takes only seconds.
const COUNTER_SAMPLE: Duration = Duration::from_millis(25);
/// How often a settling counter is sampled.
const SAMPLE: Duration = Duration::from_millis(250);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Incidents the simulator holds (it also holds its users and dictionary rows).
    pub incidents: usize,
    /// How long sei-local stays down.
    pub outage: Duration,
    /// Length of the live window the freshness figures come from.
    pub live: Duration,
    /// Incident updates per second during the live window and the outage.
    pub changes_per_second: u32,
    /// `MALLOC_ARENA_MAX` in the stage processes' environment, which overrides what the
    /// binaries set themselves (`nowstream_runtime::allocator`); `None`, the default, measures
    /// the binaries as they run anywhere.
    pub malloc_arena_max: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            incidents: 200_000,
            outage: Duration::from_secs(60),
            live: Duration::from_secs(60),
            changes_per_second: 20,
            malloc_arena_max: None,
        }
    }
}

impl Options {
    /// Reads `--incidents N`, `--outage-secs S`, `--live-secs S`, `--changes-per-sec R`,
    /// `--malloc-arena-max N` (0: the binaries' own setting); other arguments (cargo's `--bench`,
    /// filters) are ignored.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut options = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> Result<u64> {
                let value = args
                    .next()
                    .with_context(|| format!("{name} needs a value"))?;
                value
                    .parse()
                    .with_context(|| format!("{name} {value}: not a whole number"))
            };
            match arg.as_str() {
                "--incidents" => options.incidents = number("--incidents")? as usize,
                "--outage-secs" => options.outage = Duration::from_secs(number("--outage-secs")?),
                "--live-secs" => options.live = Duration::from_secs(number("--live-secs")?),
                "--changes-per-sec" => {
                    options.changes_per_second = number("--changes-per-sec")? as u32;
                }
                "--malloc-arena-max" => {
                    let arenas = number("--malloc-arena-max")? as u32;
                    options.malloc_arena_max = (arenas > 0).then_some(arenas);
                }
                _ => {}
            }
        }
        ensure!(options.incidents > 0, "--incidents must be at least 1");
        ensure!(
            options.changes_per_second > 0,
            "--changes-per-sec must be at least 1"
        );
        Ok(options)
    }
}

/// One printed figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable name (the smoke test looks for it).
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// How it was obtained, in a few words.
    pub note: String,
}

/// Everything one run measured, in the order it was measured.
#[derive(Debug, Default)]
pub struct Report {
    pub figures: Vec<Figure>,
    /// Incidents sei-local held (live) at the end of the staged run.
    pub incidents_in_sei: usize,
    /// The same for the end-to-end run.
    pub incidents_in_sei_end_to_end: usize,
}

impl Report {
    fn add(
        &mut self,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        note: impl Into<String>,
    ) {
        let figure = Figure {
            name: name.into(),
            value,
            unit,
            note: note.into(),
        };
        println!("{figure}");
        let _ = std::io::stdout().flush();
        self.figures.push(figure);
    }

    /// The figure called `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|figure| figure.name == name)
            .map(|figure| figure.value)
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.value.abs() >= 100.0 {
            format!("{:.0}", self.value)
        } else {
            format!("{:.2}", self.value)
        };
        write!(
            f,
            "{:<44} {:>12} {:<10} {}",
            self.name, value, self.unit, self.note
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for figure in &self.figures {
            writeln!(f, "{figure}")?;
        }
        Ok(())
    }
}

/// Runs the whole benchmark and prints each figure as it is measured.
pub async fn run(options: &Options) -> Result<Report> {
    let bin = stage_binaries()?;
    let dir = tempfile::tempdir()?;
    let keep_dir = KeepOnPanic(dir.path().to_path_buf());
    let broker = KafkaBroker::start()?;
    let bootstrap = broker.bootstrap_servers();
    println!(
        "pipeline bench: {} incidents; binaries from {}; MALLOC_ARENA_MAX {}; logs in {}",
        options.incidents,
        bin.display(),
        options
            .malloc_arena_max
            .map_or_else(|| "the binaries' own".to_owned(), |n| n.to_string()),
        dir.path().display()
    );

    let started = Instant::now();
    let sim = Arc::new(
        Simulator::start(SimConfig {
            data: GeneratorConfig {
                incidents: options.incidents,
                change_requests: 0,
                users: 50,
                ..GeneratorConfig::default()
            },
            ..SimConfig::default()
        })
        .await?,
    );
    let incident_ids: Vec<String> = sim
        .snapshot("incident")?
        .into_iter()
        .filter_map(|record| record.get("sys_id").cloned())
        .collect();
    println!(
        "simulator: {} incidents generated in {:.1?}",
        incident_ids.len(),
        started.elapsed()
    );

    let mut report = Report::default();

    // ---- 1. Stage by stage ----
    let mut sei = SeiLocalProcess::start(&bin, dir.path(), "sei-a", None).await?;
    let stack = StackFiles::write(dir.path(), "a", &bootstrap, sim.base_url(), sei.base_url())?;
    let mut stages: BTreeMap<&'static str, Stage> = BTreeMap::new();

    let fetcher = Stage::spawn(&bin, FETCHER, &stack, dir.path(), options).await?;
    let fetched = wait_for_counter(
        &fetcher,
        &[("nowstream_fetcher_records_total", "table=\"incident\"")],
        options.incidents as f64,
        timeout_for(options.incidents),
    )
    .await?;
    // The other tables (users, dictionary) finish within the incidents' time; let them.
    let raw_total = settle(&fetcher, &[("nowstream_fetcher_records_total", "")]).await?;
    report.add(
        "fetcher records/s (simulator -> raw topic)",
        fetched.rate(),
        "records/s",
        fetched.describe("incidents"),
    );
    stages.insert(FETCHER, fetcher);

    let passthrough =
        passthrough(&stack, raw_total as usize, timeout_for(options.incidents)).await?;
    report.add(
        "passthrough ceiling records/s (raw -> topic)",
        passthrough.rate(),
        "records/s",
        format!(
            "{}; normalizer's consumer and producer settings, no work",
            passthrough.describe("records")
        ),
    );

    let normalizer = Stage::spawn(&bin, NORMALIZER, &stack, dir.path(), options).await?;
    let normalized = wait_for_counter(
        &normalizer,
        &[
            ("nowstream_normalizer_records_out_total", ""),
            ("nowstream_normalizer_dead_letters_total", ""),
        ],
        raw_total,
        timeout_for(options.incidents),
    )
    .await?;
    let entity_total = metric_sum(
        &normalizer.scrape().await?,
        "nowstream_normalizer_records_out_total",
        "",
    );
    report.add(
        "normalizer records/s (raw -> entity topic)",
        normalized.rate(),
        "records/s",
        normalized.describe("records"),
    );
    report.add(
        "ratio normalizer / passthrough",
        normalized.rate() / passthrough.rate(),
        "",
        "target >= 0.8",
    );
    stages.insert(NORMALIZER, normalizer);

    let ceiling = sei_ceiling(&bin, dir.path(), &stack, entity_total as usize).await?;
    report.add(
        "sei-local ingest ceiling records/s",
        ceiling.rate(),
        "records/s",
        format!(
            "{}; the sink's batch size, gzip and concurrency, posted straight to a fresh sei-local",
            ceiling.describe("records")
        ),
    );

    let sink = Stage::spawn(&bin, SINK, &stack, dir.path(), options).await?;
    let sunk = wait_for_counter(
        &sink,
        &[
            ("nowstream_sink_records_sent_total", ""),
            ("nowstream_sink_records_superseded_total", ""),
            ("nowstream_sink_dlq_records_total", ""),
        ],
        entity_total,
        timeout_for(options.incidents),
    )
    .await?;
    report.add(
        "sink records/s (entity topic -> sei-local)",
        sunk.rate(),
        "records/s",
        sunk.describe("records"),
    );
    report.add(
        "ratio sink / sei-local ceiling",
        sunk.rate() / ceiling.rate(),
        "",
        "target >= 0.8",
    );
    stages.insert(SINK, sink);
    for (name, stage) in &stages {
        report.add(
            format!("{name} peak RSS after its backfill"),
            mib(stage.memory().map_or(0, |memory| memory.peak)),
            "MiB",
            "VmHWM; target <= 50",
        );
        report.add(
            format!("{name} RSS on /metrics"),
            mib(metric_sum(&stage.scrape().await?, "process_resident_memory_bytes", "") as u64),
            "MiB",
            "process_resident_memory_bytes, as the stage reports it",
        );
    }

    // ---- 2. Live changes, everything running ----
    let changes = LiveChanges::start(
        Arc::clone(&sim),
        incident_ids.clone(),
        options.changes_per_second,
    );
    // Let the first changes travel before the window opens.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sink_stage = stages.get(SINK).context("sink")?;
    let before = Histogram::parse(
        &sink_stage.scrape().await?,
        "nowstream_sink_freshness_seconds",
    );
    let steady = sample_memory(&stages, options.live).await;
    let after = Histogram::parse(
        &sink_stage.scrape().await?,
        "nowstream_sink_freshness_seconds",
    );
    let window = after.minus(&before);
    report.add(
        "freshness p50 (live changes)",
        window.quantile(0.5),
        "s",
        format!(
            "{} updates/s, poll interval 1s, {} records observed in {:.0?}",
            options.changes_per_second, window.count, options.live
        ),
    );
    report.add(
        "freshness p99 (live changes)",
        window.quantile(0.99),
        "s",
        "interpolated within nowstream_sink_freshness_seconds buckets",
    );
    for (name, peak) in &steady.max {
        report.add(
            format!("{name} RSS max while live"),
            mib(*peak),
            "MiB",
            "sampled VmRSS; target <= 50",
        );
    }

    // ---- 3. SEI down ----
    sei.stop().await?;
    let outage = sample_memory(&stages, options.outage).await;
    for (name, peak) in &outage.max {
        let first = outage.first.get(name).copied().unwrap_or_default();
        let last = outage.last.get(name).copied().unwrap_or_default();
        report.add(
            format!("{name} RSS max while SEI down"),
            mib(*peak),
            "MiB",
            format!(
                "sampled VmRSS over {:.0?}: {:.1} MiB at the start, {:.1} MiB at the end",
                options.outage,
                mib(first),
                mib(last)
            ),
        );
    }
    sei.restart().await?;
    let restarted = Instant::now();
    changes.stop().await;
    let changed = changes.newest();
    wait_for_versions(&sei, &changed, timeout_for(options.incidents)).await?;
    report.add(
        "catch-up after SEI is back",
        restarted.elapsed().as_secs_f64(),
        "s",
        format!(
            "until all {} changed incidents were in SEI in their newest version",
            changed.len()
        ),
    );
    for stage in stages.values_mut() {
        stage.ensure_running()?;
    }
    report.incidents_in_sei = count_live(&sei.base_url(), "incidents").await?;
    ensure!(
        report.incidents_in_sei == incident_ids.len(),
        "sei-local holds {} incidents, the simulator {}",
        report.incidents_in_sei,
        incident_ids.len()
    );
    for stage in stages.values_mut() {
        stage.process.stop(Duration::from_secs(30)).await;
    }
    drop(stages);
    sei.stop().await?;

    // ---- 4. End to end ----
    let mut sei_b = SeiLocalProcess::start(&bin, dir.path(), "sei-b", None).await?;
    let stack_b = StackFiles::write(
        dir.path(),
        "b",
        &bootstrap,
        sim.base_url(),
        sei_b.base_url(),
    )?;
    let t0 = Instant::now();
    let mut together = BTreeMap::new();
    for name in STAGES {
        together.insert(
            name,
            Stage::spawn(&bin, name, &stack_b, dir.path(), options).await?,
        );
    }
    let sink_b = together.get(SINK).context("sink")?;
    let end_to_end = wait_for_counter(
        sink_b,
        &[
            ("nowstream_sink_records_sent_total", ""),
            ("nowstream_sink_records_superseded_total", ""),
            ("nowstream_sink_dlq_records_total", ""),
        ],
        entity_total,
        timeout_for(options.incidents) * 2,
    )
    .await?;
    let all_in = t0.elapsed();
    report.add(
        "end-to-end records/s (simulator -> sei-local)",
        entity_total / all_in.as_secs_f64(),
        "records/s",
        format!(
            "{entity_total:.0} records, three stages started together, {all_in:.1?} from their start \
             to the last acknowledgement (sink busy {:.1?})",
            end_to_end.busy()
        ),
    );
    for (name, stage) in &together {
        report.add(
            format!("{name} peak RSS in the end-to-end run"),
            mib(stage.memory().map_or(0, |memory| memory.peak)),
            "MiB",
            "VmHWM; the three stages sharing the machine",
        );
    }
    report.incidents_in_sei_end_to_end = count_live(&sei_b.base_url(), "incidents").await?;
    for stage in together.values_mut() {
        stage.process.stop(Duration::from_secs(30)).await;
    }
    sei_b.stop().await?;
    keep_dir.disarm();
    Ok(report)
}

/// Keeps the log directory when the run fails (a panic or an error that unwinds past it).
struct KeepOnPanic(PathBuf);

impl KeepOnPanic {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        eprintln!(
            "pipeline bench did not finish; stage logs were in {}",
            self.0.display()
        );
    }
}

/// Generous limits that grow with the data: a stuck stage ends the run instead of hanging it.
fn timeout_for(incidents: usize) -> Duration {
    Duration::from_secs(120 + (incidents as u64) / 200)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Builds the stage binaries and sei-local in the profile this binary was built in (`cargo
/// bench`: release; `cargo test`: debug) and returns their directory. A no-op when current.
fn stage_binaries() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<binary>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("binary location")?
        .to_path_buf();
    let profile = dir
        .file_name()
        .and_then(|name| name.to_str())
        .context("profile directory")?
        .to_owned();
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--quiet"]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    for package in [FETCHER, NORMALIZER, SINK, SEI_LOCAL] {
        build.args(["-p", package]);
    }
    ensure!(
        build.status()?.success(),
        "building the stage binaries failed"
    );
    for binary in [FETCHER, NORMALIZER, SINK, SEI_LOCAL] {
        ensure!(
            dir.join(binary).is_file(),
            "{binary} not found in {}",
            dir.display()
        );
    }
    Ok(dir)
}

/// The config file of one stack (a topic prefix, a sei-local) and what the stages share.
struct StackFiles {
    path: PathBuf,
    kafka: KafkaConfig,
    topics: TopicNames,
    sink: SinkConfig,
    name: String,
}

impl StackFiles {
    fn write(
        dir: &Path,
        name: &str,
        bootstrap: &str,
        sim_url: &str,
        sei_url: String,
    ) -> Result<Self> {
        let prefix = format!("{}.", unique(&format!("bench{name}")));
        let mut integration = Integration::new(sim_url);
        integration.allow_http = true;
        integration.auth = basic_auth("nowstream.integration", "integration-password");
        let file = ConfigFile::new(bootstrap, &prefix)
            .sei(&sei_url, TENANT, API_KEY)
            .integration(integration)
            .telemetry("log_format = \"json\"\nlog_level = \"info\"")
            .section("fetcher", "poll_interval = \"1s\"");
        let config = file.config();
        let path = file.write(dir, &format!("nowstream-{name}.toml"));
        Ok(Self {
            path,
            topics: TopicNames::new(prefix).context("topic prefix")?,
            kafka: config.kafka,
            sink: config.sink,
            name: name.to_owned(),
        })
    }
}

/// A stage binary running as a process, with its probe address.
struct Stage {
    name: &'static str,
    process: StageProcess,
    probe: SocketAddr,
    spawned: Instant,
}

impl Stage {
    async fn spawn(
        bin: &Path,
        name: &'static str,
        stack: &StackFiles,
        dir: &Path,
        options: &Options,
    ) -> Result<Self> {
        let log = dir.join(format!("{name}-{}.log", stack.name));
        let spawned = Instant::now();
        let mut command = StageProcess::command(bin.join(name), &stack.path)
            .env_remove("RUST_LOG")
            .env_remove("MALLOC_ARENA_MAX")
            .env_remove("MALLOC_MMAP_THRESHOLD_")
            .env_remove("GLIBC_TUNABLES");
        if let Some(arenas) = options.malloc_arena_max {
            command = command.env("MALLOC_ARENA_MAX", arenas.to_string());
        }
        let process = command.log_file(log).spawn()?;
        let probe = process.probe_addr(Duration::from_secs(60)).await?;
        Ok(Self {
            name,
            process,
            probe,
            spawned,
        })
    }

    async fn scrape(&self) -> Result<String> {
        Ok(reqwest::Client::new()
            .get(format!("http://{}/metrics", self.probe))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    fn memory(&self) -> Option<ResidentMemory> {
        ResidentMemory::of_process(self.process.id())
    }

    fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.process.exit_status() {
            let lines = self.process.lines();
            let tail = &lines[lines.len().saturating_sub(20)..];
            bail!(
                "{} exited ({status}); its log ends with:\n{}",
                self.name,
                tail.join("\n")
            );
        }
        Ok(())
    }
}

/// The sum of every series of `name` whose labels contain `labels` (empty: all).
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// How a counter grew from nothing to a target.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Records counted.
    records: f64,
    /// The last moment nothing was counted yet (the last sample that saw 0), and the first
    /// sample that saw the target: busy time is measured up to one sample too long, never
    /// too short.
    first: Instant,
    done: Instant,
    spawned: Option<Instant>,
}

impl Progress {
    fn busy(&self) -> Duration {
        self.done.saturating_duration_since(self.first)
    }

    /// Records per second while busy, from its first output to its last.
    fn rate(&self) -> f64 {
        self.records / self.busy().as_secs_f64().max(1e-3)
    }

    fn describe(&self, what: &str) -> String {
        let startup = self
            .spawned
            .map(|spawned| {
                format!(
                    ", output began within {:.1?} of the start",
                    self.first - spawned
                )
            })
            .unwrap_or_default();
        format!("{:.0} {what} in {:.1?}{startup}", self.records, self.busy())
    }
}

/// Samples the sum of `series` on `stage`'s /metrics until it reaches `target`.
async fn wait_for_counter(
    stage: &Stage,
    series: &[(&str, &str)],
    target: f64,
    timeout: Duration,
) -> Result<Progress> {
    let deadline = Instant::now() + timeout;
    let mut nothing_yet = stage.spawned;
    loop {
        let text = stage.scrape().await?;
        let now = Instant::now();
        let count: f64 = series
            .iter()
            .map(|(name, labels)| metric_sum(&text, name, labels))
            .sum();
        if count <= 0.0 {
            nothing_yet = now;
        }
        if count >= target {
            return Ok(Progress {
                records: count,
                first: nothing_yet,
                done: now,
                spawned: Some(stage.spawned),
            });
        }
        if now > deadline {
            bail!(
                "{}: {count} of {target} after {timeout:?}; log tail:\n{}",
                stage.name,
                stage
                    .process
                    .lines()
                    .iter()
                    .rev()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(COUNTER_SAMPLE).await;
    }
}

/// Waits until the sum of `series` stops moving for two seconds; returns it.
async fn settle(stage: &Stage, series: &[(&str, &str)]) -> Result<f64> {
    let mut last = -1.0;
    let mut still_since = Instant::now();
    loop {
        let text = stage.scrape().await?;
        let count: f64 = series
            .iter()
            .map(|(name, labels)| metric_sum(&text, name, labels))
            .sum();
        if count != last {
            last = count;
            still_since = Instant::now();
        } else if still_since.elapsed() >= Duration::from_secs(2) {
            return Ok(count);
        }
        tokio::time::sleep(SAMPLE).await;
    }
}

/// Consumes the raw topics and produces the same keys and bytes to a topic of its own, with the
/// normalizer's client settings (the same `[kafka]` section through the same bus constructors,
/// the same number of records in flight), doing no work in between.
async fn passthrough(stack: &StackFiles, records: usize, timeout: Duration) -> Result<Progress> {
    // The normalizer's default: the passthrough keeps as many records unacknowledged.
    let max_in_flight = NormalizerConfig::default().max_in_flight;
    let raw: Vec<String> = Entity::SOURCE_TABLES
        .iter()
        .map(|table| stack.topics.raw(table))
        .collect::<Result<_, _>>()?;
    let raw: Vec<&str> = raw.iter().map(String::as_str).collect();
    let target = format!("{}passthrough", stack.topics.prefix());
    ensure_topics(&stack.kafka, &[TopicSpec::compacted(&target, 6)]).await?;
    let consumer = Arc::new(AckConsumer::subscribe(
        &stack.kafka,
        &unique("passthrough"),
        &raw,
    )?);
    let producer = Producer::new(&stack.kafka)?;
    let mut in_flight = tokio::task::JoinSet::new();
    let deadline = Instant::now() + timeout;
    let mut first = None;
    let mut acknowledged = 0usize;
    let mut read = 0usize;
    while acknowledged < records {
        ensure!(
            Instant::now() < deadline,
            "passthrough: {acknowledged} of {records} after {timeout:?}"
        );
        if read < records && in_flight.len() < max_in_flight {
            tokio::select! {
                biased;
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let token = joined??;
                    consumer.ack(&token)?;
                    acknowledged += 1;
                }
                message = consumer.recv() => {
                    let message = message?;
                    first.get_or_insert_with(Instant::now);
                    let key = message.key.clone().unwrap_or_default();
                    let pending = producer
                        .enqueue(OutRecord::new(&target, &key, message.payload.as_deref()))
                        .await?;
                    let token = message.token;
                    in_flight.spawn(async move {
                        pending.acknowledged().await.map(|_| token)
                    });
                    read += 1;
                }
            }
        } else if let Some(joined) = in_flight.join_next().await {
            let token = joined??;
            consumer.ack(&token)?;
            acknowledged += 1;
        }
    }
    let done = Instant::now();
    Ok(Progress {
        records: records as f64,
        first: first.unwrap_or(done),
        done,
        spawned: None,
    })
}

/// sei-local's ingest ceiling: the entity topics' records as the sink would send them
/// (entity JSON, `batch_max_records` per request, gzip as configured), built before the clock
/// starts, then posted with `max_in_flight_batches` requests at once to a fresh sei-local.
async fn sei_ceiling(
    bin: &Path,
    dir: &Path,
    stack: &StackFiles,
    records: usize,
) -> Result<Progress> {
    let topics: Vec<String> = Entity::ALL
        .iter()
        .map(|entity| stack.topics.entity(*entity))
        .collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let reader = TopicReader::subscribe(
        &stack.kafka.bootstrap_servers,
        &names,
        Isolation::ReadUncommitted,
    )?;
    let mut open: HashMap<Entity, Vec<String>> = HashMap::new();
    let mut bodies: Vec<(Entity, Vec<u8>)> = Vec::new();
    let batch = stack.sink.batch_max_records;
    let gzip = stack.sink.gzip;
    let close = |entity: Entity, upserts: Vec<String>, bodies: &mut Vec<(Entity, Vec<u8>)>| {
        let json = format!("{{\"upserts\":[{}],\"deletes\":[]}}", upserts.join(","));
        let body = if gzip {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = encoder.write_all(json.as_bytes());
            encoder.finish().unwrap_or_default()
        } else {
            json.into_bytes()
        };
        bodies.push((entity, body));
    };
    let mut read = 0usize;
    while read < records {
        let Some(message) = reader.next(Duration::from_secs(60)).await else {
            bail!("sei ceiling: only {read} of {records} entity records could be read");
        };
        read += 1;
        let Some(entity) = stack.topics.entity_of(&message.topic) else {
            continue;
        };
        let Some(payload) = message.payload.as_deref() else {
            continue;
        };
        let record = EntityRecord::decode(entity, payload)?;
        let upserts = open.entry(entity).or_default();
        upserts.push(serde_json::to_string(&record)?);
        if upserts.len() >= batch {
            let full = std::mem::take(upserts);
            close(entity, full, &mut bodies);
        }
    }
    for (entity, upserts) in open {
        if !upserts.is_empty() {
            close(entity, upserts, &mut bodies);
        }
    }

    let mut sei =
        SeiLocalProcess::start(bin, dir, &format!("sei-ceiling-{}", stack.name), None).await?;
    let client = reqwest::Client::new();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(
        stack.sink.max_in_flight_batches,
    ));
    let mut posts = tokio::task::JoinSet::new();
    let started = Instant::now();
    for (index, (entity, body)) in bodies.into_iter().enumerate() {
        let permit = Arc::clone(&semaphore).acquire_owned().await?;
        let url = format!(
            "{}/v1/ingest/servicenow/{INTEGRATION}/{}",
            sei.base_url(),
            entity.api_path()
        );
        let mut request = client
            .post(url)
            .header("Authorization", format!("Apikey {API_KEY}"))
            .header("X-Tenant", TENANT)
            .header("Idempotency-Key", format!("ceiling-{index}"))
            .header("Content-Type", "application/json");
        if gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        posts.spawn(async move {
            let answer = request.body(body).send().await;
            drop(permit);
            match answer {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(anyhow::anyhow!("sei-local answered {}", response.status())),
                Err(error) => Err(error.into()),
            }
        });
    }
    while let Some(joined) = posts.join_next().await {
        joined??;
    }
    let done = Instant::now();
    sei.stop().await?;
    Ok(Progress {
        records: records as f64,
        first: started,
        done,
        spawned: None,
    })
}

/// sei-local as a process, on a fixed port and database file so it can be stopped and started
/// again where it was.
struct SeiLocalProcess {
    binary: PathBuf,
    addr: SocketAddr,
    database: PathBuf,
    log: PathBuf,
    child: Option<std::process::Child>,
}

impl SeiLocalProcess {
    async fn start(bin: &Path, dir: &Path, name: &str, addr: Option<SocketAddr>) -> Result<Self> {
        let addr = match addr {
            Some(addr) => addr,
            None => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?,
        };
        let mut sei = Self {
            binary: bin.join(SEI_LOCAL),
            addr,
            database: dir.join(format!("{name}.sqlite")),
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        sei.restart().await?;
        Ok(sei)
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the process (again) on the same port and database; returns once it answers.
    async fn restart(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.binary)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--api-key")
            .arg(format!("{TENANT}={API_KEY}"))
            .arg("--database")
            .arg(&self.database)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = client
                .get(format!("{}/admin/stats", self.base_url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "sei-local exited at start ({status}); see {}",
                    self.log.display()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "sei-local did not answer within 60s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, and wait until it exited (SIGKILL after 30 s).
    async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for SeiLocalProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Live records of one entity in sei-local, counted through its listing API.
async fn count_live(base_url: &str, entity: &str) -> Result<usize> {
    let client = reqwest::Client::new();
    let mut count = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client
            .get(format!("{base_url}/v1/servicenow/{INTEGRATION}/{entity}"))
            .header("Authorization", format!("Apikey {API_KEY}"))
            .header("X-Tenant", TENANT)
            .query(&[("limit", "10000")]);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let page: Value = request.send().await?.error_for_status()?.json().await?;
        count += page["items"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(count),
        }
    }
}

/// Waits until sei-local holds every incident of `newest` at that `sys_updated_on`.
async fn wait_for_versions(
    sei: &SeiLocalProcess,
    newest: &HashMap<String, String>,
    timeout: Duration,
) -> Result<()> {
    let client = reqwest::Client::new();
    let mut waiting: Vec<(&String, String)> = newest
        .iter()
        .map(|(sys_id, updated)| (sys_id, servicenow_to_rfc3339(updated)))
        .collect();
    let deadline = Instant::now() + timeout;
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (sys_id, want) in waiting {
            let answer = client
                .get(format!(
                    "{}/v1/servicenow/{INTEGRATION}/incidents/{sys_id}",
                    sei.base_url()
                ))
                .header("Authorization", format!("Apikey {API_KEY}"))
                .header("X-Tenant", TENANT)
                .send()
                .await?;
            let body: Value = answer.json().await.unwrap_or_default();
            if body["sys_updated_on"].as_str() != Some(want.as_str()) {
                still.push((sys_id, want));
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{} changed incidents not in SEI in their newest version after {timeout:?}",
            waiting.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

fn servicenow_to_rfc3339(time: &str) -> String {
    chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S")
        .map(|time| {
            time.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_default()
}

/// Incident updates at a steady rate, as an agent working in ServiceNow would make them.
struct LiveChanges {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    newest: Arc<Mutex<HashMap<String, String>>>,
    made: Arc<AtomicU64>,
}

impl LiveChanges {
    fn start(sim: Arc<RunningSim>, incidents: Vec<String>, per_second: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let newest = Arc::new(Mutex::new(HashMap::new()));
        let made = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, newest, made) = (Arc::clone(&stop), Arc::clone(&newest), Arc::clone(&made));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
                // A fixed xorshift: the same incidents are changed in every run.
                let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let Some(sys_id) = incidents.get((state % incidents.len() as u64) as usize)
                    else {
                        continue;
                    };
                    let n = made.fetch_add(1, Ordering::Relaxed);
                    let values =
                        serde_json::json!({ "short_description": format!("live change {n}") });
                    if let Ok(record) = sim.update("incident", sys_id, values)
                        && let Some(updated) = record.get("sys_updated_on")
                        && let Ok(mut newest) = newest.lock()
                    {
                        newest.insert(sys_id.clone(), updated.clone());
                    }
                }
            })
        };
        Self {
            stop,
            task,
            newest,
            made,
        }
    }

    async fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Every changed incident and its newest `sys_updated_on` (ServiceNow's format).
    fn newest(self) -> HashMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
        self.newest
            .lock()
            .map(|newest| newest.clone())
            .unwrap_or_default()
    }
}

/// Resident memory sampled over a window.
#[derive(Debug, Default)]
struct MemorySamples {
    first: BTreeMap<&'static str, u64>,
    last: BTreeMap<&'static str, u64>,
    max: BTreeMap<&'static str, u64>,
}

async fn sample_memory(stages: &BTreeMap<&'static str, Stage>, window: Duration) -> MemorySamples {
    let mut samples = MemorySamples::default();
    let end = Instant::now() + window;
    loop {
        for (name, stage) in stages {
            if let Some(memory) = stage.memory() {
                samples.first.entry(name).or_insert(memory.current);
                samples.last.insert(name, memory.current);
                let max = samples.max.entry(name).or_default();
                *max = (*max).max(memory.current);
            }
        }
        if Instant::now() >= end {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A Prometheus histogram summed over its label sets: cumulative counts per upper bound.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// (upper bound, cumulative count), ascending; the last bound is +Inf.
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
}

impl Histogram {
    pub fn parse(text: &str, name: &str) -> Self {
        let bucket_name = format!("{name}_bucket");
        let mut by_bound: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some((metric, labels)) = series.split_once('{') else {
                continue;
            };
            if metric != bucket_name {
                continue;
            }
            let Some(bound) = labels
                .split("le=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
            else {
                continue;
            };
            let bound: f64 = if bound == "+Inf" {
                f64::INFINITY
            } else {
                match bound.parse() {
                    Ok(bound) => bound,
                    Err(_) => continue,
                }
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let entry = by_bound.entry(bound.to_bits()).or_insert((bound, 0.0));
            entry.1 += value;
        }
        let mut buckets: Vec<(f64, f64)> = by_bound.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = buckets.last().map_or(0.0, |(_, count)| *count);
        Self { buckets, count }
    }

    /// What was observed since `earlier`.
    pub fn minus(&self, earlier: &Self) -> Self {
        let buckets: Vec<(f64, f64)> = self
            .buckets
            .iter()
            .map(|(bound, count)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(other, _)| other == bound)
                    .map_or(0.0, |(_, count)| *count);
                (*bound, count - before)
            })
            .collect();
        let count = buckets.last().map_or(0.0, |(_, count)| *count);
        Self { buckets, count }
    }

    /// The `q` quantile, interpolated linearly within its bucket as Prometheus'
    /// `histogram_quantile` does; the highest finite bound when it falls in `+Inf`; NaN when
    /// nothing was observed.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count <= 0.0 {
            return f64::NAN;
        }
        let rank = q * self.count;
        let mut lower_bound = 0.0;
        let mut lower_count = 0.0;
        for (bound, count) in &self.buckets {
            if *count >= rank {
                if bound.is_infinite() {
                    return lower_bound;
                }
                let in_bucket = count - lower_count;
                if in_bucket <= 0.0 {
                    return *bound;
                }
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket;
            }
            lower_bound = *bound;
            lower_count = *count;
        }
        lower_bound
    }
}
