//! The process's metrics recorder, rendered in Prometheus text format by `/metrics`.
//!
//! Components record with the `metrics` crate's macros (`metrics::counter!` …) and need
//! not know about Prometheus; this module installs the one global recorder those
//! macros write to.
//!
//! Histograms are rendered as Prometheus summaries (quantiles over a sliding window), except
//! those whose name ends in [`AGE_SUFFIX`]: ages of data (the sink's
//! `nowstream_sink_freshness_seconds`) are rendered as real histograms with
//! [`AGE_BUCKETS_SECONDS`], because their quantiles must be aggregated across replicas and over
//! any time range (`histogram_quantile` over `rate(..._bucket)`), which summaries cannot do.

use std::sync::{Mutex, PoisonError};

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::process_memory;

/// Histograms whose name ends with this are ages of data, rendered with [`AGE_BUCKETS_SECONDS`].
pub const AGE_SUFFIX: &str = "_freshness_seconds";

/// Bucket bounds (seconds) of age histograms: from 50 ms (a record delivered within the
/// sink's linger) to one day (a backlog after a long outage); older lands in `+Inf`. Roughly
/// 1-2.5-5 steps, so a quantile interpolated inside a bucket is off by at most a factor of 2.5.
pub const AGE_BUCKETS_SECONDS: [f64; 20] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0, 14400.0, 28800.0, 43200.0, 86400.0,
];

/// The metrics recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the Prometheus metrics recorder: {source}")]
pub struct MetricsError {
    #[source]
    source: BuildError,
}

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the Prometheus recorder as the global `metrics` recorder, once per process,
/// and returns a handle that renders it; later calls return the same handle.
///
/// Call it early: metrics recorded before a recorder is installed are dropped.
/// Fails only if some other recorder was installed in this process.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let mut slot = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix(AGE_SUFFIX.to_owned()), &AGE_BUCKETS_SECONDS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|source| MetricsError { source })?;
    process_memory::describe();
    *slot = Some(handle.clone());
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_returns_the_same_recorder_every_time() {
        let first = install().unwrap();
        let second = install().unwrap();
        metrics::counter!("nowstream_runtime_unit_test_total").increment(3);
        assert!(
            first
                .render()
                .contains("nowstream_runtime_unit_test_total 3")
        );
        assert!(
            second
                .render()
                .contains("nowstream_runtime_unit_test_total 3")
        );
    }

    #[test]
    fn age_histograms_are_rendered_with_buckets() {
        let handle = install().unwrap();
        metrics::histogram!("nowstream_runtime_unit_test_freshness_seconds").record(3.0);
        let text = handle.render();
        assert!(
            text.contains("nowstream_runtime_unit_test_freshness_seconds_bucket{le=\"5\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("nowstream_runtime_unit_test_freshness_seconds_bucket{le=\"2.5\"} 0"),
            "{text}"
        );
    }
}
