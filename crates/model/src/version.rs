//! Record versions: how "newer" is decided when the same record arrives more than once.
//!
//! Every stage may re-emit a record (poll overlap windows, retries after a crash), so
//! consumers keep the newest version of each key and ignore older or equal ones; the
//! end state is then the source's end state whatever the duplicates.
//!
//! # The order
//!
//! `sys_mod_count` is ServiceNow's per-record update counter: every update of a record adds
//! one, in the order the updates committed. `sys_updated_on` is a wall-clock time with whole
//! seconds, taken by whichever application node ran the update: a transaction that commits
//! after a newer one, or clock skew between nodes, can give a later update an *earlier*
//! time. So the counter decides first, and the time only breaks ties between equal counts.
//!
//! Where one version has a counter and the other has not (an instance that starts or stops
//! showing `sys_mod_count` to the integration user, or a DELETE raw record, built from a
//! `sys_audit_delete` row, which has none) the two are **not comparable**: no total order
//! can put "counter first" and "time only" together (`(10:00, 5) > (10:10, 4)` by counter,
//! `(10:10, 4) > (10:05, none)` and `(10:05, none) > (10:00, 5)` by time would be a cycle).
//! [`Version`] therefore implements [`PartialOrd`] only; [`Version::supersedes`] is where a
//! decision is made for incomparable pairs (by time, so no record can get stuck at a version
//! of the other kind).
//!
//! Counters are only comparable within one life of a record: one re-created under the same
//! sys_id after a deletion counts from 0 again. Consumers that keep tombstones compare a
//! version with a deleted record by time (see sei-local's store and `docs/architecture.md`).

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The version of one ServiceNow record: `sys_mod_count`, then `sys_updated_on`.
///
/// Two versions that both carry a counter are ordered by counter, then time; two that both
/// lack one are ordered by time; one of each kind are incomparable (`partial_cmp` is
/// `None`). Equality is field by field, consistent with that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version {
    /// When ServiceNow last updated the record, UTC.
    pub sys_updated_on: DateTime<Utc>,
    /// ServiceNow's update counter, when known.
    pub sys_mod_count: Option<i64>,
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let by_time = self.sys_updated_on.cmp(&other.sys_updated_on);
        match (self.sys_mod_count, other.sys_mod_count) {
            (Some(mine), Some(theirs)) => Some(mine.cmp(&theirs).then(by_time)),
            (None, None) => Some(by_time),
            _ => None,
        }
    }
}

impl Version {
    /// A version from its two parts.
    pub const fn new(sys_updated_on: DateTime<Utc>, sys_mod_count: Option<i64>) -> Self {
        Self {
            sys_updated_on,
            sys_mod_count,
        }
    }

    /// Whether a record of this version should replace one held at `held`: only when it
    /// is strictly newer, so replays and duplicates change nothing.
    ///
    /// Incomparable versions (one with a counter, one without) are decided by time, and at
    /// the same second the one with a counter wins: the instance stopped or started showing
    /// the counter, and a record must not stay stuck at the last version of the old kind.
    pub fn supersedes(&self, held: Option<&Version>) -> bool {
        let Some(held) = held else {
            return true;
        };
        match self.partial_cmp(held) {
            Some(order) => order == Ordering::Greater,
            None => {
                (self.sys_updated_on, self.sys_mod_count.is_some())
                    > (held.sys_updated_on, held.sys_mod_count.is_some())
            }
        }
    }

    /// Whether this version was written after `moment`, by time alone: the test across a
    /// deletion, where counters of the old and the new life of a record cannot be compared.
    pub fn is_after(&self, moment: DateTime<Utc>) -> bool {
        self.sys_updated_on > moment
    }
}

/// A record that carries its version.
pub trait Versioned {
    /// The record's version.
    fn version(&self) -> Version;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, count: Option<i64>) -> Version {
        let time = DateTime::from_timestamp(seconds, 0).unwrap();
        Version::new(time, count)
    }

    #[test]
    fn a_higher_mod_count_wins_even_with_an_earlier_update_time() {
        // A late commit or a skewed node: the later update carries the earlier time.
        let late_write = at(100, Some(8));
        let held = at(160, Some(7));
        assert!(late_write > held);
        assert!(late_write.supersedes(Some(&held)));
        assert!(!held.supersedes(Some(&late_write)));
    }

    #[test]
    fn update_time_breaks_ties_between_equal_counts() {
        assert!(at(2, Some(4)) > at(1, Some(4)));
        assert!(at(2, Some(4)).supersedes(Some(&at(1, Some(4)))));
    }

    #[test]
    fn without_counters_the_update_time_decides() {
        assert!(at(2, None) > at(1, None));
        assert!(at(2, None).supersedes(Some(&at(1, None))));
        assert!(!at(1, None).supersedes(Some(&at(2, None))));
    }

    #[test]
    fn a_version_with_a_counter_and_one_without_are_incomparable() {
        let counted = at(1, Some(5));
        let uncounted = at(2, None);
        assert_eq!(counted.partial_cmp(&uncounted), None);
        assert_eq!(uncounted.partial_cmp(&counted), None);
        assert_ne!(counted, uncounted);
        // Neither `<`, `>` nor `==` holds: no cycle can be built from the order itself.
        let holds = [
            counted < uncounted,
            counted > uncounted,
            counted == uncounted,
        ];
        assert_eq!(holds, [false; 3]);
    }

    #[test]
    fn incomparable_versions_are_decided_by_time_so_no_record_gets_stuck() {
        let counted = at(1, Some(5));
        let uncounted = at(2, None);
        assert!(uncounted.supersedes(Some(&counted)));
        assert!(!counted.supersedes(Some(&uncounted)));
        // Same second: the counted one wins, once, and never back and forth.
        assert!(at(1, Some(0)).supersedes(Some(&at(1, None))));
        assert!(!at(1, None).supersedes(Some(&at(1, Some(0)))));
    }

    #[test]
    fn the_order_is_consistent_over_every_triple() {
        // Antisymmetric, consistent with equality and transitive over a grid that mixes
        // counters, no counters, earlier and later times.
        let mut versions = Vec::new();
        for seconds in 0..3 {
            for count in [None, Some(0), Some(1), Some(2)] {
                versions.push(at(seconds, count));
            }
        }
        for a in &versions {
            for b in &versions {
                let forward = a.partial_cmp(b);
                assert_eq!(forward.map(Ordering::reverse), b.partial_cmp(a));
                assert_eq!(forward == Some(Ordering::Equal), a == b);
                for c in &versions {
                    if a > b && b > c {
                        assert!(a > c, "{a:?} > {b:?} > {c:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn equal_or_older_versions_do_not_supersede() {
        let held = at(5, Some(2));
        assert!(!at(5, Some(2)).supersedes(Some(&held)));
        assert!(!at(9, Some(1)).supersedes(Some(&held)));
        assert!(at(4, Some(3)).supersedes(Some(&held)));
        assert!(at(0, None).supersedes(None));
    }

    #[test]
    fn is_after_looks_at_time_alone() {
        let moment = DateTime::from_timestamp(10, 0).unwrap();
        assert!(at(11, Some(0)).is_after(moment));
        assert!(!at(10, Some(99)).is_after(moment));
    }
}
