//! The fetcher process: topics, clients, group membership, and the units this replica owns.
//!
//! [`run`] sets the process up and then loops on one question, answered by `Supervisor`:
//! which units should run here (those of the coordination partitions this replica owns) and
//! which do? Every change of ownership is one `Supervisor::reconcile` step that stops the
//! units that moved away and starts those that arrived.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use nowstream_bus::{Producer, TopicSpec, ensure_topics, max_message_bytes};
use nowstream_model::ExclusionPolicy;
use nowstream_model::TopicNames;
use nowstream_model::table_api::query::EncodedQuery;
use nowstream_runtime::{Config, FetcherConfig, Health, KafkaConfig};

use crate::backoff::Backoff;
use crate::checkpoints::CheckpointStore;
use crate::coordination::Coordinator;
use crate::dead_letter::DeadLetters;
use crate::failure::{Denial, UnitFailure};
use crate::supervision::{Exit, Next, supervise};
use crate::unit::{Integration, UnitEnv, run_unit};
use crate::unit_state::UnitStates;
use crate::units::{RECORD_TABLES, WorkUnit};
use crate::writer::PageWriter;
use crate::{FetchError, instance, metrics};

/// The coordination topic's name (after the prefix).
pub const COORDINATION_TOPIC: &str = "servicenow.fetcher.coordination";

/// How long the producer may take to deliver what is still queued once every unit stopped.
const PRODUCER_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the fetcher until `shutdown` fires (Ok), or until every unit of this replica was
/// refused its credentials before any of them read a page (wrong credentials: the error).
///
/// Any other failure stays with its unit: the unit backs off and starts again (see
/// [`crate::unit_state`] for what `/readyz` and the metrics show meanwhile).
pub async fn run(
    config: Config,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), FetchError> {
    metrics::describe();
    let settings = config.fetcher.clone();
    let problems = settings.problems();
    if !problems.is_empty() {
        return Err(FetchError::InvalidConfig { problems });
    }
    let readiness = health.component("fetcher");
    let topics = TopicNames::new(config.kafka.topic_prefix.clone())?;
    let coordination_topic = format!("{}{COORDINATION_TOPIC}", config.kafka.topic_prefix);
    ensure_topics(
        &config.kafka,
        &topic_specs(&config, &topics, &coordination_topic)?,
    )
    .await?;

    let producer = Producer::new(&config.kafka)?;
    let (stops, mut stop_requests) = mpsc::unbounded_channel::<FetchError>();
    let mut supervisor = Supervisor {
        all_units: config
            .integrations
            .iter()
            .flat_map(|integration| WorkUnit::all_for(&integration.id))
            .collect(),
        integrations: integrations(&config)?,
        checkpoints: CheckpointStore::new(
            config.kafka.clone(),
            producer.clone(),
            topics.checkpoints(),
        ),
        dead_letters: DeadLetters::new(topics.fetcher_dlq(), max_message_bytes(&config.kafka)),
        topics,
        producer: producer.clone(),
        kafka: config.kafka.clone(),
        settings: settings.clone(),
        states: UnitStates::new(&health),
        running: HashMap::new(),
        stops,
        shutdown: shutdown.clone(),
    };

    let coordinator = Coordinator::join_as(
        &config.kafka,
        &settings.group_id,
        settings.group_instance_id.as_deref(),
        &coordination_topic,
    )?;
    let mut owned = coordinator.owned();
    readiness.set_ready();

    let outcome = loop {
        let partitions: BTreeSet<i32> = owned.borrow_and_update().clone();
        if let Err(error) = supervisor.reconcile(&partitions).await {
            break Err(error);
        }

        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            changed = owned.changed() => {
                if changed.is_err() {
                    break Err(FetchError::Coordination {
                        group: settings.group_id.clone(),
                        reason: "membership task ended".into(),
                    });
                }
            }
            Some(error) = stop_requests.recv() => {
                if matches!(error, FetchError::Fenced { .. }) {
                    tracing::error!(%error, "stopping the fetcher: it was fenced, so another replica took over its units while it was paused or cut off; restarted, it rejoins the group");
                } else {
                    tracing::error!(%error, "stopping the fetcher: ServiceNow refused the credentials of every unit before any page was read; this needs a configuration fix");
                }
                break Err(error);
            }
        }
    };

    readiness.set_not_ready("shutting down");
    supervisor.stop_all(settings.shutdown_grace).await;
    coordinator.leave().await;
    let _ = tokio::task::spawn_blocking(move || producer.flush(PRODUCER_FLUSH_TIMEOUT)).await;
    outcome
}

/// A ServiceNow client and exclusion policies for each configured integration, by id.
fn integrations(config: &Config) -> Result<HashMap<String, Arc<Integration>>, FetchError> {
    let mut integrations = HashMap::new();
    for integration in &config.integrations {
        let client = instance::client(integration, &config.fetcher)?;
        let excluded_at_source = if integration.exclude_at_source {
            Some(
                ExclusionPolicy::new(&integration.exclude_fields).map_err(|error| {
                    FetchError::Integration {
                        integration_id: integration.id.clone(),
                        reason: format!("exclude_fields: {error}"),
                    }
                })?,
            )
        } else {
            None
        };
        let excluded = ExclusionPolicy::new(&integration.exclude_fields).map_err(|error| {
            FetchError::Integration {
                integration_id: integration.id.clone(),
                reason: format!("exclude_fields: {error}"),
            }
        })?;
        integrations.insert(
            integration.id.clone(),
            Arc::new(Integration {
                id: integration.id.clone(),
                instance_url: integration.url.clone(),
                client,
                excluded_at_source,
                excluded,
                audit_access: Default::default(),
                filters: filters(integration)?,
            }),
        );
    }
    Ok(integrations)
}

/// The integration's configured filters, parsed (the config loader has already refused the
/// ones that do not parse or that order).
fn filters(
    integration: &nowstream_runtime::IntegrationConfig,
) -> Result<BTreeMap<&'static str, EncodedQuery>, FetchError> {
    integration
        .metadata
        .filters()
        .map(|(key, table, query)| {
            EncodedQuery::parse(query)
                .map(|parsed| (table, parsed))
                .map_err(|error| FetchError::Integration {
                    integration_id: integration.id.clone(),
                    reason: format!("metadata.{key}: {error}"),
                })
        })
        .collect()
}

/// The units this replica should run against the units it runs, and what every unit it
/// starts shares (clients, topics, the producer).
struct Supervisor {
    /// Every unit of every integration: what the consumer group shares out.
    all_units: Vec<WorkUnit>,
    integrations: HashMap<String, Arc<Integration>>,
    topics: TopicNames,
    checkpoints: CheckpointStore,
    dead_letters: DeadLetters,
    /// Shared by the units without `exactly_once`; each unit with it has its own.
    producer: Producer,
    kafka: KafkaConfig,
    settings: FetcherConfig,
    states: UnitStates,
    running: HashMap<WorkUnit, RunningUnit>,
    /// Where a unit asks for the whole fetcher to stop: credentials refused everywhere, or a
    /// unit fenced by another replica (`FetchError::Fenced`).
    stops: mpsc::UnboundedSender<FetchError>,
    /// The process's shutdown; each unit runs under a child of it.
    shutdown: CancellationToken,
}

/// A unit's supervising task and the token that stops it.
struct RunningUnit {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// The units that belong on this replica while it owns `partitions`.
    fn desired(&self, partitions: &BTreeSet<i32>) -> BTreeSet<WorkUnit> {
        self.all_units
            .iter()
            .filter(|unit| {
                partitions.contains(&unit.partition(self.settings.coordination_partitions))
            })
            .cloned()
            .collect()
    }

    /// One step towards running exactly the units of `partitions`: those that moved to another
    /// replica are stopped, those that arrived are started.
    async fn reconcile(&mut self, partitions: &BTreeSet<i32>) -> Result<(), FetchError> {
        let desired = self.desired(partitions);
        self.stop_departed(&desired);
        for unit in desired {
            if !self.running.contains_key(&unit) {
                self.start(unit).await?;
            }
        }
        metrics::units_owned(self.running.len());
        Ok(())
    }

    fn stop_departed(&mut self, desired: &BTreeSet<WorkUnit>) {
        let states = &self.states;
        self.running.retain(|unit, running| {
            let keep = desired.contains(unit);
            if !keep {
                tracing::info!(%unit, "unit moved to another replica; stopping it");
                running.cancel.cancel();
                states.remove(unit);
            }
            keep
        });
    }

    async fn start(&mut self, unit: WorkUnit) -> Result<(), FetchError> {
        let Some(integration) = self.integrations.get(&unit.integration_id).cloned() else {
            return Ok(());
        };
        let writer = if self.settings.exactly_once {
            let id = format!("{}-{unit}", self.settings.group_id);
            PageWriter::transactional(&self.kafka, &id).await?
        } else {
            PageWriter::AtLeastOnce(self.producer.clone())
        };
        let env = UnitEnv {
            integration,
            topics: self.topics.clone(),
            checkpoints: self.checkpoints.clone(),
            writer,
            dead_letters: self.dead_letters.clone(),
            settings: self.settings.clone(),
            progress: self.states.run_started(&unit),
        };
        let cancel = self.shutdown.child_token();
        let task = tokio::spawn(supervise_unit(
            unit.clone(),
            env,
            cancel.clone(),
            self.states.clone(),
            self.stops.clone(),
        ));
        self.running.insert(unit, RunningUnit { cancel, task });
        Ok(())
    }

    /// Stops every unit and waits up to `grace` for them to finish their current page.
    async fn stop_all(self, grace: Duration) {
        for (unit, running) in &self.running {
            running.cancel.cancel();
            self.states.remove(unit);
        }
        let tasks = self.running.into_values().map(|running| running.task);
        if tokio::time::timeout(grace, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!(
                "units did not stop within {grace:?}; their last page is fetched again on restart"
            );
        }
    }
}

/// Runs a unit until `cancel` fires, starting it over from its checkpoint whenever a run
/// fails, panics or ends, after a pause that grows while the failures go on.
async fn supervise_unit(
    unit: WorkUnit,
    env: UnitEnv,
    cancel: CancellationToken,
    states: UnitStates,
    stops: mpsc::UnboundedSender<FetchError>,
) {
    let backoff = Backoff::new(env.settings.unit_backoff_min, env.settings.unit_backoff_max);
    let mut failures_in_a_row = 0u32;
    let mut first_run = true;
    let start = || {
        let mut env = env.clone();
        // A unit cancelled during its pause (moved away) is not registered again.
        if !std::mem::take(&mut first_run) && !cancel.is_cancelled() {
            env.progress = states.run_started(&unit);
        }
        run_unit(unit.clone(), env, cancel.clone())
    };
    let decide = |exit: Exit<UnitFailure>| {
        let (kind, denial) = match &exit {
            Exit::Failed(UnitFailure::Denied { denial, .. }) => (denial.label(), Some(*denial)),
            Exit::Failed(UnitFailure::Retry(_)) => ("retry", None),
            Exit::Panicked(_) => ("panicked", None),
            Exit::Ended => ("ended", None),
        };
        metrics::unit_error(&unit.integration_id, unit.source_table(), kind);
        // A run that read pages worked for a while: the pauses start small again.
        failures_in_a_row = if states.run_progressed(&unit) {
            1
        } else {
            failures_in_a_row.saturating_add(1)
        };
        let pause = backoff.pause(failures_in_a_row);
        let reason = match &exit {
            Exit::Failed(UnitFailure::Denied { denial, .. }) => denial.explanation().to_owned(),
            Exit::Failed(UnitFailure::Retry(error)) => error.to_string(),
            Exit::Panicked(_) => "the unit's task panicked".to_owned(),
            Exit::Ended => "the unit's task ended without being stopped".to_owned(),
        };
        states.run_ended(
            &unit,
            denial,
            &format!("{reason}; next try in {}s", pause.as_secs()),
        );
        match exit {
            Exit::Failed(UnitFailure::Denied { denial, error }) => {
                tracing::error!(%unit, %error, refusal = %denial, ?pause, "ServiceNow refused the unit; it backs off and tries again, the other units go on");
                if denial == Denial::Unauthorized && states.credentials_rejected_everywhere() {
                    let _ = stops.send(error);
                    return Next::Stop;
                }
            }
            Exit::Failed(UnitFailure::Retry(error @ FetchError::Fenced { .. })) => {
                // Another replica owns the unit now: retrying would fence it back and publish
                // from this replica's stale checkpoint. The whole replica stops, since its view
                // of which units it owns is out of date; restarted, it joins the group afresh.
                let _ = stops.send(error);
                return Next::Stop;
            }
            Exit::Failed(UnitFailure::Retry(error)) => {
                tracing::warn!(%unit, %error, ?pause, "unit failed; starting over from its checkpoint after the pause");
            }
            Exit::Panicked(message) => {
                tracing::error!(%unit, panic = %message, ?pause, "unit task panicked; starting it over from its checkpoint after the pause");
            }
            Exit::Ended => {
                tracing::error!(%unit, ?pause, "unit task ended without being stopped; starting it over after the pause");
            }
        }
        metrics::unit_restarted(&unit.integration_id, unit.source_table());
        Next::RestartAfter(pause)
    };
    supervise(start, cancel.clone(), decide).await;
}

fn topic_specs(
    config: &Config,
    topics: &TopicNames,
    coordination_topic: &str,
) -> Result<Vec<TopicSpec>, FetchError> {
    let settings = &config.fetcher;
    let mut specs = Vec::new();
    for table in RECORD_TABLES {
        let name = topics.raw(table)?;
        // Compacted: the newest version of every record stays available for replays, and
        // storage is bounded by the number of records, not by their history.
        specs.push(
            TopicSpec::compacted(name, settings.raw_topic_partitions)
                .with_replication_factor(settings.replication_factor),
        );
    }
    specs.push(
        TopicSpec::compacted(topics.checkpoints(), 3)
            .with_replication_factor(settings.replication_factor),
    );
    // Dead letters are kept `kafka.dlq_retention` (14 days by default): long enough to
    // notice, inspect and re-fetch them; they are never needed to resume.
    specs.push(
        TopicSpec::dead_letters(topics.fetcher_dlq(), 3)
            .with_replication_factor(settings.replication_factor),
    );
    specs.push(
        TopicSpec::new(coordination_topic, settings.coordination_partitions)
            .with_replication_factor(settings.replication_factor),
    );
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no `kafka.bootstrap_servers`, anything that reached Kafka would fail differently.
    async fn run_without_kafka(config: Config) -> FetchError {
        run(config, Health::new(), CancellationToken::new())
            .await
            .expect_err("the fetcher must refuse this configuration")
    }

    #[tokio::test]
    async fn a_broken_fetcher_section_stops_the_fetcher_before_it_reaches_kafka() {
        let mut config = Config::default();
        config.fetcher.page_size = 5;
        match run_without_kafka(config).await {
            FetchError::InvalidConfig { problems } => {
                let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
                assert_eq!(paths, vec!["fetcher.page_size"]);
            }
            other => panic!("expected the [fetcher] problems, got {other}"),
        }
    }

    #[tokio::test]
    async fn an_illegal_topic_prefix_is_reported_as_such_not_as_an_integration() {
        let mut config = Config::default();
        config.kafka.topic_prefix = "acme prod.".to_owned();
        let error = run_without_kafka(config).await;
        assert!(matches!(error, FetchError::TopicPrefix(_)), "{error}");
        assert!(
            error.to_string().starts_with("kafka.topic_prefix: "),
            "{error}"
        );
    }
}
