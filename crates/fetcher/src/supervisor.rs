//! The fetcher process: topics, clients, group membership, and the units this replica owns.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use nowstream_bus::{Producer, TopicSpec, ensure_topics, max_message_bytes};
use nowstream_model::ExclusionPolicy;
use nowstream_model::TopicNames;
use nowstream_runtime::{Config, Health};

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

/// How long units get to finish their current page on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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
    let readiness = health.component("fetcher");
    let settings = config.fetcher.clone();
    let topics = TopicNames::new(config.kafka.topic_prefix.clone()).map_err(|error| {
        FetchError::Integration {
            integration_id: "*".into(),
            reason: format!("kafka.topic_prefix: {error}"),
        }
    })?;
    let coordination_topic = format!("{}{COORDINATION_TOPIC}", config.kafka.topic_prefix);
    ensure_topics(
        &config.kafka,
        &topic_specs(&config, &topics, &coordination_topic)?,
    )
    .await?;

    let producer = Producer::new(&config.kafka)?;
    let checkpoints =
        CheckpointStore::new(config.kafka.clone(), producer.clone(), topics.checkpoints());
    let dead_letters = DeadLetters::new(topics.fetcher_dlq(), max_message_bytes(&config.kafka));
    let mut integrations = HashMap::new();
    for integration in &config.integrations {
        let client = instance::client(integration, &settings)?;
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
            }),
        );
    }
    let all_units: Vec<WorkUnit> = config
        .integrations
        .iter()
        .flat_map(|integration| WorkUnit::all_for(&integration.id))
        .collect();

    let coordinator = Coordinator::join_as(
        &config.kafka,
        &settings.group_id,
        settings.group_instance_id.as_deref(),
        &coordination_topic,
    )?;
    let mut owned = coordinator.owned();
    readiness.set_ready();
    let states = UnitStates::new(&health);

    // Errors after which the whole fetcher stops: credentials refused everywhere, or a unit
    // fenced by another replica (`FetchError::Fenced`).
    let (rejected, mut credentials_rejected) = mpsc::unbounded_channel::<FetchError>();
    let mut running: HashMap<WorkUnit, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    let mut outcome = Ok(());
    loop {
        let partitions: BTreeSet<i32> = owned.borrow_and_update().clone();
        let wanted: BTreeSet<WorkUnit> = all_units
            .iter()
            .filter(|unit| partitions.contains(&unit.partition(settings.coordination_partitions)))
            .cloned()
            .collect();
        running.retain(|unit, (cancel, _)| {
            let keep = wanted.contains(unit);
            if !keep {
                tracing::info!(%unit, "unit moved to another replica; stopping it");
                cancel.cancel();
                states.remove(unit);
            }
            keep
        });
        for unit in wanted {
            if running.contains_key(&unit) {
                continue;
            }
            let Some(integration) = integrations.get(&unit.integration_id).cloned() else {
                continue;
            };
            let writer = if settings.exactly_once {
                let id = format!("{}-{unit}", settings.group_id);
                PageWriter::transactional(&config.kafka, &id).await?
            } else {
                PageWriter::AtLeastOnce(producer.clone())
            };
            let env = UnitEnv {
                integration,
                topics: topics.clone(),
                checkpoints: checkpoints.clone(),
                writer,
                dead_letters: dead_letters.clone(),
                settings: settings.clone(),
                progress: states.run_started(&unit),
            };
            let cancel = shutdown.child_token();
            let task = tokio::spawn(supervise_unit(
                unit.clone(),
                env,
                cancel.clone(),
                states.clone(),
                rejected.clone(),
            ));
            running.insert(unit, (cancel, task));
        }
        metrics::units_owned(running.len());

        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = owned.changed() => {
                if changed.is_err() {
                    outcome = Err(FetchError::Coordination {
                        group: settings.group_id.clone(),
                        reason: "membership task ended".into(),
                    });
                    break;
                }
            }
            Some(error) = credentials_rejected.recv() => {
                if matches!(error, FetchError::Fenced { .. }) {
                    tracing::error!(%error, "stopping the fetcher: it was fenced, so another replica took over its units while it was paused or cut off; restarted, it rejoins the group");
                } else {
                    tracing::error!(%error, "stopping the fetcher: ServiceNow refused the credentials of every unit before any page was read; this needs a configuration fix");
                }
                outcome = Err(error);
                break;
            }
        }
    }

    readiness.set_not_ready("shutting down");
    for (unit, (cancel, _)) in &running {
        cancel.cancel();
        states.remove(unit);
    }
    let tasks = running.into_values().map(|(_, task)| task);
    if tokio::time::timeout(SHUTDOWN_GRACE, futures::future::join_all(tasks))
        .await
        .is_err()
    {
        tracing::warn!(
            "units did not stop within {SHUTDOWN_GRACE:?}; their last page is fetched again on restart"
        );
    }
    coordinator.leave().await;
    let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
    outcome
}

/// Runs a unit until `cancel` fires, starting it over from its checkpoint whenever a run
/// fails, panics or ends, after a pause that grows while the failures go on.
async fn supervise_unit(
    unit: WorkUnit,
    env: UnitEnv,
    cancel: CancellationToken,
    states: UnitStates,
    credentials_rejected: mpsc::UnboundedSender<FetchError>,
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
                    let _ = credentials_rejected.send(error);
                    return Next::Stop;
                }
            }
            Exit::Failed(UnitFailure::Retry(error @ FetchError::Fenced { .. })) => {
                // Another replica owns the unit now: retrying would fence it back and publish
                // from this replica's stale checkpoint. The whole replica stops, since its view
                // of which units it owns is out of date; restarted, it joins the group afresh.
                let _ = credentials_rejected.send(error);
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
        let name = topics.raw(table).map_err(|error| FetchError::Integration {
            integration_id: "*".into(),
            reason: format!("raw topic for {table}: {error}"),
        })?;
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
