//! Deletion detection by reconciliation: for an integration whose user may not read
//! `sys_audit_delete` (SEI's documented roles do not grant it on a default instance), or with
//! `deletion_detection = "reconcile"`.
//!
//! Every `reconcile_interval`, for each table of [`DELETION_TABLES`]:
//!
//! 1. take the high watermarks of `servicenow.raw.<table>`;
//! 2. list the table's sys_ids with a keys-only scan (`sysparm_fields=sys_id`, see
//!    [`live_keys`]);
//! 3. read the raw topic up to those watermarks ([`published`]): every key of the integration
//!    whose newest message is an upsert and that the scan did not list is a candidate;
//! 4. ask ServiceNow for the candidates directly by sys_id; those still returned stay;
//! 5. publish a DELETE raw record for each of the rest, the same shape `sys_audit_delete`
//!    rows give, then a checkpoint (`<integration>:reconcile:<table>`) saying when the round
//!    started, so a restart waits out the interval instead of starting over.
//!
//! Step 1 before step 2 is what makes a record created during the round safe: it is published
//! after the watermarks, so it is never a candidate. Step 4 guards against everything else
//! that could make the scan miss a live record (a page withheld once, an instance ordering
//! sys_ids in its own collation).
//!
//! Memory: 16 bytes per sys_id of the range being reconciled plus the candidates; a table with
//! more than `reconcile_max_keys` rows is done in sys_id ranges ([`ranges`]), each with its own
//! scan and raw-topic read.
//!
//! A record that row ACLs hide from the integration user looks deleted to it, and is deleted
//! downstream like one: the user could not fetch its changes either.

pub mod live_keys;
pub mod published;
pub mod ranges;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tokio_util::sync::CancellationToken;

use nowstream_model::table_api::tables;
use nowstream_model::{AvroRecord, Checkpoint, RawRecord, RecordOp};
use nowstream_runtime::DeletionDetection;
use nowstream_servicenow::client::ClientError;

use crate::unit::{UnitEnv, UnitFailure, encode};
use crate::units::{DELETION_TABLES, WorkUnit};
use crate::writer::Encoded;
use crate::{FetchError, metrics};

use live_keys::KeyScanError;
use published::Published;
use ranges::SysIdRange;

/// Shortest interval between two rounds of one table, whatever the configuration says.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Deletes per Kafka write.
const WRITE_BATCH: usize = 500;

/// What the fetcher learnt about an integration's access to `sys_audit_delete`, shared by its
/// units for the life of the process.
#[derive(Debug, Default)]
pub struct AuditAccess {
    forbidden: AtomicBool,
}

impl AuditAccess {
    /// Whether reading `sys_audit_delete` was refused with HTTP 403.
    pub fn is_forbidden(&self) -> bool {
        self.forbidden.load(Ordering::Acquire)
    }

    /// Records the refusal; true only the first time, so the switch is announced once.
    pub fn forbid(&self) -> bool {
        !self.forbidden.swap(true, Ordering::AcqRel)
    }
}

/// Whether `env`'s deletions unit reconciles instead of reading `sys_audit_delete`.
pub fn reconciles(env: &UnitEnv) -> bool {
    env.settings.deletion_detection == DeletionDetection::Reconcile
        || env.integration.audit_access.is_forbidden()
}

/// Whether `failure` is ServiceNow refusing `sys_audit_delete` with 403 (not 401: wrong
/// credentials are no reason to change how deletions are found).
pub fn is_audit_forbidden(failure: &UnitFailure) -> bool {
    failure.is_forbidden()
        && matches!(
            failure.error(),
            FetchError::ServiceNow { table, .. } if table == tables::SYS_AUDIT_DELETE
        )
}

/// Turns audit-based deletes off for the unit's integration, with one warning per process.
pub fn switch_over(unit: &WorkUnit, env: &UnitEnv) {
    if env.integration.audit_access.forbid() {
        tracing::warn!(
            integration = %unit.integration_id,
            interval = ?env.settings.reconcile_interval,
            "the integration user may not read sys_audit_delete (HTTP 403): audit-based \
             deletes are off for this integration and deletions are found by reconciliation \
             instead (a keys-only scan of each table every reconcile_interval); grant the user \
             read access to sys_audit_delete for deletes within a poll"
        );
    }
}

/// `<integration>:reconcile:<table>`: the checkpoint key of a table's rounds.
pub fn checkpoint_key(integration_id: &str, table: &str) -> String {
    format!("{integration_id}:reconcile:{table}")
}

/// Reconciles every deletion table of `unit`'s integration, round after round, until `cancel`
/// fires (`Ok`) or a round fails (`Retry`: the unit starts over and reconciles again).
pub async fn run(
    unit: &WorkUnit,
    env: &UnitEnv,
    cancel: &CancellationToken,
) -> Result<(), UnitFailure> {
    let interval = env.settings.reconcile_interval.max(MIN_INTERVAL);
    metrics::deletion_detection(&unit.integration_id, "reconcile");
    tracing::info!(unit = %unit, interval = ?interval, "detecting deletions by reconciliation");
    loop {
        let Some(next) = due_rounds(unit, env, &DELETION_TABLES, cancel).await? else {
            return Ok(());
        };
        let wait = (next - Utc::now())
            .to_std()
            .unwrap_or_default()
            .max(MIN_INTERVAL);
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Runs the round of each of `tables` that is due (its interval since the last round, saved as
/// a checkpoint, has passed); returns when the next one falls due, or `None` when cancelled.
pub async fn due_rounds(
    unit: &WorkUnit,
    env: &UnitEnv,
    tables: &[&'static str],
    cancel: &CancellationToken,
) -> Result<Option<DateTime<Utc>>, UnitFailure> {
    let interval = env.settings.reconcile_interval.max(MIN_INTERVAL);
    let step = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(1));
    let saved = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Ok(None),
        saved = env.checkpoints.load_all() => saved.map_err(UnitFailure::Retry)?,
    };
    let mut next = Utc::now() + step;
    for &table in tables {
        let previous = saved.get(&checkpoint_key(&unit.integration_id, table));
        let due = previous.map_or(DateTime::<Utc>::MIN_UTC, |c| c.last_updated_on + step);
        if due > Utc::now() {
            next = next.min(due);
            continue;
        }
        let round = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(None),
            round = reconcile_table(env, table, previous, cancel) => round,
        };
        match round {
            Ok(_) => next = next.min(Utc::now() + step),
            Err(_) if cancel.is_cancelled() => return Ok(None),
            Err(error) => {
                metrics::unit_error(&unit.integration_id, table, "reconcile");
                return Err(UnitFailure::Retry(error));
            }
        }
    }
    Ok(Some(next))
}

/// The tables whose records the integration filters (`metadata.incident_query`,
/// `change_request_query`). When deletions come from `sys_audit_delete`, these are still
/// reconciled every `reconcile_interval`: a record that stops matching its filter is deleted
/// in no audit table, and only a keys-only scan with the filter sees it leave.
pub fn filtered_tables(env: &UnitEnv) -> Vec<&'static str> {
    DELETION_TABLES
        .into_iter()
        .filter(|table| env.integration.filter(table).is_some())
        .collect()
}

/// One round over `table`; returns how many deletes it published.
async fn reconcile_table(
    env: &UnitEnv,
    table: &'static str,
    previous: Option<&Checkpoint>,
    cancel: &CancellationToken,
) -> Result<usize, FetchError> {
    let integration = &env.integration;
    let started = Utc::now().trunc_subsecs(0);
    let service_now = |source: ClientError| FetchError::ServiceNow {
        integration_id: integration.id.clone(),
        table: table.to_owned(),
        source: Box::new(source),
    };
    let key_scan = |error: KeyScanError| match error {
        KeyScanError::ServiceNow(source) => service_now(source),
        other => FetchError::Reconciliation {
            what: format!("integration {} table {table}", integration.id),
            reason: other.to_string(),
        },
    };
    let topic = env
        .topics
        .raw(table)
        .map_err(|error| FetchError::Integration {
            integration_id: integration.id.clone(),
            reason: format!("no raw topic for table {table}: {error}"),
        })?;
    let kafka = env.checkpoints.kafka();
    let client = &integration.client;
    let filter = integration.filter(table);
    let rows = client
        .count(table, &live_keys::with_filter(&[], filter, ""))
        .await
        .map_err(service_now)?;
    let ranges = SysIdRange::split(rows, env.settings.reconcile_max_keys);
    let in_progress = previous.cloned().unwrap_or_else(|| Checkpoint {
        integration_id: integration.id.clone(),
        table: table.to_owned(),
        last_updated_on: DateTime::<Utc>::UNIX_EPOCH,
        last_sys_id: String::new(),
        updated_at: started,
        records_total: 0,
        deletes_last_created_on: None,
        deletes_last_sys_id: None,
    });
    let (mut listed, mut deleted) = (0usize, 0usize);
    for range in &ranges {
        let marks = published::watermarks(kafka, &topic).await?;
        let live = live_keys::scan(client, table, range, filter, client.page_size(), cancel)
            .await
            .map_err(key_scan)?;
        listed += live.len();
        let missing = published::missing_from(
            kafka,
            &topic,
            marks,
            &integration.id,
            range.clone(),
            Arc::new(live),
            cancel.clone(),
        )
        .await?;
        if missing.is_empty() {
            continue;
        }
        let gone = confirm_gone(env, table, missing, cancel)
            .await
            .map_err(key_scan)?;
        for batch in gone.chunks(WRITE_BATCH) {
            let now = Utc::now();
            let records: Vec<RawRecord> = batch
                .iter()
                .map(|(sys_id, published)| deletion(env, table, sys_id, published, now))
                .collect();
            let encoded = records
                .iter()
                .map(|raw| encode(env, raw))
                .collect::<Result<Vec<_>, _>>()?;
            env.writer
                .write(&encoded, &checkpoint_record(env, &in_progress)?)
                .await?;
            for raw in &records {
                tracing::info!(integration = %integration.id, %table, sys_id = %raw.sys_id, "deleted in ServiceNow (found by reconciliation)");
                metrics::record_published(&integration.id, table, raw.op.symbol());
            }
            deleted += records.len();
        }
    }
    let done = Checkpoint {
        last_updated_on: started,
        updated_at: Utc::now(),
        records_total: in_progress.records_total + deleted as i64,
        ..in_progress
    };
    env.writer
        .write(&[], &checkpoint_record(env, &done)?)
        .await?;
    metrics::reconcile_round(&integration.id, table, listed, deleted);
    tracing::info!(
        integration = %integration.id,
        %table,
        listed,
        deleted,
        ranges = ranges.len(),
        "reconciliation round complete"
    );
    Ok(deleted)
}

/// The candidates ServiceNow no longer returns when asked for them by sys_id, sorted.
async fn confirm_gone(
    env: &UnitEnv,
    table: &str,
    missing: HashMap<String, Published>,
    cancel: &CancellationToken,
) -> Result<Vec<(String, Published)>, KeyScanError> {
    let mut candidates: Vec<(String, Published)> = missing.into_iter().collect();
    candidates.sort_by(|a, b| a.0.cmp(&b.0));
    let ids: Vec<String> = candidates.iter().map(|(id, _)| id.clone()).collect();
    let filter = env.integration.filter(table);
    let present =
        live_keys::still_present(&env.integration.client, table, &ids, filter, cancel).await?;
    if !present.is_empty() {
        tracing::debug!(%table, count = present.len(), "candidates still present when asked directly; kept");
    }
    candidates.retain(|(id, _)| !present.contains(id));
    Ok(candidates)
}

/// A DELETE raw record like the ones `sys_audit_delete` rows give. Its version is the time the
/// deletion was found, and never earlier than one second after the newest version published,
/// so that it supersedes that version even when this host's clock is behind ServiceNow's.
fn deletion(
    env: &UnitEnv,
    table: &str,
    sys_id: &str,
    published: &Published,
    now: DateTime<Utc>,
) -> RawRecord {
    let after_last = published.sys_updated_on + chrono::Duration::seconds(1);
    RawRecord {
        integration_id: env.integration.id.clone(),
        table: table.to_owned(),
        sys_id: sys_id.to_owned(),
        sys_updated_on: now.trunc_subsecs(0).max(after_last),
        sys_mod_count: None,
        op: RecordOp::Delete,
        fetched_at: now,
        instance_url: env.integration.instance_url.clone(),
        payload: None,
    }
}

fn checkpoint_record(env: &UnitEnv, checkpoint: &Checkpoint) -> Result<Encoded, FetchError> {
    let key = checkpoint_key(&checkpoint.integration_id, &checkpoint.table);
    Ok(Encoded {
        topic: env.checkpoints.topic().to_owned(),
        value: checkpoint.encode().map_err(|source| FetchError::Encode {
            what: format!("checkpoint {key}"),
            source,
        })?,
        key,
    })
}
