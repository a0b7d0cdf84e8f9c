//! Grouping records into batches: one open batch per target (integration, entity), closed by
//! record count, body bytes or linger time.
//!
//! A closed batch keeps only the last operation per sys_id (in offset order). SEI applies a
//! batch's upserts before its deletes, whatever order they were sent in, so a batch holding
//! "delete X, then upsert X" would otherwise end with X deleted. The earlier operations are
//! not lost: they ride along with the one that superseded them and are acknowledged with it
//! once it is applied. Each keeps its own operation, so that when SEI rejects the newest
//! one, the one before it can be sent in its place (see `delivery`).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::record::{Input, Member, Operation, Target};

/// When an open batch is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Records (messages, before de-duplication) per batch.
    pub max_records: usize,
    /// Body bytes per batch, before compression.
    pub max_bytes: usize,
    /// Time from a batch's first record until it is sent, full or not.
    pub linger: Duration,
}

/// One operation to send, with the messages it stands for.
#[derive(Debug)]
pub struct Op<M> {
    /// The record's sys_id.
    pub sys_id: String,
    /// The last operation on it within the batch.
    pub operation: Operation,
    /// The message that carried it: dead-lettered if SEI rejects the operation.
    pub message: M,
    /// Earlier operations of the same sys_id in the batch, oldest first: acknowledged
    /// together with this one once it is applied, sent in its place if SEI rejects it.
    pub superseded: Vec<Superseded<M>>,
}

/// An operation replaced by a later one of the same sys_id within a batch.
#[derive(Debug)]
pub struct Superseded<M> {
    /// What it asked SEI to do.
    pub operation: Operation,
    /// The message that carried it.
    pub message: M,
}

impl<M> Op<M> {
    /// Every message this operation accounts for, oldest first.
    pub fn messages(&self) -> impl Iterator<Item = &M> {
        self.superseded
            .iter()
            .map(|earlier| &earlier.message)
            .chain(std::iter::once(&self.message))
    }

    /// Takes every message out, oldest first, once the operation is done.
    pub fn into_messages(self) -> Vec<M> {
        let mut messages: Vec<M> = self
            .superseded
            .into_iter()
            .map(|earlier| earlier.message)
            .collect();
        messages.push(self.message);
        messages
    }
}

/// A closed batch: distinct sys_ids, one target.
#[derive(Debug)]
pub struct Batch<M> {
    /// Where it goes.
    pub target: Target,
    /// One operation per sys_id.
    pub ops: Vec<Op<M>>,
}

impl<M: Input> Batch<M> {
    /// Keeps the last operation per sys_id; members must be in offset order per partition
    /// (one sys_id always comes from one partition, as its key decides the partition).
    pub fn from_members(target: Target, members: Vec<Member<M>>) -> Self {
        let mut ops: Vec<Op<M>> = Vec::with_capacity(members.len());
        let mut index_of: HashMap<String, usize> = HashMap::with_capacity(members.len());
        for member in members {
            debug_assert_eq!(member.target, target);
            match index_of.get(&member.sys_id) {
                Some(&index) => {
                    let op = &mut ops[index];
                    let message = std::mem::replace(&mut op.message, member.message);
                    let operation = std::mem::replace(&mut op.operation, member.operation);
                    op.superseded.push(Superseded { operation, message });
                }
                None => {
                    index_of.insert(member.sys_id.clone(), ops.len());
                    ops.push(Op {
                        sys_id: member.sys_id,
                        operation: member.operation,
                        message: member.message,
                        superseded: Vec::new(),
                    });
                }
            }
        }
        Self { target, ops }
    }

    /// The sys_ids in the batch.
    pub fn keys(&self) -> Vec<String> {
        self.ops.iter().map(|op| op.sys_id.clone()).collect()
    }

    /// Messages the batch accounts for.
    pub fn message_count(&self) -> usize {
        self.ops.iter().map(|op| op.superseded.len() + 1).sum()
    }
}

#[derive(Debug)]
struct OpenBatch<M> {
    members: Vec<Member<M>>,
    bytes: usize,
    deadline: Instant,
}

/// The open batches, one per target.
#[derive(Debug)]
pub struct Batcher<M> {
    limits: Limits,
    open: HashMap<Target, OpenBatch<M>>,
}

impl<M: Input> Batcher<M> {
    /// No open batches yet.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            open: HashMap::new(),
        }
    }

    /// Adds a record; returns the batches this closed (none, one, or two when the record
    /// both overflowed the open batch's bytes and filled a new one by itself).
    pub fn push(&mut self, member: Member<M>, now: Instant) -> Vec<Batch<M>> {
        let mut closed = Vec::new();
        let size = member.body_bytes();
        let target = member.target.clone();
        if let Some(open) = self.open.get(&target)
            && !open.members.is_empty()
            && open.bytes + size > self.limits.max_bytes
        {
            closed.extend(self.close(&target));
        }
        let linger = self.limits.linger;
        let open = self
            .open
            .entry(target.clone())
            .or_insert_with(|| OpenBatch {
                members: Vec::new(),
                bytes: 0,
                deadline: now + linger,
            });
        open.members.push(member);
        open.bytes += size;
        if open.members.len() >= self.limits.max_records || open.bytes >= self.limits.max_bytes {
            closed.extend(self.close(&target));
        }
        closed
    }

    /// When the oldest open batch is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().map(|open| open.deadline).min()
    }

    /// Closes every batch whose linger time is over.
    pub fn take_due(&mut self, now: Instant) -> Vec<Batch<M>> {
        let mut due: Vec<Target> = self
            .open
            .iter()
            .filter(|(_, open)| open.deadline <= now)
            .map(|(target, _)| target.clone())
            .collect();
        due.sort();
        due.iter().filter_map(|target| self.close(target)).collect()
    }

    /// Closes every open batch (shutdown).
    pub fn take_all(&mut self) -> Vec<Batch<M>> {
        let mut targets: Vec<Target> = self.open.keys().cloned().collect();
        targets.sort();
        targets
            .iter()
            .filter_map(|target| self.close(target))
            .collect()
    }

    /// Records waiting in open batches.
    pub fn pending_records(&self) -> usize {
        self.open.values().map(|open| open.members.len()).sum()
    }

    fn close(&mut self, target: &Target) -> Option<Batch<M>> {
        let open = self.open.remove(target)?;
        Some(Batch::from_members(target.clone(), open.members))
    }
}

#[cfg(test)]
mod tests {
    use nowstream_model::Entity;

    use super::*;
    use crate::record::tests::{TestMessage, message};

    fn target(entity: Entity) -> Target {
        Target {
            integration_id: "sn1".into(),
            entity,
        }
    }

    fn member(
        entity: Entity,
        sys_id: &str,
        offset: i64,
        operation: Operation,
    ) -> Member<TestMessage> {
        Member {
            target: target(entity),
            sys_id: sys_id.into(),
            operation,
            message: message(entity.topic_name(), offset, None, None),
        }
    }

    fn upsert(json: &str) -> Operation {
        Operation::Upsert {
            json: json.into(),
            sys_updated_on: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn limits(max_records: usize, max_bytes: usize) -> Limits {
        Limits {
            max_records,
            max_bytes,
            linger: Duration::from_millis(100),
        }
    }

    #[test]
    fn the_last_operation_per_sys_id_wins_and_carries_the_earlier_ones() {
        let members = vec![
            member(Entity::User, "a", 1, upsert("{\"v\":1}")),
            member(Entity::User, "b", 2, upsert("{\"v\":1}")),
            member(Entity::User, "a", 3, Operation::Delete),
            member(Entity::User, "a", 4, upsert("{\"v\":3}")),
        ];
        let batch = Batch::from_members(target(Entity::User), members);
        assert_eq!(batch.keys(), vec!["a", "b"]);
        assert_eq!(batch.message_count(), 4);
        let first = &batch.ops[0];
        assert_eq!(first.operation, upsert("{\"v\":3}"));
        let offsets: Vec<i64> = first.messages().map(|m| m.offset).collect();
        assert_eq!(offsets, vec![1, 3, 4]);
        let earlier: Vec<&Operation> = first.superseded.iter().map(|s| &s.operation).collect();
        assert_eq!(
            earlier,
            vec![&upsert("{\"v\":1}"), &Operation::Delete],
            "each replaced operation is kept, oldest first"
        );
    }

    #[test]
    fn a_delete_after_an_upsert_leaves_only_the_delete() {
        let batch = Batch::from_members(
            target(Entity::Incident),
            vec![
                member(Entity::Incident, "a", 1, upsert("{}")),
                member(Entity::Incident, "a", 2, Operation::Delete),
            ],
        );
        assert_eq!(batch.ops.len(), 1);
        assert_eq!(batch.ops[0].operation, Operation::Delete);
        assert_eq!(batch.ops[0].message.offset, 2);
    }

    #[test]
    fn a_batch_closes_when_it_holds_max_records() {
        let mut batcher = Batcher::new(limits(2, 1_000_000));
        let now = Instant::now();
        assert!(
            batcher
                .push(member(Entity::User, "a", 1, upsert("{}")), now)
                .is_empty()
        );
        let closed = batcher.push(member(Entity::User, "b", 2, upsert("{}")), now);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].ops.len(), 2);
        assert_eq!(batcher.pending_records(), 0);
    }

    #[test]
    fn targets_are_batched_separately() {
        let mut batcher = Batcher::new(limits(2, 1_000_000));
        let now = Instant::now();
        assert!(
            batcher
                .push(member(Entity::User, "a", 1, upsert("{}")), now)
                .is_empty()
        );
        assert!(
            batcher
                .push(member(Entity::Incident, "a", 1, upsert("{}")), now)
                .is_empty()
        );
        assert_eq!(batcher.pending_records(), 2);
        let all = batcher.take_all();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|batch| batch.ops.len() == 1));
    }

    #[test]
    fn a_record_that_would_pass_max_bytes_starts_a_new_batch() {
        let mut batcher = Batcher::new(limits(100, 20));
        let now = Instant::now();
        let ten = "{\"x\":\"12\"}"; // 10 bytes + 1 separator
        assert!(
            batcher
                .push(member(Entity::User, "a", 1, upsert(ten)), now)
                .is_empty()
        );
        let closed = batcher.push(member(Entity::User, "b", 2, upsert(ten)), now);
        assert_eq!(
            closed.len(),
            1,
            "the first batch is closed before it overflows"
        );
        assert_eq!(closed[0].keys(), vec!["a"]);
        assert_eq!(batcher.pending_records(), 1);
    }

    #[test]
    fn a_single_record_larger_than_max_bytes_goes_alone() {
        let mut batcher = Batcher::new(limits(100, 5));
        let now = Instant::now();
        let closed = batcher.push(member(Entity::User, "a", 1, upsert("{\"big\":1}")), now);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].keys(), vec!["a"]);
    }

    #[test]
    fn batches_are_due_once_their_linger_time_is_over() {
        let mut batcher = Batcher::new(limits(100, 1_000_000));
        let start = Instant::now();
        batcher.push(member(Entity::User, "a", 1, upsert("{}")), start);
        batcher.push(
            member(Entity::Incident, "b", 1, upsert("{}")),
            start + Duration::from_millis(50),
        );
        assert_eq!(
            batcher.next_deadline(),
            Some(start + Duration::from_millis(100))
        );
        assert!(
            batcher
                .take_due(start + Duration::from_millis(99))
                .is_empty()
        );
        let due = batcher.take_due(start + Duration::from_millis(100));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].target.entity, Entity::User);
        assert_eq!(
            batcher.next_deadline(),
            Some(start + Duration::from_millis(150))
        );
    }
}
