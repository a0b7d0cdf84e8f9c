//! Which closed batch may be sent next.
//!
//! Batches of one target leave in the order they were closed, and a batch waits while an
//! earlier batch of the same target holding one of its sys_ids is still being delivered. That
//! keeps per-record order up to SEI: a delete and a later re-creation of a record can never
//! overtake each other (versions alone cannot order those, since deletes carry no version).
//! At most `max_in_flight` batches are delivered at once.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::batch::Batch;
use crate::record::Target;

/// Closed batches waiting for a slot, and the sys_ids being delivered.
#[derive(Debug)]
pub struct Dispatcher<M> {
    max_in_flight: usize,
    waiting: BTreeMap<Target, VecDeque<Batch<M>>>,
    busy: HashMap<Target, HashMap<String, usize>>,
    in_flight: usize,
    queued: usize,
    /// The target served last: the search for the next batch starts after it, so every
    /// target gets its turn.
    last_served: Option<Target>,
}

impl<M> Dispatcher<M> {
    /// Allows `max_in_flight` batches in delivery at once.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            max_in_flight: max_in_flight.max(1),
            waiting: BTreeMap::new(),
            busy: HashMap::new(),
            in_flight: 0,
            queued: 0,
            last_served: None,
        }
    }

    /// Queues a closed batch behind the earlier ones of its target.
    pub fn push(&mut self, batch: Batch<M>) {
        self.waiting
            .entry(batch.target.clone())
            .or_default()
            .push_back(batch);
        self.queued += 1;
    }

    /// Puts a batch back at the head of its target's queue: one that was taken by
    /// [`next_ready`](Self::next_ready) (and [`finished`](Self::finished)) but must be sent
    /// again. Batches closed after it stay behind it, so per-record order is kept.
    pub fn requeue(&mut self, batch: Batch<M>) {
        self.waiting
            .entry(batch.target.clone())
            .or_default()
            .push_front(batch);
        self.queued += 1;
    }

    /// The next batch that may be sent now, marked in flight; `None` when every slot is taken
    /// or every waiting batch must wait for an earlier one.
    pub fn next_ready(&mut self) -> Option<Batch<M>> {
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        let last = self.last_served.as_ref();
        let after_last = self
            .waiting
            .iter()
            .filter(|(target, _)| Some(*target) > last);
        let up_to_last = self
            .waiting
            .iter()
            .filter(|(target, _)| Some(*target) <= last);
        let target = after_last.chain(up_to_last).find_map(|(target, queue)| {
            let head = queue.front()?;
            let blocked = self.busy.get(target).is_some_and(|busy| {
                head.ops
                    .iter()
                    .any(|op| busy.contains_key(op.sys_id.as_str()))
            });
            (!blocked).then(|| target.clone())
        })?;
        let queue = self.waiting.get_mut(&target)?;
        let batch = queue.pop_front()?;
        if queue.is_empty() {
            self.waiting.remove(&target);
        }
        self.last_served = Some(target.clone());
        let busy = self.busy.entry(target).or_default();
        for op in &batch.ops {
            *busy.entry(op.sys_id.clone()).or_default() += 1;
        }
        self.queued -= 1;
        self.in_flight += 1;
        Some(batch)
    }

    /// A batch sent by [`next_ready`](Self::next_ready) is finished (however it ended).
    pub fn finished(&mut self, target: &Target, keys: &[String]) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(busy) = self.busy.get_mut(target) {
            for key in keys {
                if let Some(count) = busy.get_mut(key) {
                    *count -= 1;
                    if *count == 0 {
                        busy.remove(key);
                    }
                }
            }
            if busy.is_empty() {
                self.busy.remove(target);
            }
        }
    }

    /// Batches being delivered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Batches waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Batches delivered or waiting.
    pub fn outstanding(&self) -> usize {
        self.in_flight + self.queued
    }
}

#[cfg(test)]
mod tests {
    use nowstream_model::Entity;

    use super::*;
    use crate::batch::Op;
    use crate::record::Operation;
    use crate::record::tests::{TestMessage, message};

    fn batch(entity: Entity, keys: &[&str]) -> Batch<TestMessage> {
        Batch {
            target: Target {
                integration_id: "sn1".into(),
                entity,
            },
            ops: keys
                .iter()
                .map(|key| Op {
                    sys_id: (*key).into(),
                    operation: Operation::Delete,
                    message: message(entity.topic_name(), 0, None, None),
                    superseded: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn no_more_than_max_in_flight_batches_are_sent_at_once() {
        let mut dispatcher = Dispatcher::new(2);
        for key in ["a", "b", "c"] {
            dispatcher.push(batch(Entity::User, &[key]));
        }
        assert!(dispatcher.next_ready().is_some());
        assert!(dispatcher.next_ready().is_some());
        assert!(dispatcher.next_ready().is_none());
        assert_eq!((dispatcher.in_flight(), dispatcher.queued()), (2, 1));
        dispatcher.finished(&batch(Entity::User, &[]).target, &["a".into()]);
        assert!(dispatcher.next_ready().is_some());
    }

    #[test]
    fn a_batch_waits_while_an_earlier_one_holds_one_of_its_sys_ids() {
        let mut dispatcher = Dispatcher::new(10);
        dispatcher.push(batch(Entity::User, &["a", "b"]));
        dispatcher.push(batch(Entity::User, &["b", "c"]));
        dispatcher.push(batch(Entity::User, &["d"]));
        let first = dispatcher.next_ready().unwrap();
        assert!(
            dispatcher.next_ready().is_none(),
            "the second batch shares b with the first, and the third may not overtake it"
        );
        dispatcher.finished(&first.target, &first.keys());
        let second = dispatcher.next_ready().unwrap();
        assert_eq!(second.keys(), vec!["b", "c"]);
        assert_eq!(dispatcher.next_ready().unwrap().keys(), vec!["d"]);
    }

    #[test]
    fn a_requeued_batch_goes_before_the_ones_closed_after_it() {
        let mut dispatcher = Dispatcher::new(10);
        dispatcher.push(batch(Entity::User, &["a"]));
        dispatcher.push(batch(Entity::User, &["a", "b"]));
        let first = dispatcher.next_ready().unwrap();
        dispatcher.finished(&first.target, &first.keys());
        dispatcher.requeue(first);
        assert_eq!(dispatcher.queued(), 2);
        assert_eq!(dispatcher.next_ready().unwrap().keys(), vec!["a"]);
        assert!(
            dispatcher.next_ready().is_none(),
            "the later batch still waits for the requeued one"
        );
    }

    #[test]
    fn targets_take_turns() {
        let mut dispatcher = Dispatcher::new(10);
        for key in ["a", "b"] {
            dispatcher.push(batch(Entity::Incident, &[key]));
            dispatcher.push(batch(Entity::User, &[key]));
        }
        let order: Vec<Entity> = std::iter::from_fn(|| dispatcher.next_ready())
            .map(|batch| batch.target.entity)
            .collect();
        assert_eq!(
            order,
            vec![
                Entity::Incident,
                Entity::User,
                Entity::Incident,
                Entity::User
            ]
        );
    }

    #[test]
    fn other_targets_are_not_held_up_by_a_waiting_batch() {
        let mut dispatcher = Dispatcher::new(10);
        dispatcher.push(batch(Entity::User, &["a"]));
        dispatcher.push(batch(Entity::User, &["a"]));
        dispatcher.push(batch(Entity::Incident, &["a"]));
        assert_eq!(
            dispatcher.next_ready().unwrap().target.entity,
            Entity::Incident
        );
        assert_eq!(dispatcher.next_ready().unwrap().target.entity, Entity::User);
        assert!(dispatcher.next_ready().is_none());
        assert_eq!(dispatcher.outstanding(), 3);
    }
}
