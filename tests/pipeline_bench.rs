//! The pipeline benchmark's code path with tiny figures: every figure is measured and printed,
//! and the records arrive in sei-local. Durations are printed, never asserted.

use std::time::Duration;

use crate::pipeline::{Options, run};

/// Every figure the benchmark reports, by name (stage names are the binaries').
const FIGURES: [&str; 11] = [
    "fetcher records/s (simulator -> raw topic)",
    "passthrough ceiling records/s (raw -> topic)",
    "normalizer records/s (raw -> entity topic)",
    "ratio normalizer / passthrough",
    "sei-local ingest ceiling records/s",
    "sink records/s (entity topic -> sei-local)",
    "ratio sink / sei-local ceiling",
    "freshness p50 (live changes)",
    "freshness p99 (live changes)",
    "catch-up after SEI is back",
    "end-to-end records/s (simulator -> sei-local)",
];

const STAGES: [&str; 3] = [
    "nowstream-fetcher",
    "nowstream-normalizer",
    "nowstream-sink",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pipeline_bench_reports_every_figure_and_delivers_every_incident() {
    let options = Options {
        incidents: 300,
        outage: Duration::from_secs(3),
        live: Duration::from_secs(5),
        changes_per_second: 5,
        ..Options::default()
    };
    let report = run(&options).await.unwrap();

    for name in FIGURES {
        let value = report
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not reported:\n{report}"));
        assert!(
            value.is_finite() && value >= 0.0,
            "{name} = {value}\n{report}"
        );
    }
    for stage in STAGES {
        for kind in [
            "peak RSS after its backfill",
            "RSS max while live",
            "RSS max while SEI down",
            "peak RSS in the end-to-end run",
        ] {
            let name = format!("{stage} {kind}");
            let value = report
                .get(&name)
                .unwrap_or_else(|| panic!("{name} is not reported:\n{report}"));
            assert!(value > 0.0, "{name} = {value}\n{report}");
        }
        let name = format!("{stage} RSS on /metrics");
        let value = report
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is not reported:\n{report}"));
        assert!(value > 0.0, "{name} = {value}\n{report}");
    }
    assert_eq!(report.incidents_in_sei, 300, "{report}");
    assert_eq!(report.incidents_in_sei_end_to_end, 300, "{report}");
}
