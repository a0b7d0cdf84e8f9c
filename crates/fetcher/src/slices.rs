//! Sliced backfill: a table's first backfill split into ranges of `sys_created_on`, each a
//! keyset scan with its own checkpoint, run at the same time; then one live stream per table.
//!
//! Why it is correct (docs/fetcher.md, "Sliced backfill", says the same for operators):
//!
//! - **Every record in exactly one slice.** Slices are `[from, until)` ranges of
//!   `sys_created_on`, the first open below, the last open above, plus one slice for rows with
//!   no `sys_created_on` at all (`sys_created_onISEMPTY`: imports can leave it empty, and
//!   ordering operators never match an empty value). Times order totally, so any value lies in
//!   one range. `sys_created_on` does not change when a record is updated.
//! - **Nothing changed meanwhile is lost.** The plan takes a watermark before any slice reads:
//!   the newest `sys_updated_on` of the table (ServiceNow's clock), or this host's time if that
//!   is earlier (a record dated in the future by an import). When every slice is done the unit's
//!   own checkpoint is set to the watermark, so its first poll reads from the watermark minus
//!   `fetcher.overlap`: every change made while the slices ran is read again.
//! - **Per-record order.** A record is read by its one slice only, whose keyset order is the
//!   order of its versions; the live stream starts only after every slice's pages were
//!   acknowledged. Versions the live stream reads again are equal (not older) ones, skipped by
//!   the remembered versions or absorbed by keyed, versioned upserts downstream.
//! - **Resuming.** The plan (a marker key holding the watermark) and each slice's range (in the
//!   slice's checkpoint key) are on the checkpoint topic before any slice reads; each page's
//!   slice checkpoint is written with the page exactly as the unit's own checkpoint is (in the
//!   same transaction with `exactly_once`). After a restart every slice resumes after its cursor
//!   (no overlap: the live stream's start covers late commits), and a finished slice only reads
//!   what changed after its cursor.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use nowstream_model::table_api::query::{Condition, EncodedQuery, Operator, OrderBy, UPDATED_ON};
use nowstream_model::table_api::{format_time, parse_time};
use nowstream_model::{AvroRecord, Checkpoint};
use nowstream_servicenow::client::{Client, Cursor, ListRequest, ScanStart};

use crate::backoff::Backoff;
use crate::failure::{UnitFailure, classify};
use crate::unit::{RecentVersions, ScanEnd, Stream, UnitEnv, scan_stream, unit_filter};
use crate::units::WorkUnit;
use crate::writer::Encoded;
use crate::{FetchError, metrics};

/// The field slices are ranges of: set once when a record is created.
pub const CREATED_ON: &str = "sys_created_on";

/// Pieces a crowded sub-range of creation time is cut into when planning: the slice
/// boundaries are chosen among the edges of the counted pieces, so slices hold about equally
/// many rows even where creation times bunch up.
const SUB_RANGES_PER_SPLIT: usize = 4;

/// One slice's rows, by `sys_created_on`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SliceRange {
    /// `from <= sys_created_on < until`; `None` is unbounded.
    Created {
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    },
    /// Rows without a `sys_created_on`.
    NoCreationTime,
}

/// Times in slice keys: compact, sortable, no `:` (the key's separator).
const KEY_TIME: &str = "%Y%m%dT%H%M%SZ";

impl SliceRange {
    /// The encoded-query conditions that select the slice's rows.
    pub fn query(&self) -> EncodedQuery {
        let mut clauses = Vec::new();
        match self {
            SliceRange::Created { from, until } => {
                if let Some(from) = from {
                    clauses.push(vec![Condition::new(
                        CREATED_ON,
                        Operator::Ge,
                        format_time(*from),
                    )]);
                }
                if let Some(until) = until {
                    clauses.push(vec![Condition::new(
                        CREATED_ON,
                        Operator::Lt,
                        format_time(*until),
                    )]);
                }
                if clauses.is_empty() {
                    // The one slice of a table planned as one range: still only rows that have
                    // a creation time, the others are the empty-value slice's.
                    clauses.push(vec![Condition::new(CREATED_ON, Operator::IsNotEmpty, "")]);
                }
            }
            SliceRange::NoCreationTime => {
                clauses.push(vec![Condition::new(CREATED_ON, Operator::IsEmpty, "")]);
            }
        }
        EncodedQuery {
            groups: vec![clauses],
            order_by: Vec::new(),
        }
    }

    /// The range as written in its checkpoint key: `created:<from>~<until>` (an open end is
    /// empty) or `created:empty`.
    pub fn key_part(&self) -> String {
        let time = |t: &Option<DateTime<Utc>>| {
            t.map(|t| t.format(KEY_TIME).to_string())
                .unwrap_or_default()
        };
        match self {
            SliceRange::Created { from, until } => {
                format!("created:{}~{}", time(from), time(until))
            }
            SliceRange::NoCreationTime => "created:empty".to_owned(),
        }
    }

    /// The inverse of [`SliceRange::key_part`].
    pub fn parse_key_part(text: &str) -> Option<SliceRange> {
        let range = text.strip_prefix("created:")?;
        if range == "empty" {
            return Some(SliceRange::NoCreationTime);
        }
        let (from, until) = range.split_once('~')?;
        let time = |t: &str| -> Option<Option<DateTime<Utc>>> {
            if t.is_empty() {
                return Some(None);
            }
            let naive = chrono::NaiveDateTime::parse_from_str(t, KEY_TIME).ok()?;
            Some(Some(Utc.from_utc_datetime(&naive)))
        };
        Some(SliceRange::Created {
            from: time(from)?,
            until: time(until)?,
        })
    }
}

/// A sliced backfill of one unit: the watermark and the slices with their checkpoints.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the live stream starts once every slice is done (minus the overlap window).
    pub watermark: DateTime<Utc>,
    /// When the plan was made: names its slice keys, so that keys of an abandoned plan are
    /// never taken for this one's.
    pub planned_at: DateTime<Utc>,
    /// Each slice and its checkpoint (cursor at the Unix epoch with an empty sys_id: not
    /// started).
    pub slices: Vec<(SliceRange, Checkpoint)>,
}

/// Key of the plan marker of `unit`.
pub fn plan_key(unit: &WorkUnit) -> String {
    format!("{unit}:backfill")
}

fn slice_prefix(unit: &WorkUnit) -> String {
    format!("{unit}:slice:")
}

fn plan_slice_prefix(unit: &WorkUnit, planned_at: DateTime<Utc>) -> String {
    format!("{}{}:", slice_prefix(unit), planned_at.timestamp_millis())
}

/// Checkpoint key of one slice of a plan.
pub fn slice_key(unit: &WorkUnit, planned_at: DateTime<Utc>, range: &SliceRange) -> String {
    format!(
        "{}{}",
        plan_slice_prefix(unit, planned_at),
        range.key_part()
    )
}

impl Plan {
    /// The plan of `unit` found on the checkpoint topic, if a sliced backfill was under way.
    pub fn resumable(unit: &WorkUnit, found: &HashMap<String, Checkpoint>) -> Option<Plan> {
        let marker = found.get(&plan_key(unit))?;
        let prefix = plan_slice_prefix(unit, marker.updated_at);
        let mut slices: Vec<(SliceRange, Checkpoint)> = found
            .iter()
            .filter_map(|(key, checkpoint)| {
                let range = SliceRange::parse_key_part(key.strip_prefix(&prefix)?)?;
                Some((range, checkpoint.clone()))
            })
            .collect();
        if slices.is_empty() {
            return None;
        }
        slices.sort_by(|a, b| a.0.cmp(&b.0));
        Some(Plan {
            watermark: marker.last_updated_on,
            planned_at: marker.updated_at,
            slices,
        })
    }

    fn keys(&self, unit: &WorkUnit) -> BTreeSet<String> {
        let mut keys: BTreeSet<String> = self
            .slices
            .iter()
            .map(|(range, _)| slice_key(unit, self.planned_at, range))
            .collect();
        keys.insert(plan_key(unit));
        keys
    }
}

/// How a sliced backfill ended.
#[derive(Debug)]
pub(crate) enum Sliced {
    /// The table is too small to slice (or cannot be planned): the unit backfills as one
    /// stream.
    NotSliced,
    /// Every slice is done; the unit's own checkpoint is the watermark.
    Done {
        checkpoint: Checkpoint,
        recent: Box<RecentVersions>,
    },
}

/// Runs (or resumes) the sliced backfill of `unit`. Returns once every slice is done, or the
/// table is not worth slicing; a slice that fails is retried on its own after a pause.
pub(crate) async fn backfill(
    unit: &WorkUnit,
    env: &UnitEnv,
    resumed: Option<Plan>,
    found: &HashMap<String, Checkpoint>,
) -> Result<Sliced, UnitFailure> {
    let plan = match resumed {
        Some(plan) => plan,
        None => {
            let Some(plan) = make_plan(unit, env).await? else {
                return Ok(Sliced::NotSliced);
            };
            save_plan(unit, env, &plan)
                .await
                .map_err(UnitFailure::Retry)?;
            forget_leftovers(unit, env, found, Some(&plan.keys(unit))).await;
            tracing::info!(
                unit = %unit,
                slices = plan.slices.len(),
                watermark = %plan.watermark,
                ranges = ?plan.slices.iter().map(|(range, _)| range.key_part()).collect::<Vec<_>>(),
                "sliced backfill planned"
            );
            plan
        }
    };
    let overlap = chrono::Duration::from_std(env.settings.overlap).unwrap_or_default();
    let keep_since = plan.watermark - overlap;
    let stop = CancellationToken::new();
    let count = plan.slices.len();
    let mut running = JoinSet::new();
    for (n, (range, checkpoint)) in plan.slices.iter().enumerate() {
        let stream = Stream {
            key: slice_key(unit, plan.planned_at, range),
            label: format!("{unit} slice {}/{count}", n + 1),
            start: slice_start(checkpoint, env),
            range: Some(range.query()),
            keep_since: Some(keep_since),
            reports_lag: false,
            stop: stop.clone(),
        };
        running.spawn(run_slice(
            unit.clone(),
            env.clone(),
            stream,
            checkpoint.clone(),
        ));
    }
    // Dropping the set (the unit was cancelled) aborts the slices, as a cancelled unit drops
    // its scan: each resumes from its last checkpoint.
    let mut failure = None;
    let mut recent = RecentVersions::default();
    let mut records_total = 0;
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(Ok((checkpoint, remembered))) => {
                records_total += checkpoint.records_total;
                recent.absorb(remembered);
            }
            Ok(Err(slice_failure)) => {
                // A denial or fencing concerns every slice: stop the others after their
                // current page and hand the failure to the unit's supervisor.
                stop.cancel();
                failure.get_or_insert(slice_failure);
            }
            Err(joined) => {
                stop.cancel();
                failure.get_or_insert(UnitFailure::Retry(FetchError::Integration {
                    integration_id: unit.integration_id.clone(),
                    reason: format!("a backfill slice of {unit} ended abnormally: {joined}"),
                }));
            }
        }
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    let live = Checkpoint {
        integration_id: unit.integration_id.clone(),
        table: unit.source_table().to_owned(),
        last_updated_on: plan.watermark,
        last_sys_id: String::new(),
        updated_at: Utc::now(),
        records_total,
        deletes_last_created_on: None,
        deletes_last_sys_id: None,
    };
    let encoded = encode_checkpoint(env, &unit.to_string(), &live).map_err(UnitFailure::Retry)?;
    env.writer
        .write(&[], &encoded)
        .await
        .map_err(UnitFailure::Retry)?;
    metrics::checkpoint_time(
        &env.integration.id,
        unit.source_table(),
        live.last_updated_on,
    );
    let mut done = found.clone();
    for key in plan.keys(unit) {
        done.insert(key, live.clone());
    }
    forget_leftovers(unit, env, &done, None).await;
    tracing::info!(
        unit = %unit,
        phase = "backfill",
        slices = count,
        published = records_total,
        watermark = %plan.watermark,
        "scan complete"
    );
    Ok(Sliced::Done {
        checkpoint: live,
        recent: Box::new(recent),
    })
}

/// Where a slice's scan starts: after its cursor, or at the beginning (`backfill_since`).
fn slice_start(checkpoint: &Checkpoint, env: &UnitEnv) -> ScanStart {
    if checkpoint.last_sys_id.is_empty() {
        match env.settings.backfill_since {
            Some(since) => ScanStart::Since(since),
            None => ScanStart::Beginning,
        }
    } else {
        ScanStart::After(Cursor::new(
            checkpoint.last_updated_on,
            checkpoint.last_sys_id.clone(),
        ))
    }
}

/// Scans one slice to its end. A failure is retried here, after a growing, jittered pause,
/// from the slice's checkpoint, while the other slices go on; only a refusal (401/403) or
/// fencing, which no slice can get past, ends it with an error.
async fn run_slice(
    unit: WorkUnit,
    env: UnitEnv,
    mut stream: Stream,
    checkpoint: Checkpoint,
) -> Result<(Checkpoint, RecentVersions), UnitFailure> {
    let backoff = Backoff::new(env.settings.unit_backoff_min, env.settings.unit_backoff_max);
    let mut recent = RecentVersions::default();
    let mut current = Some(checkpoint);
    let mut failures = 0u32;
    loop {
        match scan_stream(&unit, &env, &stream, &mut current, &mut recent, "backfill").await {
            Ok(ScanEnd::Complete) => {
                tracing::info!(unit = %unit, slice = %stream.label, "slice complete");
                let done = current.unwrap_or_else(|| empty_checkpoint(&unit, Utc::now()));
                return Ok((done, recent));
            }
            Ok(ScanEnd::Stopped) => {
                let done = current.unwrap_or_else(|| empty_checkpoint(&unit, Utc::now()));
                return Ok((done, recent));
            }
            Err(failure) if stops_every_slice(&failure) => return Err(failure),
            Err(failure) => {
                failures += 1;
                let pause = backoff.pause(failures);
                tracing::warn!(
                    unit = %unit,
                    slice = %stream.label,
                    error = %failure.error(),
                    failures,
                    next_try_in = ?pause,
                    "backfill slice failed; it starts over from its checkpoint after a pause"
                );
                metrics::unit_error(&env.integration.id, unit.source_table(), "retry");
                tokio::select! {
                    _ = stream.stop.cancelled() => {
                        let done = current.unwrap_or_else(|| empty_checkpoint(&unit, Utc::now()));
                        return Ok((done, recent));
                    }
                    _ = tokio::time::sleep(pause) => {}
                }
                if let Some(found) = &current {
                    stream.start = slice_start(found, &env);
                }
            }
        }
    }
}

/// Failures no slice can get past by trying again on its own.
fn stops_every_slice(failure: &UnitFailure) -> bool {
    matches!(failure, UnitFailure::Denied { .. })
        || matches!(failure.error(), FetchError::Fenced { .. })
}

/// A slice checkpoint before the slice read anything.
fn empty_checkpoint(unit: &WorkUnit, at: DateTime<Utc>) -> Checkpoint {
    Checkpoint {
        integration_id: unit.integration_id.clone(),
        table: unit.source_table().to_owned(),
        last_updated_on: DateTime::<Utc>::UNIX_EPOCH,
        last_sys_id: String::new(),
        updated_at: at,
        records_total: 0,
        deletes_last_created_on: None,
        deletes_last_sys_id: None,
    }
}

fn encode_checkpoint(
    env: &UnitEnv,
    key: &str,
    checkpoint: &Checkpoint,
) -> Result<Encoded, FetchError> {
    Ok(Encoded {
        topic: env.checkpoints.topic().to_owned(),
        key: key.to_owned(),
        value: checkpoint.encode().map_err(|source| FetchError::Encode {
            what: format!("checkpoint {key}"),
            source,
        })?,
    })
}

/// Writes every slice's starting checkpoint, then the plan marker: in one transaction with
/// `exactly_once`, else the marker only once Kafka has all the slices. A marker on the topic
/// therefore always comes with all of its slices.
async fn save_plan(unit: &WorkUnit, env: &UnitEnv, plan: &Plan) -> Result<(), FetchError> {
    let mut slices = Vec::with_capacity(plan.slices.len());
    for (range, checkpoint) in &plan.slices {
        slices.push(encode_checkpoint(
            env,
            &slice_key(unit, plan.planned_at, range),
            checkpoint,
        )?);
    }
    let marker = Checkpoint {
        last_updated_on: plan.watermark,
        updated_at: plan.planned_at,
        ..empty_checkpoint(unit, plan.planned_at)
    };
    let marker = encode_checkpoint(env, &plan_key(unit), &marker)?;
    env.writer.write(&slices, &marker).await
}

/// Tombstones the sliced-backfill keys of `unit` in `found` except those in `keep` (`None`:
/// all of them): a finished plan's, or an abandoned one's. Best effort: a key left behind is
/// ignored by every later start and removed by the next.
pub async fn forget_leftovers(
    unit: &WorkUnit,
    env: &UnitEnv,
    found: &HashMap<String, Checkpoint>,
    keep: Option<&BTreeSet<String>>,
) {
    let marker = plan_key(unit);
    let prefix = slice_prefix(unit);
    let mut leftovers: Vec<&String> = found
        .keys()
        .filter(|key| **key == marker || key.starts_with(&prefix))
        .filter(|key| keep.is_none_or(|keep| !keep.contains(*key)))
        .collect();
    // Slices first, the marker last: a marker on the topic always comes with its slices.
    leftovers.sort_by_key(|key| **key == marker);
    for key in leftovers {
        if let Err(error) = env.checkpoints.remove(key).await {
            tracing::warn!(unit = %unit, %key, %error, "could not remove a backfill slice checkpoint");
        }
    }
}

/// Plans the slices of `unit`'s table, or `None` when it is too small to be worth slicing
/// (fewer rows than two pages) or cannot be counted.
async fn make_plan(unit: &WorkUnit, env: &UnitEnv) -> Result<Option<Plan>, UnitFailure> {
    let wanted = env.settings.backfill_slice_count();
    if wanted <= 1 {
        return Ok(None);
    }
    let table = unit.source_table();
    let client = &env.integration.client;
    let mut base = match unit_filter(unit, env) {
        Some(filter) => match EncodedQuery::parse(&filter) {
            Ok(parsed) => parsed,
            // A filter nowstream cannot read it cannot AND ranges into: one stream, as before.
            Err(_) => return Ok(None),
        },
        None => EncodedQuery::match_all(),
    };
    base.order_by.clear();
    if let Some(since) = env.settings.backfill_since {
        base = base.and(&conditions(vec![Condition::new(
            UPDATED_ON,
            Operator::Ge,
            format_time(since),
        )]));
    }
    let service_now_error = |source| {
        classify(FetchError::ServiceNow {
            integration_id: env.integration.id.clone(),
            table: table.to_owned(),
            source: Box::new(source),
        })
    };
    let planned_at = Utc::now();
    let with_created = base.and(&conditions(vec![Condition::new(
        CREATED_ON,
        Operator::IsNotEmpty,
        "",
    )]));
    // The oldest creation time first, alone: its count decides whether to slice at all, so a
    // small table (or refused credentials) costs one request, as before slicing.
    let (oldest, total) = first_value(client, table, &with_created, CREATED_ON, false)
        .await
        .map_err(service_now_error)?;
    let page_size = client.page_size().max(1) as u64;
    let (Some(total), Some(oldest)) = (total, oldest) else {
        return Ok(None);
    };
    let count = usize::try_from(total.div_ceil(page_size))
        .unwrap_or(usize::MAX)
        .min(wanted);
    if count <= 1 {
        return Ok(None);
    }
    let (newest, updated) = tokio::join!(
        first_value(client, table, &with_created, CREATED_ON, true),
        first_value(client, table, &base, UPDATED_ON, true),
    );
    let (newest, _) = newest.map_err(service_now_error)?;
    let (updated, _) = updated.map_err(service_now_error)?;
    let Some(newest) = newest.filter(|newest| *newest > oldest) else {
        return Ok(None);
    };
    // Anything changed from now on is stamped at or after ServiceNow's newest time so far;
    // this host's clock bounds it when a record carries a future time (an import).
    let watermark = updated.map_or(planned_at, |updated| updated.min(planned_at));
    let end = newest + chrono::Duration::seconds(1);
    let parts = counted_sub_ranges(client, table, &base, oldest, end, total, count)
        .await
        .map_err(service_now_error)?;
    let mut edges: Vec<DateTime<Utc>> = parts.iter().map(|(from, _, _)| *from).collect();
    edges.push(end);
    let counts: Vec<u64> = parts.iter().map(|(_, _, rows)| *rows).collect();
    let boundaries = balanced_boundaries(&edges, &counts, count);
    let mut slices = Vec::with_capacity(boundaries.len() + 2);
    let mut from = None;
    for boundary in boundaries {
        slices.push(SliceRange::Created {
            from,
            until: Some(boundary),
        });
        from = Some(boundary);
    }
    slices.push(SliceRange::Created { from, until: None });
    slices.push(SliceRange::NoCreationTime);
    Ok(Some(Plan {
        watermark,
        planned_at,
        slices: slices
            .into_iter()
            .map(|range| (range, empty_checkpoint(unit, planned_at)))
            .collect(),
    }))
}

fn conditions(and: Vec<Condition>) -> EncodedQuery {
    EncodedQuery {
        groups: vec![and.into_iter().map(|condition| vec![condition]).collect()],
        order_by: Vec::new(),
    }
}

/// The smallest (or, `descending`, the largest) stored time of `field` among rows matching
/// `query`, and the rows' count (`X-Total-Count`).
async fn first_value(
    client: &Client,
    table: &str,
    query: &EncodedQuery,
    field: &str,
    descending: bool,
) -> Result<(Option<DateTime<Utc>>, Option<u64>), nowstream_servicenow::client::ClientError> {
    let mut ordered = query.clone();
    ordered.order_by = vec![if descending {
        OrderBy::desc(field)
    } else {
        OrderBy::asc(field)
    }];
    let request = ListRequest {
        table: table.to_owned(),
        query: ordered.to_string(),
        limit: 1,
        offset: 0,
        fields: Some(vec![field.to_owned(), "sys_id".to_owned()]),
    };
    let page = client.list_page(&request).await?;
    let value = page
        .records
        .first()
        .and_then(|record| record.stored_value(field))
        .and_then(|text| parse_time(&text).ok());
    Ok((value, page.total))
}

/// Most rounds of splitting sub-ranges: each cuts a crowded sub-range's span by four, so a
/// few rounds get from decades (an import dated far from the rest) down to days.
const MAX_REFINEMENTS: usize = 12;

/// Consecutive `[from, until)` sub-ranges of creation time covering `[start, end)` with their
/// row counts, fine enough that none holds more than half a slice's share where a second's
/// resolution allows: the span is cut into four and every sub-range holding too many rows is
/// cut again, each round's counts asked at once. A far outlier (a record an import dated in
/// 1970 or 2999) therefore costs a few more rounds, not a skewed plan.
async fn counted_sub_ranges(
    client: &Client,
    table: &str,
    base: &EncodedQuery,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    total: u64,
    slices: usize,
) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>, u64)>, nowstream_servicenow::client::ClientError> {
    let crowded = (total / (slices as u64 * 2)).max(1);
    let mut parts = vec![(start, end, total)];
    for _ in 0..MAX_REFINEMENTS {
        let split: Vec<usize> = (0..parts.len())
            .filter(|&n| {
                let (from, until, rows) = parts[n];
                rows > crowded && (until - from).num_seconds() > 1
            })
            .collect();
        if split.is_empty() {
            break;
        }
        let pieces: Vec<Vec<(DateTime<Utc>, DateTime<Utc>)>> = split
            .iter()
            .map(|&n| {
                let (from, until, _) = parts[n];
                sub_range_edges(from, until, SUB_RANGES_PER_SPLIT)
                    .windows(2)
                    .map(|pair| (pair[0], pair[1]))
                    .collect()
            })
            .collect();
        let counts = futures::future::try_join_all(pieces.iter().flatten().map(|(from, until)| {
            let range = SliceRange::Created {
                from: Some(*from),
                until: Some(*until),
            };
            let query = base.and(&range.query()).to_string();
            async move { client.count(table, &query).await }
        }))
        .await?;
        let mut counts = counts.into_iter();
        let mut refined = Vec::with_capacity(parts.len() + split.len() * SUB_RANGES_PER_SPLIT);
        let mut pieces = pieces.into_iter();
        for (n, part) in parts.into_iter().enumerate() {
            if split.contains(&n) {
                for (from, until) in pieces.next().unwrap_or_default() {
                    refined.push((from, until, counts.next().unwrap_or_default()));
                }
            } else {
                refined.push(part);
            }
        }
        parts = refined;
    }
    Ok(parts)
}

/// `parts + 1` times from `start` to `end` (whole seconds, strictly increasing, fewer when the
/// span has fewer seconds).
fn sub_range_edges(start: DateTime<Utc>, end: DateTime<Utc>, parts: usize) -> Vec<DateTime<Utc>> {
    let span = (end - start).num_seconds().max(1);
    let parts = i64::try_from(parts.max(1)).unwrap_or(i64::MAX).min(span);
    let mut edges: Vec<DateTime<Utc>> = (0..parts)
        .map(|n| start + chrono::Duration::seconds(span * n / parts))
        .collect();
    edges.push(end);
    edges.dedup();
    edges
}

/// Up to `slices - 1` inner edges splitting the counted sub-ranges into `slices` runs of
/// about equal row counts: for each share `k/slices` of all rows, the inner edge whose rows
/// before it come nearest (strictly increasing; fewer where rows bunch in one sub-range).
fn balanced_boundaries(
    edges: &[DateTime<Utc>],
    counts: &[u64],
    slices: usize,
) -> Vec<DateTime<Utc>> {
    let total: u64 = counts.iter().sum();
    let slices = slices.max(1) as u64;
    // Rows before each inner edge (edges[1..len-1]).
    let mut before = Vec::with_capacity(counts.len());
    let mut cumulative = 0u64;
    for count in counts.iter().take(counts.len().saturating_sub(1)) {
        cumulative += count;
        before.push(cumulative);
    }
    let mut boundaries: Vec<DateTime<Utc>> = Vec::new();
    for k in 1..slices {
        let target = if total == 0 {
            // Nothing counted (rows changed meanwhile): equal spans of time.
            (k * before.len() as u64 / slices).saturating_sub(1)
        } else {
            u64::MAX
        };
        let nearest = if total == 0 {
            usize::try_from(target).ok()
        } else {
            let share = total * k / slices;
            (0..before.len()).min_by_key(|&i| before[i].abs_diff(share))
        };
        if let Some(edge) = nearest.and_then(|i| edges.get(i + 1))
            && boundaries.last().is_none_or(|last| last < edge)
        {
            boundaries.push(*edge);
        }
    }
    boundaries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::UnitKind;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
    }

    fn matches(range: &SliceRange, created: Option<&str>) -> bool {
        range
            .query()
            .matches(&|field: &str| (field == CREATED_ON).then(|| created.unwrap_or("").to_owned()))
    }

    #[test]
    fn every_creation_time_and_an_empty_one_fall_in_exactly_one_slice() {
        let ranges = [
            SliceRange::Created {
                from: None,
                until: Some(at(100)),
            },
            SliceRange::Created {
                from: Some(at(100)),
                until: Some(at(200)),
            },
            SliceRange::Created {
                from: Some(at(200)),
                until: None,
            },
            SliceRange::NoCreationTime,
        ];
        for created in [
            Some("1970-01-01 00:00:00".to_owned()),
            Some(format_time(at(99))),
            Some(format_time(at(100))),
            Some(format_time(at(199))),
            Some(format_time(at(200))),
            Some("2999-12-31 23:59:59".to_owned()),
            Some(String::new()),
            None,
        ] {
            let holding = ranges
                .iter()
                .filter(|range| matches(range, created.as_deref()))
                .count();
            assert_eq!(holding, 1, "{created:?}");
        }
    }

    #[test]
    fn a_slice_range_survives_its_checkpoint_key() {
        for range in [
            SliceRange::Created {
                from: None,
                until: Some(at(100)),
            },
            SliceRange::Created {
                from: Some(at(100)),
                until: Some(at(200)),
            },
            SliceRange::Created {
                from: Some(at(200)),
                until: None,
            },
            SliceRange::NoCreationTime,
        ] {
            let text = range.key_part();
            assert!(
                !text.contains(':') || text.starts_with("created:"),
                "{text}"
            );
            assert_eq!(SliceRange::parse_key_part(&text), Some(range));
        }
        assert_eq!(SliceRange::parse_key_part("created:bad~"), None);
    }

    #[test]
    fn a_plan_is_found_again_from_its_keys_and_an_abandoned_plans_slices_are_not_mixed_in() {
        let unit = WorkUnit {
            integration_id: "4711".to_owned(),
            kind: UnitKind::Records("incident"),
        };
        let planned_at = at(500);
        let mut found = HashMap::new();
        let marker = Checkpoint {
            last_updated_on: at(400),
            updated_at: planned_at,
            ..empty_checkpoint(&unit, planned_at)
        };
        found.insert(plan_key(&unit), marker);
        let first = SliceRange::Created {
            from: None,
            until: Some(at(100)),
        };
        let second = SliceRange::Created {
            from: Some(at(100)),
            until: None,
        };
        let progressed = Checkpoint {
            last_updated_on: at(42),
            last_sys_id: "abc".to_owned(),
            ..empty_checkpoint(&unit, planned_at)
        };
        found.insert(slice_key(&unit, planned_at, &first), progressed.clone());
        found.insert(
            slice_key(&unit, planned_at, &second),
            empty_checkpoint(&unit, planned_at),
        );
        found.insert(
            slice_key(&unit, at(1), &SliceRange::NoCreationTime),
            empty_checkpoint(&unit, at(1)),
        );
        let plan = Plan::resumable(&unit, &found).expect("a plan");
        assert_eq!(plan.watermark, at(400));
        assert_eq!(plan.slices.len(), 2);
        assert_eq!(plan.slices[0], (first, progressed));
        assert_eq!(plan.slices[1].0, second);
        assert!(Plan::resumable(&unit, &HashMap::new()).is_none());
    }

    #[test]
    fn boundaries_follow_the_counts_so_slices_hold_about_equally_many_rows() {
        let edges: Vec<DateTime<Utc>> = (0..=8).map(|n| at(n * 10)).collect();
        // Most rows are recent: the last two sub-ranges hold 80 of 100.
        let counts = [5, 5, 5, 5, 0, 0, 40, 40];
        let boundaries = balanced_boundaries(&edges, &counts, 4);
        assert_eq!(boundaries, vec![at(40), at(70)]);
        let even = balanced_boundaries(&edges, &[10; 8], 4);
        assert_eq!(even, vec![at(20), at(40), at(60)]);
        assert!(balanced_boundaries(&edges, &[0; 8], 4).len() == 3);
    }

    #[test]
    fn sub_ranges_cover_the_span_in_whole_seconds() {
        let edges = sub_range_edges(at(0), at(100), 8);
        assert_eq!(edges.first(), Some(&at(0)));
        assert_eq!(edges.last(), Some(&at(100)));
        assert_eq!(edges.len(), 9);
        assert!(edges.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(sub_range_edges(at(0), at(3), 8).len(), 4);
    }
}
