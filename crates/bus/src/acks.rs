//! Which input offsets may be committed, given out-of-order acknowledgements.
//!
//! A stage may finish messages out of order (batches to different downstream targets, retries).
//! Committing the offset after the *latest* acknowledged message would skip earlier messages that
//! are still in flight, and a crash would lose them. So per partition we keep the set of delivered
//! but unacknowledged offsets; the committable position is the lowest of them (or one past the
//! highest delivered when none is pending). Acknowledging therefore never moves the committed
//! position past a message that was not acknowledged.

use std::collections::{BTreeSet, HashMap};

/// Identifies one delivered message for [`crate::AckConsumer::ack`].
///
/// The epoch ties it to one assignment of the partition: an acknowledgement that arrives after the
/// partition was revoked (and maybe assigned again) must not move the new owner's position.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AckToken {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub(crate) epoch: u64,
}

#[derive(Debug)]
struct PartitionState {
    epoch: u64,
    pending: BTreeSet<i64>,
    /// One past the highest offset delivered in this epoch.
    next: Option<i64>,
    /// The position last handed to librdkafka's offset store.
    stored: Option<i64>,
}

impl PartitionState {
    fn committable(&self) -> Option<i64> {
        self.pending.first().copied().or(self.next)
    }
}

#[derive(Debug, Default)]
pub(crate) struct AckTracker {
    partitions: HashMap<(String, i32), PartitionState>,
    last_epoch: u64,
}

impl AckTracker {
    /// Starts (or restarts) tracking a partition: everything from an earlier assignment is void.
    pub(crate) fn assign(&mut self, topic: &str, partition: i32) {
        self.last_epoch += 1;
        self.partitions.insert(
            (topic.to_owned(), partition),
            PartitionState {
                epoch: self.last_epoch,
                pending: BTreeSet::new(),
                next: None,
                stored: None,
            },
        );
    }

    pub(crate) fn revoke(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_owned(), partition));
    }

    pub(crate) fn revoke_all(&mut self) {
        self.partitions.clear();
    }

    /// Records that a message was handed to the caller and returns its token.
    pub(crate) fn delivered(&mut self, topic: &str, partition: i32, offset: i64) -> AckToken {
        if !self.partitions.contains_key(&(topic.to_owned(), partition)) {
            // A message can only come from an assigned partition; be robust if the assign
            // callback has not been seen (e.g. manual assignment).
            self.assign(topic, partition);
        }
        let state = self
            .partitions
            .get_mut(&(topic.to_owned(), partition))
            .expect("partition inserted above");
        // The position before the first delivered message is that message's offset: storing it
        // again would be a no-op commit.
        state.stored.get_or_insert(offset);
        state.pending.insert(offset);
        state.next = Some(state.next.map_or(offset + 1, |next| next.max(offset + 1)));
        AckToken {
            topic: topic.to_owned(),
            partition,
            offset,
            epoch: state.epoch,
        }
    }

    /// Marks a message done. Returns the new committable position when it moved forward.
    pub(crate) fn ack(&mut self, token: &AckToken) -> Option<i64> {
        let state = self
            .partitions
            .get_mut(&(token.topic.clone(), token.partition))?;
        if state.epoch != token.epoch || !state.pending.remove(&token.offset) {
            return None;
        }
        let position = state.committable()?;
        if state.stored.is_some_and(|stored| stored >= position) {
            return None;
        }
        state.stored = Some(position);
        Some(position)
    }

    /// One past the highest offset handed out for a partition in its current assignment: the
    /// consumer's read position, as far as the caller has seen. `None` before the first message
    /// of the assignment.
    pub(crate) fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.partitions
            .get(&(topic.to_owned(), partition))
            .and_then(|state| state.next)
    }

    /// Messages handed out and not yet acknowledged, over all partitions.
    pub(crate) fn pending(&self) -> usize {
        self.partitions
            .values()
            .map(|state| state.pending.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(tracker: &mut AckTracker, offsets: std::ops::Range<i64>) -> Vec<AckToken> {
        offsets
            .map(|offset| tracker.delivered("t", 0, offset))
            .collect()
    }

    #[test]
    fn in_order_acks_move_the_position_one_past_each_message() {
        let mut tracker = AckTracker::default();
        let tokens = deliver(&mut tracker, 0..3);
        assert_eq!(tracker.ack(&tokens[0]), Some(1));
        assert_eq!(tracker.ack(&tokens[1]), Some(2));
        assert_eq!(tracker.ack(&tokens[2]), Some(3));
        assert_eq!(tracker.pending(), 0);
    }

    #[test]
    fn position_never_passes_an_unacknowledged_message() {
        let mut tracker = AckTracker::default();
        let tokens = deliver(&mut tracker, 10..15);
        assert_eq!(tracker.ack(&tokens[1]), None, "10 still pending");
        assert_eq!(tracker.ack(&tokens[3]), None);
        assert_eq!(
            tracker.ack(&tokens[0]),
            Some(12),
            "stops at 12, still pending"
        );
        assert_eq!(tracker.ack(&tokens[4]), None);
        assert_eq!(tracker.ack(&tokens[2]), Some(15));
    }

    #[test]
    fn acks_from_a_revoked_assignment_are_ignored() {
        let mut tracker = AckTracker::default();
        let old = deliver(&mut tracker, 0..2);
        tracker.revoke("t", 0);
        assert_eq!(tracker.ack(&old[0]), None);
        tracker.assign("t", 0);
        let new = deliver(&mut tracker, 5..6);
        assert_eq!(
            tracker.ack(&old[1]),
            None,
            "old epoch must not touch new assignment"
        );
        assert_eq!(tracker.ack(&new[0]), Some(6));
    }

    #[test]
    fn acknowledging_twice_does_not_move_the_position_again() {
        let mut tracker = AckTracker::default();
        let tokens = deliver(&mut tracker, 0..2);
        assert_eq!(tracker.ack(&tokens[0]), Some(1));
        assert_eq!(tracker.ack(&tokens[0]), None);
    }

    #[test]
    fn the_read_position_is_one_past_the_highest_offset_of_the_current_assignment() {
        let mut tracker = AckTracker::default();
        assert_eq!(tracker.next_offset("t", 0), None);
        deliver(&mut tracker, 0..8);
        assert_eq!(tracker.next_offset("t", 0), Some(8));
        // Given back after a rebalance: nothing read in the new assignment yet, then reading
        // starts over at the committed offset.
        tracker.revoke("t", 0);
        tracker.assign("t", 0);
        assert_eq!(tracker.next_offset("t", 0), None);
        deliver(&mut tracker, 3..4);
        assert_eq!(tracker.next_offset("t", 0), Some(4));
    }
}
