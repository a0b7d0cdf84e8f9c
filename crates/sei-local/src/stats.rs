//! Request counters, so tests can see how often a client called and what it was told
//! (e.g. two 503s, then a 200: it retried).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counts of `/v1/` requests by status and by path (what `GET /admin/stats` returns).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Every counted request.
    pub requests: u64,
    /// Status → count.
    pub by_status: BTreeMap<u16, u64>,
    /// Path → status → count.
    pub by_path: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Responses that came from a fault rule rather than a handler.
    pub faults_injected: u64,
}

impl Stats {
    /// Counts one answered request.
    pub fn record(&mut self, path: &str, status: u16, injected: bool) {
        self.requests += 1;
        *self.by_status.entry(status).or_default() += 1;
        *self
            .by_path
            .entry(path.to_owned())
            .or_default()
            .entry(status)
            .or_default() += 1;
        if injected {
            self.faults_injected += 1;
        }
    }

    /// Requests answered with `status`, on any path.
    pub fn count(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    /// Requests to `path` answered with `status`.
    pub fn count_on(&self, path: &str, status: u16) -> u64 {
        self.by_path
            .get(path)
            .and_then(|statuses| statuses.get(&status))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_and_by_path() {
        let mut stats = Stats::default();
        stats.record("/v1/a", 503, true);
        stats.record("/v1/a", 200, false);
        stats.record("/v1/b", 200, false);
        assert_eq!(stats.requests, 3);
        assert_eq!(stats.count(200), 2);
        assert_eq!(stats.count_on("/v1/a", 503), 1);
        assert_eq!(stats.count_on("/v1/b", 503), 0);
        assert_eq!(stats.faults_injected, 1);
    }
}
