//! The pause before a failed unit starts again: exponential, capped and jittered.
//!
//! Exponential so that a unit that keeps failing (a table without its role, a password being
//! rotated) asks ServiceNow less and less often instead of hammering it or locking the account;
//! capped so that it still notices a fix within minutes; jittered so that the units of one
//! instance, which often fail together (an upgrade, a node restart), do not retry in lockstep.

use std::time::Duration;

use rand::Rng;

/// The pauses of one unit: `min`, `2 × min`, `4 × min`, … up to `max`, each with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// Pauses from `min` growing to `max` (a `max` below `min` is taken as `min`). A `min`
    /// below [`Backoff::FLOOR`] is raised to it: a zero pause would spin on a refused unit.
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Self::FLOOR);
        Self {
            min,
            max: max.max(min),
        }
    }

    /// The shortest first pause.
    pub const FLOOR: Duration = Duration::from_millis(100);

    /// The pause after the `failures`-th failure in a row (1 for the first one).
    ///
    /// "Equal jitter": half of the exponential step is fixed and half is random, so a pause is
    /// never shorter than half its step (no immediate retry) and never longer than `max`.
    pub fn pause(&self, failures: u32) -> Duration {
        let step = self.step(failures);
        let half = step / 2;
        let random = rand::rng().random_range(0..=half.as_millis().min(u64::MAX as u128) as u64);
        half + Duration::from_millis(random)
    }

    /// The un-jittered pause after the `failures`-th failure in a row.
    pub fn step(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.min
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_from_the_minimum_up_to_the_maximum() {
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
        let steps: Vec<u64> = (1..=6).map(|n| backoff.step(n).as_secs()).collect();
        assert_eq!(steps, [5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff.step(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn a_jittered_pause_lies_between_half_its_step_and_its_step() {
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(600));
        for failures in 1..=12 {
            let step = backoff.step(failures);
            for _ in 0..50 {
                let pause = backoff.pause(failures);
                assert!(
                    pause >= step / 2 && pause <= step,
                    "{pause:?} for step {step:?}"
                );
            }
        }
    }

    #[test]
    fn pauses_are_spread_rather_than_all_equal() {
        let backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
        let pauses: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| backoff.pause(1)).collect();
        assert!(pauses.len() > 10, "{pauses:?}");
    }

    #[test]
    fn a_maximum_below_the_minimum_is_the_minimum() {
        let backoff = Backoff::new(Duration::from_secs(30), Duration::from_secs(1));
        assert_eq!(backoff.step(4), Duration::from_secs(30));
    }
}
