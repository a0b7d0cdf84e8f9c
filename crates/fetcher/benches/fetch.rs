//! Fetcher throughput against the ServiceNow simulator, next to the throughput of merely
//! downloading the same pages. The ratio (fetch / download) is the number to track: it shows
//! what keying, encoding, producing and checkpointing cost on top of the Table API itself.
//!
//! `cargo bench -p nowstream-fetcher --bench fetch` (needs Apache Kafka: `scripts/install-kafka`).
//! `NOWSTREAM_BENCH_RECORDS` sets the number of incidents (default 20000).

mod common;

use std::time::{Duration, Instant};

use nowstream_fetcher::fields;
use nowstream_runtime::{Config, Format, Health};
use nowstream_servicenow::client::{Auth, Client, ClientConfig, ScanRequest};
use nowstream_servicenow_sim::{GeneratorConfig, SimConfig, Simulator};
use nowstream_testkit::{KafkaBroker, unique};
use tokio_util::sync::CancellationToken;

const PAGE_SIZE: usize = 1000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records: usize = std::env::var("NOWSTREAM_BENCH_RECORDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20_000);
    let sim = Simulator::start(SimConfig {
        data: GeneratorConfig {
            incidents: records,
            change_requests: 0,
            users: 50,
            ..GeneratorConfig::default()
        },
        ..SimConfig::default()
    })
    .await?;

    // 1. Download only: the same keyset pages with the same field list, records dropped.
    let client = Client::new({
        let mut config = ClientConfig::new(
            sim.base_url().parse()?,
            Auth::Basic {
                username: "nowstream.integration".into(),
                password: "integration-password".to_owned().into(),
            },
        );
        config.allow_http = true;
        config.page_size = PAGE_SIZE;
        config
    })?;
    let started = Instant::now();
    let field_list = fields::field_list(&client, "incident", &|_| false).await?;
    let mut scan = client.scan(ScanRequest::new("incident").fields(field_list));
    let mut downloaded = 0usize;
    while let Some(page) = scan.next_page().await? {
        downloaded += page.records.len();
    }
    let download_secs = started.elapsed().as_secs_f64();

    // 2. The fetcher: download, key, encode, produce to Kafka, checkpoint every page.
    let broker = KafkaBroker::shared()?;
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
page_size = {PAGE_SIZE}
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
    let started = Instant::now();
    let mut fetcher = tokio::spawn(nowstream_fetcher::run(
        config,
        Health::new(),
        shutdown.clone(),
    ));
    let published = common::wait_for_published(
        &kafka,
        &prefix,
        downloaded,
        &mut fetcher,
        Duration::from_millis(200),
    )
    .await?;
    let fetch_secs = started.elapsed().as_secs_f64();
    shutdown.cancel();
    fetcher.await??;

    let download_rate = downloaded as f64 / download_secs;
    let fetch_rate = published as f64 / fetch_secs;
    println!("incidents: {records}, page size: {PAGE_SIZE}");
    println!(
        "download only : {downloaded:>8} records in {download_secs:>7.2} s = {download_rate:>9.0} records/s"
    );
    println!(
        "fetcher       : {published:>8} records in {fetch_secs:>7.2} s = {fetch_rate:>9.0} records/s"
    );
    println!("ratio fetch/download: {:.2}", fetch_rate / download_rate);
    println!(
        "peak RSS of this process (sim + fetcher): {} MiB",
        peak_rss_mib()
    );
    Ok(())
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
