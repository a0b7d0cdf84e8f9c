//! What `/readyz` says about SEI.
//!
//! Ready means the sink can deliver. It turns not-ready while batches keep failing (SEI down,
//! unreachable or throttling hard) and ready again with the next 2xx, so an operator sees an
//! outage without reading logs. A refusal (401/403, a 400 that is not about a record) is
//! different: it sticks, whatever other batches report afterwards, until the sink's own probe
//! of the refused batch is taken by SEI ([`SeiReadiness::resume`]) or the process restarts.

use std::sync::{Arc, Mutex, PoisonError};

use nowstream_runtime::ReadinessHandle;

/// Consecutive failures of one batch after which SEI counts as failing.
pub const FAILING_AFTER: u32 = 3;

/// Shared by the loop and every delivery task.
#[derive(Debug, Clone)]
pub struct SeiReadiness {
    handle: Option<ReadinessHandle>,
    /// Set once SEI refused the credentials; guarded with the handle updates, so a success
    /// reported at the same moment cannot turn a refused sink ready again.
    refused: Arc<Mutex<bool>>,
}

impl SeiReadiness {
    /// Reports through `handle`.
    pub fn new(handle: ReadinessHandle) -> Self {
        Self {
            handle: Some(handle),
            refused: Arc::new(Mutex::new(false)),
        }
    }

    /// Reports nowhere (tests, benchmarks).
    pub fn detached() -> Self {
        Self {
            handle: None,
            refused: Arc::new(Mutex::new(false)),
        }
    }

    /// A batch keeps failing. `reason` is served by `/readyz`: no secrets.
    pub fn failing(&self, reason: impl Into<String>) {
        let refused = self.lock();
        if !*refused && let Some(handle) = &self.handle {
            handle.set_not_ready(reason);
        }
    }

    /// SEI took a batch.
    pub fn working(&self) {
        let refused = self.lock();
        if !*refused && let Some(handle) = &self.handle {
            handle.set_ready();
        }
    }

    /// SEI refused the sink; not ready until restart. Returns false when it already was.
    pub fn refuse(&self, reason: impl Into<String>) -> bool {
        let mut refused = self.lock();
        if *refused {
            return false;
        }
        *refused = true;
        if let Some(handle) = &self.handle {
            handle.set_not_ready(reason);
        }
        true
    }

    /// SEI took the batch it had refused: ready again.
    pub fn resume(&self) {
        let mut refused = self.lock();
        *refused = false;
        if let Some(handle) = &self.handle {
            handle.set_ready();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use nowstream_runtime::Health;

    use super::*;

    #[test]
    fn failing_and_working_come_and_go() {
        let health = Health::new();
        let sei = SeiReadiness::new(health.component("sink.sei"));
        sei.working();
        assert!(health.readiness().ready);
        sei.failing("SEI answered 503 three times");
        assert!(!health.readiness().ready);
        sei.working();
        assert!(health.readiness().ready);
    }

    #[test]
    fn a_refusal_sticks_whatever_comes_after() {
        let health = Health::new();
        let sei = SeiReadiness::new(health.component("sink.sei"));
        assert!(sei.refuse("401"));
        assert!(!sei.refuse("401 again"), "only the first refusal counts");
        sei.working();
        sei.failing("503");
        let readiness = health.readiness();
        assert!(!readiness.ready);
        assert_eq!(readiness.not_ready[0].reason, "401");
        sei.resume();
        assert!(health.readiness().ready, "the refused batch was taken");
        assert!(sei.refuse("401 once more"), "a later refusal counts again");
    }
}
