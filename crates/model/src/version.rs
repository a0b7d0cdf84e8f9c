//! Record versions: how "newer" is decided when the same record arrives more than once.
//!
//! Every stage may re-emit a record (poll overlap windows, retries after a crash), so
//! consumers keep the newest version of each key and ignore older or equal ones; the
//! end state is then the source's end state whatever the duplicates.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The version of one ServiceNow record: `sys_updated_on`, then `sys_mod_count`.
///
/// `sys_updated_on` has whole seconds in ServiceNow, so two updates in one second are
/// told apart by `sys_mod_count`. Ordering is field by field; a missing count sorts
/// before any count (an instance that hides it yields `None` throughout, so this only
/// matters when mixing sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// When ServiceNow last updated the record, UTC.
    pub sys_updated_on: DateTime<Utc>,
    /// ServiceNow's update counter, when known.
    pub sys_mod_count: Option<i64>,
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
    pub fn supersedes(&self, held: Option<&Version>) -> bool {
        held.is_none_or(|held| self > held)
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
    fn later_update_time_wins_whatever_the_counts() {
        assert!(at(2, Some(1)) > at(1, Some(9)));
    }

    #[test]
    fn mod_count_breaks_ties_within_one_second() {
        assert!(at(1, Some(4)) > at(1, Some(3)));
        assert!(at(1, Some(0)) > at(1, None));
    }

    #[test]
    fn equal_or_older_versions_do_not_supersede() {
        let held = at(5, Some(2));
        assert!(!at(5, Some(2)).supersedes(Some(&held)));
        assert!(!at(4, Some(7)).supersedes(Some(&held)));
        assert!(at(5, Some(3)).supersedes(Some(&held)));
        assert!(at(0, None).supersedes(None));
    }
}
