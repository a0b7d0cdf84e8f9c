//! Sliced backfill throughput: the simulator answers every page after a delay (300 ms by
//! default, a real instance takes about a second per 1,000-row page), and the fetcher
//! backfills the incidents as 1, 4 and 8 concurrent slices (`backfill_slices`, with
//! `max_concurrency` the same). Next to each, merely downloading the same rows with as many
//! concurrent range scans: the ceiling for that concurrency. Prints records/s, fetch/download
//! and the speed-up over one stream. Figures go to docs/performance.md, "Sliced backfill".
//!
//! `cargo bench -p nowstream-fetcher --bench sliced_backfill` (needs Apache Kafka:
//! `scripts/install-kafka`). `NOWSTREAM_BENCH_RECORDS` sets the incidents (default 24,000:
//! with fewer, planning the slices is a visible share of so short a backfill),
//! `NOWSTREAM_BENCH_PAGE_DELAY_MS` the delay per page (default 300), `NOWSTREAM_BENCH_PAGE_SIZE`
//! the rows per page (default 100: the simulator renders pages on this machine's CPU, which a
//! real instance does on its own, so small pages keep the delay, not the rendering, the cost of
//! a page), `NOWSTREAM_BENCH_SLICES` the slice counts (default `1,4,8`).

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nowstream_fetcher::fields;
use nowstream_fetcher::slices::SliceRange;
use nowstream_model::table_api::parse_time;
use nowstream_runtime::{Config, Format, Health};
use nowstream_servicenow::client::{Auth, Client, ClientConfig, ListRequest, ScanRequest};
use nowstream_servicenow_sim::{GeneratorConfig, RunningSim, SimConfig, Simulator};
use nowstream_testkit::{KafkaBroker, unique};
use tokio_util::sync::CancellationToken;

const INCIDENTS: &str = "/api/now/table/incident";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records: usize = env_or("NOWSTREAM_BENCH_RECORDS", 24_000);
    let page_size: usize = env_or("NOWSTREAM_BENCH_PAGE_SIZE", 100);
    let delay_ms: u64 = env_or("NOWSTREAM_BENCH_PAGE_DELAY_MS", 300);
    let slice_counts: Vec<usize> = std::env::var("NOWSTREAM_BENCH_SLICES")
        .unwrap_or_else(|_| "1,4,8".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let sim = Simulator::start(SimConfig {
        data: GeneratorConfig {
            incidents: records,
            change_requests: 0,
            users: 50,
            ..GeneratorConfig::default()
        },
        page_delay_ms: delay_ms,
        ..SimConfig::default()
    })
    .await?;
    let broker = KafkaBroker::shared()?;
    println!("incidents: {records}, page size: {page_size}, page delay: {delay_ms} ms");
    println!(
        "{:>6} {:>14} {:>14} {:>14} {:>9} {:>14}",
        "slices", "download rec/s", "fetch rec/s", "fetch secs", "fetch/dl", "speed-up vs 1"
    );
    let mut single = None;
    for &slices in &slice_counts {
        let (downloaded, download_secs) = download(&sim, slices, page_size).await?;
        let (published, fetch_secs, most_at_once) =
            fetch(&sim, broker, slices, page_size, downloaded).await?;
        let download_rate = downloaded as f64 / download_secs;
        let fetch_rate = published as f64 / fetch_secs;
        let base = *single.get_or_insert(fetch_rate);
        println!(
            "{slices:>6} {download_rate:>14.0} {fetch_rate:>14.0} {fetch_secs:>14.2} {:>9.2} {:>13.2}x   (most incident pages at once: {most_at_once})",
            fetch_rate / download_rate,
            fetch_rate / base
        );
    }
    println!(
        "peak RSS of this process (sim + fetcher): {} MiB",
        peak_rss_mib()
    );
    Ok(())
}

fn client(sim: &RunningSim, concurrency: usize, page_size: usize) -> anyhow::Result<Client> {
    let mut config = ClientConfig::new(
        sim.base_url().parse()?,
        Auth::Basic {
            username: "nowstream.integration".into(),
            password: "integration-password".to_owned().into(),
        },
    );
    config.allow_http = true;
    config.page_size = page_size;
    config.max_concurrency = concurrency.max(1);
    Ok(Client::new(config)?)
}

/// The oldest or newest `sys_created_on` of the incidents.
async fn created(client: &Client, descending: bool) -> anyhow::Result<DateTime<Utc>> {
    let order = if descending {
        "ORDERBYDESCsys_created_on"
    } else {
        "ORDERBYsys_created_on"
    };
    let page = client
        .list_page(&ListRequest {
            table: "incident".to_owned(),
            query: format!("sys_created_onISNOTEMPTY^{order}"),
            limit: 1,
            offset: 0,
            fields: Some(vec!["sys_created_on".to_owned()]),
        })
        .await?;
    let record = page
        .records
        .first()
        .ok_or_else(|| anyhow::anyhow!("no incidents"))?;
    let value = record
        .stored_value("sys_created_on")
        .ok_or_else(|| anyhow::anyhow!("no sys_created_on"))?;
    Ok(parse_time(&value)?)
}

/// Downloads every incident with `slices` concurrent keyset scans over equal spans of
/// `sys_created_on` (records dropped): what the Table API alone allows at that concurrency.
async fn download(
    sim: &RunningSim,
    slices: usize,
    page_size: usize,
) -> anyhow::Result<(usize, f64)> {
    let client = client(sim, slices, page_size)?;
    let field_list = fields::field_list(&client, "incident", &|_| false).await?;
    let oldest = created(&client, false).await?;
    let end = created(&client, true).await? + chrono::Duration::seconds(1);
    let span = (end - oldest).num_seconds().max(1);
    let edge = |n: usize| oldest + chrono::Duration::seconds(span * n as i64 / slices as i64);
    let ranges: Vec<SliceRange> = (0..slices)
        .map(|n| SliceRange::Created {
            from: (n > 0).then(|| edge(n)),
            until: (n + 1 < slices).then(|| edge(n + 1)),
        })
        .collect();
    let started = Instant::now();
    let counts = futures::future::try_join_all(ranges.iter().map(|range| {
        let client = client.clone();
        let request = ScanRequest::new("incident")
            .fields(field_list.clone())
            .filter(range.query().to_string());
        async move {
            let mut scan = client.scan(request);
            let mut downloaded = 0usize;
            while let Some(page) = scan.next_page().await? {
                downloaded += page.records.len();
            }
            anyhow::Ok(downloaded)
        }
    }))
    .await?;
    Ok((counts.iter().sum(), started.elapsed().as_secs_f64()))
}

/// The fetcher's backfill of the incidents with `slices` slices: from its first incident
/// request (planning included; start-up, topic creation and the group join are not) until the
/// incident unit's checkpoint covers `expected` records. Returns the records, the seconds and
/// the most incident pages the simulator answered at once.
async fn fetch(
    sim: &RunningSim,
    broker: &KafkaBroker,
    slices: usize,
    page_size: usize,
    expected: usize,
) -> anyhow::Result<(usize, f64, usize)> {
    sim.reset_stats();
    let prefix = format!("{}.", unique("bench"));
    let config = Config::parse(
        &format!(
            r#"
[kafka]
bootstrap_servers = "{servers}"
topic_prefix = "{prefix}"
[[integrations]]
id = "4711"
url = "{url}"
allow_http = true
[integrations.auth]
type = "basic"
username = "nowstream.integration"
password = "integration-password"
[fetcher]
page_size = {page_size}
max_concurrency = {slices}
backfill_slices = {slices}
poll_interval = "1h"
group_id = "{group}"
"#,
            servers = broker.bootstrap_servers(),
            url = sim.base_url(),
            group = unique("bench"),
        ),
        Format::Toml,
    )?;
    let kafka = config.kafka.clone();
    let shutdown = CancellationToken::new();
    let mut fetcher = tokio::spawn(nowstream_fetcher::run(
        config,
        Health::new(),
        shutdown.clone(),
    ));
    let started = loop {
        if sim.stats().requests_to(INCIDENTS) > 0 {
            break Instant::now();
        }
        if fetcher.is_finished() {
            anyhow::bail!("the fetcher stopped: {:?}", fetcher.await);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let published = common::wait_for_published(
        &kafka,
        &prefix,
        expected,
        &mut fetcher,
        Duration::from_millis(100),
    )
    .await?;
    let fetch_secs = started.elapsed().as_secs_f64();
    shutdown.cancel();
    fetcher.await??;
    Ok((
        published,
        fetch_secs,
        sim.stats().most_concurrent_pages(INCIDENTS),
    ))
}

/// `VmHWM` from /proc: the peak resident set size so far.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}
