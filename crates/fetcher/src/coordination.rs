//! Sharing work units between replicas through a Kafka consumer group.
//!
//! Every replica joins one group subscribed to the coordination topic. Kafka's group protocol
//! assigns each partition to exactly one live member; a replica works on the units that hash to
//! its partitions (see [`crate::units::WorkUnit::partition`]). When a replica dies, the group
//! reassigns its partitions after `session.timeout.ms`, and the new owner resumes each unit from
//! its checkpoint. No message is ever written to the coordination topic: only its partitions
//! matter.

use std::collections::BTreeSet;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use nowstream_bus::{client_config, static_membership};
use nowstream_runtime::KafkaConfig;

use crate::FetchError;

/// Publishes the partitions this replica currently owns.
struct AssignmentContext {
    owned: watch::Sender<BTreeSet<i32>>,
}

impl ClientContext for AssignmentContext {}

impl ConsumerContext for AssignmentContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Units of revoked partitions must stop before anyone else starts them; publishing the
        // shrunk set here (before the revocation completes) gives them the head start.
        if let Rebalance::Revoke(revoked) = rebalance {
            let revoked: BTreeSet<i32> = revoked.elements().iter().map(|e| e.partition()).collect();
            self.owned
                .send_modify(|owned| owned.retain(|partition| !revoked.contains(partition)));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                let assigned: Vec<i32> =
                    assigned.elements().iter().map(|e| e.partition()).collect();
                self.owned.send_modify(|owned| owned.extend(assigned));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(%error, "coordination group rebalance error; pausing all units");
                self.owned.send_modify(BTreeSet::clear);
            }
        }
    }
}

/// Membership in the fetcher group. Dropping it (or cancelling) leaves the group, which hands
/// this replica's units to the others at once instead of after the session timeout.
#[derive(Debug)]
pub struct Coordinator {
    owned: watch::Receiver<BTreeSet<i32>>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Coordinator {
    /// Joins `group` on `topic` and keeps the membership alive in a background task.
    pub fn join(kafka: &KafkaConfig, group: &str, topic: &str) -> Result<Self, FetchError> {
        Self::join_as(kafka, group, None, topic)
    }

    /// Like [`Coordinator::join`]; with `group_instance_id`, as a static member (see
    /// [`nowstream_bus::static_membership`]).
    pub fn join_as(
        kafka: &KafkaConfig,
        group: &str,
        group_instance_id: Option<&str>,
        topic: &str,
    ) -> Result<Self, FetchError> {
        let (sender, owned) = watch::channel(BTreeSet::new());
        let mut config = client_config(kafka);
        config.set("group.id", group);
        config.set("enable.auto.commit", "false");
        for (key, value) in static_membership(group_instance_id) {
            config.set(key, value);
        }
        let consumer: StreamConsumer<AssignmentContext> = config
            .create_with_context(AssignmentContext { owned: sender })
            .map_err(|source| FetchError::Coordination {
                group: group.to_owned(),
                reason: format!("cannot create the group consumer: {source}"),
            })?;
        consumer
            .subscribe(&[topic])
            .map_err(|source| FetchError::Coordination {
                group: group.to_owned(),
                reason: format!("cannot subscribe to {topic}: {source}"),
            })?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep_membership(consumer, stop.clone(), group.to_owned()));
        Ok(Self {
            owned,
            stop,
            task: Some(task),
        })
    }

    /// The partitions this replica owns; changes on every rebalance.
    pub fn owned(&self) -> watch::Receiver<BTreeSet<i32>> {
        self.owned.clone()
    }

    /// Leaves the group and waits until the membership task ended.
    pub async fn leave(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Polls the group consumer: rebalance callbacks and heartbeats are served from the poll.
async fn keep_membership(
    consumer: StreamConsumer<AssignmentContext>,
    stop: CancellationToken,
    group: String,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            received = consumer.recv() => {
                if let Err(error) = received {
                    tracing::warn!(%group, %error, "coordination consumer error");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }
    // Leaving explicitly lets the group rebalance now rather than after the session timeout.
    // Closing blocks until the broker confirmed the leave: keep it off the async workers.
    consumer.unsubscribe();
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
}
