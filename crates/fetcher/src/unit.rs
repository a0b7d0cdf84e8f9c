//! Running one work unit: backfill, then poll forever, checkpointing after every page.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use nowstream_model::ExclusionPolicy;
use nowstream_model::keys::record_key;
use nowstream_model::table_api::query::EncodedQuery;
use nowstream_model::table_api::stored_value;
use nowstream_model::{AvroRecord, Checkpoint, RawRecord, TopicNames};
use nowstream_runtime::FetcherConfig;
use nowstream_servicenow::client::{Client, Cursor, ScanPage, ScanRequest, ScanStart};
use nowstream_servicenow::row::{Row, RowError};

use crate::checkpoints::CheckpointStore;
use crate::dead_letter::{DeadLetters, Letter, Source};
use crate::failure::classify;
use crate::fields;
use crate::raw::{self, Origin};
use crate::reconcile;
use crate::slices;
use crate::unit_state::UnitProgress;
use crate::units::{UnitKind, WorkUnit};
use crate::writer::{Encoded, Lettered, PageWriter, Refusals};
use crate::{FetchError, metrics};

/// What one integration's units share.
#[derive(Debug)]
pub struct Integration {
    pub id: String,
    pub instance_url: String,
    pub client: Client,
    /// Set when the integration excludes fields at the source (`exclude_at_source`): those
    /// fields are left out of `sysparm_fields`, so their values never reach Kafka.
    pub excluded_at_source: Option<ExclusionPolicy>,
    /// The integration's `exclude_fields`, whatever `exclude_at_source` says: removed from
    /// every dead letter, since the DLQ never carries excluded values.
    pub excluded: ExclusionPolicy,
    /// Whether the user may read `sys_audit_delete` (see [`reconcile`]).
    pub audit_access: reconcile::AuditAccess,
    /// The integration's `metadata.incident_query` / `change_request_query`, by table: ANDed
    /// into every scan of the table, its keys-only scans for reconciliation included.
    pub filters: BTreeMap<&'static str, EncodedQuery>,
}

impl Integration {
    /// The configured filter of `table`, if any.
    pub fn filter(&self, table: &str) -> Option<&EncodedQuery> {
        self.filters.get(table)
    }
}

/// Everything a unit needs besides its own identity.
#[derive(Debug, Clone)]
pub struct UnitEnv {
    pub integration: Arc<Integration>,
    pub topics: TopicNames,
    pub checkpoints: CheckpointStore,
    pub writer: PageWriter,
    pub dead_letters: DeadLetters,
    pub settings: FetcherConfig,
    /// Reports that the unit reads pages, which ends a `degraded`/`backing_off` state.
    pub progress: UnitProgress,
}

pub use crate::failure::UnitFailure;

/// Versions published in the current overlap window, so a poll that re-reads the window does
/// not publish the same version again. After a restart it starts empty, and the window is
/// re-published once, which downstream upserts absorb; with `exactly_once` it is first filled
/// from the raw topics ([`crate::resume`]), so nothing is published twice.
///
/// Bounded twice: versions older than the window's start are forgotten after every page (no
/// poll reads them again), and at most [`RECENT_VERSIONS_LIMIT`] are kept; past that the
/// oldest are forgotten first, and a re-read of one of those is published again (a harmless
/// duplicate) rather than the memory growing with a mass update.
#[derive(Debug, Default)]
pub(crate) struct RecentVersions {
    by_sys_id: HashMap<String, (DateTime<Utc>, Option<i64>)>,
    /// The same entries ordered by `sys_updated_on`, to forget the oldest cheaply.
    by_time: BTreeSet<(DateTime<Utc>, String)>,
}

/// Most versions one unit remembers (roughly 150 bytes each, both indexes together).
const RECENT_VERSIONS_LIMIT: usize = 200_000;

impl RecentVersions {
    fn is_new(&self, record: &RawRecord) -> bool {
        self.by_sys_id.get(&record.sys_id) != Some(&(record.sys_updated_on, record.sys_mod_count))
    }

    fn remember(&mut self, record: &RawRecord) {
        let version = (record.sys_updated_on, record.sys_mod_count);
        if let Some((updated_on, _)) = self.by_sys_id.insert(record.sys_id.clone(), version) {
            self.by_time.remove(&(updated_on, record.sys_id.clone()));
        }
        self.by_time
            .insert((record.sys_updated_on, record.sys_id.clone()));
        while self.by_sys_id.len() > RECENT_VERSIONS_LIMIT {
            let Some((_, sys_id)) = self.by_time.pop_first() else {
                break;
            };
            self.by_sys_id.remove(&sys_id);
        }
    }

    /// Takes over what `other` remembers (a finished backfill slice's versions, handed to the
    /// live stream that follows).
    pub(crate) fn absorb(&mut self, other: RecentVersions) {
        for (sys_id, version) in other.by_sys_id {
            let (updated_on, mod_count) = version;
            if let Some((previous, _)) = self
                .by_sys_id
                .insert(sys_id.clone(), (updated_on, mod_count))
            {
                self.by_time.remove(&(previous, sys_id.clone()));
            }
            self.by_time.insert((updated_on, sys_id));
        }
        while self.by_sys_id.len() > RECENT_VERSIONS_LIMIT {
            let Some((_, sys_id)) = self.by_time.pop_first() else {
                break;
            };
            self.by_sys_id.remove(&sys_id);
        }
    }

    pub(crate) fn forget_before(&mut self, horizon: DateTime<Utc>) {
        while let Some((updated_on, _)) = self.by_time.first()
            && *updated_on < horizon
        {
            if let Some((_, sys_id)) = self.by_time.pop_first() {
                self.by_sys_id.remove(&sys_id);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_sys_id.len()
    }
}

/// Runs `unit` until `cancel` fires (returns `Ok`) or it fails.
pub async fn run_unit(
    unit: WorkUnit,
    env: UnitEnv,
    cancel: CancellationToken,
) -> Result<(), UnitFailure> {
    if unit.kind == UnitKind::Deletions && reconcile::reconciles(&env) {
        return reconcile::run(&unit, &env, &cancel).await;
    }
    let key = unit.to_string();
    // A unit moved to another replica while it was still loading its checkpoint must stop
    // here: otherwise it would log "starting backfill" after it was told to stop.
    let loaded = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Ok(()),
        loaded = env.checkpoints.load_all() => loaded,
    };
    let found = loaded.map_err(UnitFailure::Retry)?;
    let mut checkpoint = found.get(&key).cloned();
    let sliced_plan = match (&checkpoint, unit.kind) {
        (None, UnitKind::Records(_)) => slices::Plan::resumable(&unit, &found),
        _ => None,
    };
    match (&checkpoint, &sliced_plan) {
        (Some(found), _) => tracing::info!(
            unit = %key,
            updated_on = %found.last_updated_on,
            sys_id = %found.last_sys_id,
            "resuming from checkpoint"
        ),
        (None, Some(plan)) => tracing::info!(
            unit = %key,
            updated_on = %plan.watermark,
            slices = plan.slices.len(),
            sliced_backfill = true,
            "resuming from checkpoint"
        ),
        (None, None) => {
            tracing::info!(unit = %key, since = ?env.settings.backfill_since, "starting backfill")
        }
    }
    let mut recent = RecentVersions::default();
    if checkpoint.is_some() {
        // A sliced backfill that finished just before a kill may have left its slice keys.
        slices::forget_leftovers(&unit, &env, &found, None).await;
    } else if let UnitKind::Records(_) = unit.kind
        && (sliced_plan.is_some() || env.settings.backfill_slice_count() > 1)
    {
        let outcome = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            outcome = slices::backfill(&unit, &env, sliced_plan, &found) => outcome?,
        };
        if let slices::Sliced::Done {
            checkpoint: live,
            recent: remembered,
        } = outcome
        {
            checkpoint = Some(live);
            recent = *remembered;
        }
    }
    if env.settings.exactly_once
        && let Some(found) = &checkpoint
    {
        let overlap = chrono::Duration::from_std(env.settings.overlap).unwrap_or_default();
        let since = found.last_updated_on - overlap;
        let published = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            published = crate::resume::published_since(
                env.checkpoints.kafka(), &env.topics, &unit, since,
            ) => published.map_err(UnitFailure::Retry)?,
        };
        for record in &published {
            recent.remember(record);
        }
        tracing::info!(
            unit = %key,
            versions = published.len(),
            "exactly_once: versions already published in the overlap window are not published again"
        );
    }
    // Only the first scan without a checkpoint is the backfill. A table that is still empty
    // (no deletions yet, say) never gets a checkpoint, and its polls must not be logged as
    // completed backfills every poll interval.
    let mut backfilling = checkpoint.is_none();
    loop {
        let phase = if backfilling { "backfill" } else { "poll" };
        let scan_result = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            result = scan_once(&unit, &env, &mut checkpoint, &mut recent, phase) => result.map(|_| ()),
        };
        if let Err(failure) = &scan_result
            && unit.kind == UnitKind::Deletions
            && reconcile::is_audit_forbidden(failure)
        {
            reconcile::switch_over(&unit, &env);
            return reconcile::run(&unit, &env, &cancel).await;
        }
        scan_result?;
        backfilling = false;
        if unit.kind == UnitKind::Deletions {
            // Records that leave their table's filter are deleted in no audit table: the
            // filtered tables are reconciled besides, when their round is due.
            let filtered = reconcile::filtered_tables(&env);
            if !filtered.is_empty()
                && reconcile::due_rounds(&unit, &env, &filtered, &cancel)
                    .await?
                    .is_none()
            {
                return Ok(());
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(env.settings.poll_interval) => {}
        }
    }
}

/// One pass over everything changed since the checkpoint (minus the overlap window).
async fn scan_once(
    unit: &WorkUnit,
    env: &UnitEnv,
    checkpoint: &mut Option<Checkpoint>,
    recent: &mut RecentVersions,
    phase: &'static str,
) -> Result<ScanEnd, UnitFailure> {
    let overlap = chrono::Duration::from_std(env.settings.overlap).unwrap_or_default();
    let start = if let Some(found) = checkpoint.as_ref() {
        ScanStart::Since(found.last_updated_on - overlap)
    } else if let Some(since) = env.settings.backfill_since {
        ScanStart::Since(since)
    } else {
        ScanStart::Beginning
    };
    let stream = Stream {
        key: unit.to_string(),
        label: unit.to_string(),
        start,
        range: None,
        keep_since: None,
        reports_lag: true,
        stop: CancellationToken::new(),
    };
    scan_stream(unit, env, &stream, checkpoint, recent, phase).await
}

/// The filter sent with every scan of `unit`: its own (dictionary, deletions) as written, and
/// a configured one (incident and change_request, which have none of their own) ANDed into
/// each of its `^NQ` groups.
pub(crate) fn unit_filter(unit: &WorkUnit, env: &UnitEnv) -> Option<String> {
    let user_filter = match unit.kind {
        UnitKind::Records(table) => env.integration.filter(table),
        UnitKind::Deletions => None,
    };
    match (unit.filter(), user_filter) {
        (own, None) => own,
        (None, Some(user)) => Some(user.to_string()),
        (Some(own), Some(user)) => Some(match EncodedQuery::parse(&own) {
            Ok(own) => own.and(user).to_string(),
            Err(_) => own,
        }),
    }
}

/// One keyset stream over a unit's table: the unit's own (its checkpoint is the unit's), or
/// one slice of a sliced backfill (its own checkpoint key and range).
#[derive(Debug)]
pub(crate) struct Stream {
    /// Checkpoint key written with every page.
    pub key: String,
    /// How it is named in logs.
    pub label: String,
    pub start: ScanStart,
    /// Conditions ANDed into every query besides the unit's filter (a slice's range).
    pub range: Option<EncodedQuery>,
    /// Versions remembered for the stream that follows: those at or after this time (a
    /// slice), else the overlap window before the checkpoint (the unit's own stream).
    pub keep_since: Option<DateTime<Utc>>,
    /// Whether its checkpoint drives the lag gauge (a slice's does not: slices are at
    /// different times).
    pub reports_lag: bool,
    /// Checked between pages: the stream stops after the page it is on.
    pub stop: CancellationToken,
}

impl Stream {
    /// Whether the next page is fetched while this one is written: for a unit's own stream,
    /// not for a backfill slice (see [`scan_stream`]).
    fn prefetches(&self) -> bool {
        self.range.is_none()
    }
}

/// How a stream's scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// No rows remain.
    Complete,
    /// [`Stream::stop`] fired; the checkpoint is after the last page written.
    Stopped,
}

/// One pass of `stream` from its start to the end of its rows.
pub(crate) async fn scan_stream(
    unit: &WorkUnit,
    env: &UnitEnv,
    stream: &Stream,
    checkpoint: &mut Option<Checkpoint>,
    recent: &mut RecentVersions,
    phase: &'static str,
) -> Result<ScanEnd, UnitFailure> {
    let table = unit.source_table();
    let mut request = ScanRequest::new(table);
    request.start = stream.start.clone();
    let overlap = chrono::Duration::from_std(env.settings.overlap).unwrap_or_default();
    let filter = match (unit_filter(unit, env), &stream.range) {
        (filter, None) => filter,
        (None, Some(range)) => Some(range.to_string()),
        (Some(filter), Some(range)) => Some(match EncodedQuery::parse(&filter) {
            Ok(parsed) => parsed.and(range).to_string(),
            Err(_) => format!("{filter}^{range}"),
        }),
    };
    if let Some(filter) = filter {
        request = request.filter(filter);
    }
    let service_now_error = |source| FetchError::ServiceNow {
        integration_id: env.integration.id.clone(),
        table: table.to_owned(),
        source: Box::new(source),
    };
    let exclusion = env.integration.excluded_at_source.as_ref();
    if let UnitKind::Records(table) = unit.kind
        && fields::needs_field_list(table)
    {
        let excluded = |field: &str| exclusion.is_some_and(|policy| policy.excludes(field));
        let list = fields::field_list(&env.integration.client, table, &excluded)
            .await
            .map_err(|source| classify(service_now_error(source)))?;
        request = request.fields(list);
    }
    let mut scan = env.integration.client.scan(request.clone());
    let mut progress = Progress::new(&stream.label, phase);
    let mut page = scan
        .next_page()
        .await
        .map_err(|source| classify(service_now_error(source)))?;
    env.progress.page_read();
    // Where a page Kafka did not take is read again from: the scan's position after the last
    // page written (the writer released the page's records once queued; see [`crate::writer`]).
    let mut written_to = request.start.clone();
    let mut refused = Refusals::default();
    while let Some(current) = page {
        let fetched = current.records.len();
        let remaining = current.remaining;
        let cursor = current.cursor.clone();
        // One stream fetches its next page while Kafka acknowledges this one: ServiceNow's
        // response time and the broker's round trips overlap instead of adding up. A backfill
        // slice does not: the table's other slices already overlap its writes, and a next page
        // per slice would double the pages a sliced backfill holds in memory. Either way the
        // checkpoint moves only after this page's records were acknowledged.
        let (next, published) = if stream.prefetches() {
            tokio::join!(
                scan.next_page(),
                publish_page(unit, env, stream, checkpoint, recent, current)
            )
        } else {
            let published = publish_page(unit, env, stream, checkpoint, recent, current).await;
            let next = match published {
                Ok(_) => scan.next_page().await,
                Err(_) => Ok(None),
            };
            (next, published)
        };
        let published = match published {
            Ok(published) => published,
            Err(error) => {
                let Some(pause) = refused.next(&error) else {
                    return Err(UnitFailure::Retry(error));
                };
                tracing::warn!(
                    %error,
                    attempt = refused.count(),
                    ?pause,
                    stream = %stream.label,
                    "Kafka did not take the page; fetching it again after the pause"
                );
                tokio::select! {
                    _ = stream.stop.cancelled() => return Ok(ScanEnd::Stopped),
                    _ = tokio::time::sleep(pause) => {}
                }
                let mut again = request.clone();
                again.start = written_to.clone();
                scan = env.integration.client.scan(again);
                page = scan
                    .next_page()
                    .await
                    .map_err(|source| classify(service_now_error(source)))?;
                continue;
            }
        };
        refused = Refusals::default();
        written_to = ScanStart::After(cursor);
        match (stream.keep_since, checkpoint.as_ref()) {
            (Some(since), _) => recent.forget_before(since),
            (None, Some(found)) => recent.forget_before(found.last_updated_on - overlap),
            (None, None) => {}
        }
        progress.page(fetched, published, remaining);
        if stream.stop.is_cancelled() {
            return Ok(ScanEnd::Stopped);
        }
        page = next.map_err(|source| classify(service_now_error(source)))?;
    }
    progress.finish();
    if stream.reports_lag
        && let Some(found) = checkpoint.as_ref()
    {
        metrics::checkpoint_time(&env.integration.id, table, found.last_updated_on);
    }
    Ok(ScanEnd::Complete)
}

/// Publishes one page and moves the checkpoint; returns how many records were published.
///
/// A row that cannot be published (cannot be keyed or versioned, or too large for Kafka) is
/// dead-lettered in the same write, before the checkpoint: the checkpoint moves past it only
/// once the DLQ has it, and the unit goes on instead of fetching the page forever.
async fn publish_page(
    unit: &WorkUnit,
    env: &UnitEnv,
    stream: &Stream,
    checkpoint: &mut Option<Checkpoint>,
    recent: &mut RecentVersions,
    mut page: ScanPage,
) -> Result<usize, FetchError> {
    let integration = &env.integration;
    let origin = Origin {
        integration_id: &integration.id,
        instance_url: &integration.instance_url,
        fetched_at: Utc::now(),
    };
    let source = Source {
        integration_id: &integration.id,
        excluded: &integration.excluded,
    };
    let mut records = Vec::with_capacity(page.records.len());
    let mut fresh = Vec::with_capacity(page.records.len());
    let mut letters: Vec<Letter> = Vec::new();
    // Oversized versions, remembered like published ones so that an overlap re-read does
    // not dead-letter them again.
    let mut oversized = Vec::new();
    let policy = integration.excluded_at_source.as_ref();
    let excluded = |field: &str| policy.is_some_and(|policy| policy.excludes(field));
    let mut identity = match unit.kind {
        UnitKind::Records(table) => Some(fields::IdentityReport::new(
            &integration.id,
            table,
            &excluded,
        )),
        UnitKind::Deletions => None,
    };
    // The page stays JSON text (`Row`). Without exclusion at source a record is published
    // as the text it came as, and only its key and identity fields are read; with exclusion
    // at source (and for deletions) one record at a time is read into a map.
    let wanted: Vec<&str> = raw::KEY_FIELDS
        .iter()
        .copied()
        .chain(
            identity
                .iter()
                .flat_map(|report| report.fields().iter().copied()),
        )
        .collect();
    // The rows share the page's response body; it is released once they are converted,
    // before the write waits for Kafka (which holds the encoded records and its own copy).
    let rows = std::mem::take(&mut page.records);
    for row in &rows {
        // What a dead letter of this row carries: the whole record where it can be read.
        let letter_row = || {
            row.to_map()
                .unwrap_or_else(|_| row.select(&raw::KEY_FIELDS).unwrap_or_default())
        };
        let converted = match (unit.kind, integration.excluded_at_source.as_ref()) {
            (UnitKind::Records(table), Some(policy)) => read(unit.source_table(), row, |record| {
                let kept = without_excluded(policy, &record);
                raw::upsert(&origin, table, &kept).map(|raw| (raw, kept))
            }),
            (UnitKind::Records(table), None) => match row.select(&wanted) {
                Ok(read) => raw::upsert_row(&origin, table, &read, row).map(|raw| (raw, read)),
                Err(error) => Err(unreadable(table, row, &error)),
            },
            (UnitKind::Deletions, _) => read(unit.source_table(), row, |record| {
                raw::deletion(&origin, &record).map(|raw| (raw, record))
            }),
        };
        let (mut raw, read) = match converted {
            Ok(converted) => converted,
            Err(error) => {
                metrics::invalid_record(&integration.id, unit.source_table());
                letters.push(
                    env.dead_letters
                        .unconvertible(source, &error, &letter_row()),
                );
                continue;
            }
        };
        if !recent.is_new(&raw) {
            continue;
        }
        let encoded = match encode(env, &raw) {
            Ok(encoded) => encoded,
            // A table or sys_id that cannot name a topic or form a key (a `:` in a sys_id):
            // as unconvertible as a missing field, and retrying would loop on it forever.
            Err(FetchError::Integration { reason, .. }) => {
                metrics::invalid_record(&integration.id, unit.source_table());
                let error = raw::RecordError {
                    code: "unkeyable",
                    table: raw.table.clone(),
                    sys_id: raw.sys_id.clone(),
                    problem: reason,
                };
                letters.push(
                    env.dead_letters
                        .unconvertible(source, &error, &letter_row()),
                );
                continue;
            }
            Err(other) => return Err(other),
        };
        // Encoded now: the payload's text is not needed again, and a page of them is
        // megabytes held until the write is acknowledged.
        raw.payload = None;
        if let Some(size) = env.dead_letters.oversize(&encoded) {
            letters.push(env.dead_letters.too_large(
                source,
                &raw.table,
                &raw.sys_id,
                size,
                &letter_row(),
            ));
            oversized.push(raw);
            continue;
        }
        records.push(encoded);
        fresh.push(raw);
        if let Some(identity) = identity.as_mut() {
            identity.check(&read);
        }
    }
    if let Some(identity) = identity {
        identity.finish();
    }
    drop(rows);

    for oversized in &page.oversized {
        let sys_id = stored_value(&oversized.keys, "sys_id").unwrap_or_default();
        letters.push(env.dead_letters.response_too_large(
            source,
            unit.source_table(),
            &sys_id,
            oversized.limit,
            &oversized.keys,
        ));
    }

    let next = next_checkpoint(unit, checkpoint.as_ref(), &page.cursor, records.len());
    let checkpoint_record = Encoded {
        topic: env.checkpoints.topic().to_owned(),
        key: stream.key.clone(),
        value: next.encode().map_err(|source| FetchError::Encode {
            what: format!("checkpoint {}", stream.key),
            source,
        })?,
    };
    let lettered: Vec<Lettered> = letters
        .iter()
        .map(|letter| letter.lettered.clone())
        .collect();
    env.writer
        .write_page(records, &lettered, &checkpoint_record)
        .await?;
    for letter in &letters {
        letter.report(&unit.to_string());
    }
    for raw in &oversized {
        recent.remember(raw);
    }
    for raw in &fresh {
        recent.remember(raw);
        metrics::record_published(&integration.id, &raw.table, raw.op.symbol());
    }
    metrics::page_fetched(&integration.id, unit.source_table());
    if stream.reports_lag {
        metrics::checkpoint_time(&integration.id, unit.source_table(), next.last_updated_on);
    }
    *checkpoint = Some(next);
    Ok(fresh.len())
}

/// Reads `row` into a map and hands it to `convert`; a row whose JSON cannot be read as values
/// is an unconvertible record.
fn read<T>(
    table: &str,
    row: &Row,
    convert: impl FnOnce(Map<String, Value>) -> Result<T, raw::RecordError>,
) -> Result<T, raw::RecordError> {
    match row.to_map() {
        Ok(record) => convert(record),
        Err(error) => Err(unreadable(table, row, &error)),
    }
}

/// The error of a row whose JSON reads as text but not as values (a number beyond `f64`).
fn unreadable(table: &str, row: &Row, error: &RowError) -> raw::RecordError {
    raw::RecordError {
        code: "unreadable_json",
        table: table.to_owned(),
        sys_id: row
            .stored_value("sys_id")
            .unwrap_or_else(|| "(no sys_id)".to_owned()),
        problem: error.to_string(),
    }
}

/// `record` without the fields `policy` excludes, at any nesting level. With
/// `exclude_at_source`, tables fetched without a field list still return excluded fields; they
/// are dropped here, before anything reaches Kafka.
fn without_excluded(policy: &ExclusionPolicy, record: &Map<String, Value>) -> Map<String, Value> {
    let mut value = Value::Object(record.clone());
    policy.strip(&mut value);
    match value {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

pub(crate) fn encode(env: &UnitEnv, raw: &RawRecord) -> Result<Encoded, FetchError> {
    let what = || format!("{} record {}", raw.table, raw.sys_id);
    let topic = env
        .topics
        .raw(&raw.table)
        .map_err(|error| FetchError::Integration {
            integration_id: raw.integration_id.clone(),
            reason: format!("no raw topic for table {}: {error}", raw.table),
        })?;
    let key =
        record_key(&raw.integration_id, &raw.sys_id).map_err(|error| FetchError::Integration {
            integration_id: raw.integration_id.clone(),
            reason: format!("cannot key {}: {error}", what()),
        })?;
    let value = raw.encode().map_err(|source| FetchError::Encode {
        what: what(),
        source,
    })?;
    Ok(Encoded { topic, key, value })
}

/// The checkpoint after a page: never behind the previous one, because an overlap window
/// re-reads records that an earlier page already covered.
pub(crate) fn next_checkpoint(
    unit: &WorkUnit,
    previous: Option<&Checkpoint>,
    cursor: &Cursor,
    published: usize,
) -> Checkpoint {
    let behind = previous.is_some_and(|previous| {
        (previous.last_updated_on, previous.last_sys_id.as_str())
            >= (cursor.updated_on, cursor.sys_id.as_str())
    });
    let (last_updated_on, last_sys_id) = match previous {
        Some(previous) if behind => (previous.last_updated_on, previous.last_sys_id.clone()),
        _ => (cursor.updated_on, cursor.sys_id.clone()),
    };
    Checkpoint {
        integration_id: unit.integration_id.clone(),
        table: unit.source_table().to_owned(),
        last_updated_on,
        last_sys_id,
        updated_at: Utc::now(),
        records_total: previous.map_or(0, |previous| previous.records_total) + published as i64,
        deletes_last_created_on: None,
        deletes_last_sys_id: None,
    }
}

/// Logs a unit's progress every ten seconds while it scans: done/total, rate and ETA.
struct Progress {
    unit: String,
    phase: &'static str,
    started: Instant,
    last_log: Instant,
    fetched: usize,
    published: usize,
    total: Option<u64>,
}

const PROGRESS_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    fn new(label: &str, phase: &'static str) -> Self {
        let now = Instant::now();
        Self {
            unit: label.to_owned(),
            phase,
            started: now,
            last_log: now,
            fetched: 0,
            published: 0,
            total: None,
        }
    }

    fn page(&mut self, fetched: usize, published: usize, remaining: Option<u64>) {
        self.fetched += fetched;
        self.published += published;
        if let Some(remaining) = remaining {
            // The window's count as of this page: what is done plus what remains.
            self.total = Some(self.fetched as u64 + remaining);
        }
        if self.last_log.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last_log = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.fetched as f64 / elapsed;
        let eta_secs = self
            .total
            .filter(|_| rate > 0.0)
            .map(|total| (total.saturating_sub(self.fetched as u64)) as f64 / rate);
        tracing::info!(
            unit = %self.unit,
            phase = self.phase,
            done = self.fetched,
            total = ?self.total,
            records_per_sec = format!("{rate:.0}"),
            eta_secs = ?eta_secs.map(|eta| eta.round() as u64),
            "progress"
        );
    }

    fn finish(&self) {
        if self.phase == "backfill" || self.published > 0 {
            tracing::info!(
                unit = %self.unit,
                phase = self.phase,
                fetched = self.fetched,
                published = self.published,
                secs = self.started.elapsed().as_secs(),
                "scan complete"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use nowstream_model::RecordOp;

    use super::*;

    fn version(sys_id: &str, second: i64, mod_count: i64) -> RawRecord {
        RawRecord {
            integration_id: "4711".to_owned(),
            table: "incident".to_owned(),
            sys_id: sys_id.to_owned(),
            sys_updated_on: Utc.timestamp_opt(1_700_000_000 + second, 0).unwrap(),
            sys_mod_count: Some(mod_count),
            op: RecordOp::Upsert,
            fetched_at: Utc::now(),
            instance_url: "https://example.service-now.com".to_owned(),
            payload: None,
        }
    }

    #[test]
    fn a_version_already_published_is_not_new_but_a_newer_one_is() {
        let mut recent = RecentVersions::default();
        recent.remember(&version("a", 10, 1));
        assert!(!recent.is_new(&version("a", 10, 1)));
        assert!(
            recent.is_new(&version("a", 10, 2)),
            "same second, next update"
        );
        assert!(recent.is_new(&version("a", 11, 2)));
        assert!(recent.is_new(&version("b", 10, 1)));
        recent.remember(&version("a", 11, 2));
        assert!(!recent.is_new(&version("a", 11, 2)));
        assert_eq!(recent.len(), 1, "one entry per sys_id");
    }

    #[test]
    fn versions_before_the_window_are_forgotten_and_those_inside_kept() {
        let mut recent = RecentVersions::default();
        for second in 0..600 {
            recent.remember(&version(&format!("r{second}"), second, 1));
        }
        // A five-minute window ending at second 599 starts at second 299.
        recent.forget_before(Utc.timestamp_opt(1_700_000_000 + 299, 0).unwrap());
        assert_eq!(recent.len(), 301);
        assert!(recent.is_new(&version("r298", 298, 1)));
        assert!(!recent.is_new(&version("r299", 299, 1)));
        assert!(!recent.is_new(&version("r599", 599, 1)));
        // An update moves the record's entry: forgetting its old time leaves it known.
        recent.remember(&version("r300", 700, 2));
        recent.forget_before(Utc.timestamp_opt(1_700_000_000 + 400, 0).unwrap());
        assert!(!recent.is_new(&version("r300", 700, 2)));
        assert_eq!(recent.len(), 201);
    }

    #[test]
    fn a_mass_update_inside_the_window_keeps_memory_bounded_forgetting_the_oldest() {
        let mut recent = RecentVersions::default();
        let total = RECENT_VERSIONS_LIMIT + 1_000;
        for n in 0..total {
            recent.remember(&version(&format!("r{n}"), n as i64 / 1_000, 1));
        }
        assert_eq!(recent.len(), RECENT_VERSIONS_LIMIT);
        assert!(recent.is_new(&version("r0", 0, 1)), "the oldest went first");
        let newest = total - 1;
        assert!(!recent.is_new(&version(&format!("r{newest}"), newest as i64 / 1_000, 1)));
    }
}
