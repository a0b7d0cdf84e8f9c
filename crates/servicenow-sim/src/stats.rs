//! Request counters, so tests can observe faults and count fetches.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// How many recent requests are kept in [`Stats::recent`].
pub const RECENT_CAPACITY: usize = 10_000;

/// One handled request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// URI path.
    pub path: String,
    /// Raw query string (never carries credentials: the Table API takes them in headers).
    pub query: Option<String>,
    /// Status sent.
    pub status: u16,
}

/// Counts per path and status, plus the most recent requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// All counted requests.
    pub total: u64,
    /// Path → status → count.
    pub by_path: BTreeMap<String, BTreeMap<u16, u64>>,
    /// The last [`RECENT_CAPACITY`] requests, oldest first.
    pub recent: VecDeque<RequestRecord>,
    /// Per path, the most pages (list requests for more than one row) that were being handled
    /// at the same moment: how many scans of a table a client really ran concurrently.
    #[serde(default)]
    pub max_concurrent_pages: BTreeMap<String, usize>,
}

impl Stats {
    /// Count one request.
    pub fn record(&mut self, record: RequestRecord) {
        self.total += 1;
        *self
            .by_path
            .entry(record.path.clone())
            .or_default()
            .entry(record.status)
            .or_default() += 1;
        if self.recent.len() == RECENT_CAPACITY {
            self.recent.pop_front();
        }
        self.recent.push_back(record);
    }

    /// Notes that `in_flight` pages of `path` are being handled right now.
    pub fn note_concurrent_pages(&mut self, path: &str, in_flight: usize) {
        let most = self
            .max_concurrent_pages
            .entry(path.to_owned())
            .or_default();
        *most = (*most).max(in_flight);
    }

    /// The most pages of `path` that were ever handled at once.
    pub fn most_concurrent_pages(&self, path: &str) -> usize {
        self.max_concurrent_pages.get(path).copied().unwrap_or(0)
    }

    /// Requests to `path` answered with `status`.
    pub fn count(&self, path: &str, status: u16) -> u64 {
        self.by_path
            .get(path)
            .and_then(|s| s.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// Requests to `path`, any status.
    pub fn requests_to(&self, path: &str) -> u64 {
        self.by_path.get(path).map_or(0, |s| s.values().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_path_and_status() {
        let mut stats = Stats::default();
        for status in [200, 200, 429] {
            stats.record(RequestRecord {
                method: "GET".into(),
                path: "/a".into(),
                query: None,
                status,
            });
        }
        assert_eq!(stats.count("/a", 200), 2);
        assert_eq!(stats.count("/a", 429), 1);
        assert_eq!(stats.requests_to("/a"), 3);
        assert_eq!(stats.total, 3);
        let json = serde_json::to_string(&stats).unwrap();
        assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), stats);
    }
}
