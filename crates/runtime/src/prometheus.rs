//! The process's metrics recorder, rendered in Prometheus text format by `/metrics`.
//!
//! Components record with the `metrics` crate's macros (`metrics::counter!` …) and need
//! not know about Prometheus; this module installs the one global recorder those
//! macros write to.

use std::sync::{Mutex, PoisonError};

use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

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
        .install_recorder()
        .map_err(|source| MetricsError { source })?;
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
}
