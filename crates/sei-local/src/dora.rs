//! The DORA report: mean time to restore, deployment frequency and change failure rate of one
//! integration over a window, each graded in the bands SEI uses.
//!
//! Pure computation over the facts the store hands over ([`DoraIncident`], [`DoraChange`]),
//! so every figure can be checked against hand-computed data without HTTP or SQLite.
//!
//! - **MTTR**: incidents *resolved* in the window; time to restore runs from
//!   `sys_created_on` (SEI's definition, the default) or `opened_at` (what `/v1/metrics/mttr`
//!   uses; there `time_to_restore_ms` wins when sent, as it is defined as exactly that) to
//!   `resolved_at`. Graded on the median like `/v1/metrics/mttr`.
//! - **Deployment frequency**: change requests *closed* (`closed_at`) in the window, limited
//!   to the asked states and types; per day and per week over the window's length.
//! - **Change failure rate**: failure incidents *created* (`sys_created_on`) in the window
//!   over the deployments of the window, as SEI computes it; plus the exact share of the
//!   window's deployments that at least one live incident names in `caused_by`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::mttr::{Grade, MttrStats, iso_week_start};

const MS_PER_DAY: i128 = 86_400_000;

/// A time grouping yields one group per period; more than this is refused (a chart of a
/// thousand weeks is unreadable, and the answer would be large for nothing).
pub const MAX_PERIODS: usize = 1000;

/// A live incident's fields the report reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoraIncident {
    /// sys_id.
    pub sys_id: String,
    /// Creation in ServiceNow.
    pub sys_created_on: Option<DateTime<Utc>>,
    /// Opened.
    pub opened_at: Option<DateTime<Utc>>,
    /// Resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// `time_to_restore_ms` as sent.
    pub time_to_restore_ms: Option<i64>,
    /// Priority value (`"1"`…).
    pub priority: Option<String>,
    /// Category value.
    pub category: Option<String>,
    /// sys_id of the change request that caused it.
    pub caused_by: Option<String>,
}

/// A live change request's fields the report reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoraChange {
    /// sys_id.
    pub sys_id: String,
    /// Closed: the deployment time.
    pub closed_at: Option<DateTime<Utc>>,
    /// State value.
    pub state: Option<String>,
    /// Type value (`standard`, `normal`, `emergency`).
    pub change_type: Option<String>,
    /// Priority value.
    pub priority: Option<String>,
}

/// Where time to restore starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MttrStart {
    /// Creation of the incident record: SEI's definition.
    #[default]
    SysCreatedOn,
    /// When the incident was opened.
    OpenedAt,
}

/// How the report is split besides its overall figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoraGroupBy {
    /// ISO weeks (Monday, UTC).
    Week,
    /// Calendar months (UTC).
    Month,
    /// Priority value.
    Priority,
}

/// What the report was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoraParams {
    /// Integration.
    pub integration_id: String,
    /// Inclusive start.
    pub from: DateTime<Utc>,
    /// Exclusive end.
    pub to: DateTime<Utc>,
    /// Grouping.
    pub group_by: Option<DoraGroupBy>,
    /// MTTR start.
    pub mttr_start: MttrStart,
    /// Change states counted as deployments (empty: any).
    pub change_states: Vec<String>,
    /// Change types counted as deployments (empty: any).
    pub change_types: Vec<String>,
    /// Which incidents are failures.
    pub failure: FailureFilter,
}

/// Which incidents count as failures: those whose priority value is one of `priorities`
/// (when any) **and** whose category value is one of `categories` (when any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureFilter {
    /// Priority values.
    pub priorities: Vec<String>,
    /// Category values.
    pub categories: Vec<String>,
}

impl FailureFilter {
    /// With neither filter given, failures are priority 1 (critical) and 2 (high) incidents.
    pub fn with_defaults(priorities: Vec<String>, categories: Vec<String>) -> Self {
        if priorities.is_empty() && categories.is_empty() {
            Self {
                priorities: vec!["1".to_owned(), "2".to_owned()],
                categories,
            }
        } else {
            Self {
                priorities,
                categories,
            }
        }
    }

    fn matches(&self, incident: &DoraIncident) -> bool {
        one_of(&self.priorities, incident.priority.as_deref())
            && one_of(&self.categories, incident.category.as_deref())
    }
}

/// An empty list allows anything; otherwise the value must be listed.
fn one_of(allowed: &[String], value: Option<&str>) -> bool {
    allowed.is_empty() || value.is_some_and(|value| allowed.iter().any(|a| a == value))
}

/// Deployment frequency over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentFrequency {
    /// Deployments (change requests closed in the period that pass the filters).
    pub count: u64,
    /// Length of the period in days.
    pub days: f64,
    /// Deployments per day.
    pub per_day: f64,
    /// Deployments per week.
    pub per_week: f64,
    /// DORA grade.
    pub grade: Grade,
}

impl DeploymentFrequency {
    fn of(count: u64, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        let period_ms = i128::from((to - from).num_milliseconds().max(1));
        let days = period_ms as f64 / MS_PER_DAY as f64;
        let per_day = count as f64 / days;
        Self {
            count,
            days,
            per_day,
            per_week: per_day * 7.0,
            grade: deployment_grade(count, period_ms),
        }
    }
}

/// SEI's deployment frequency bands: Elite more than once per day; High from once per week
/// to once per day; Medium from once per month (30 days) to once per week; Low less.
/// Compared in integers so a boundary is exact.
pub fn deployment_grade(count: u64, period_ms: i128) -> Grade {
    let count = i128::from(count);
    if count * MS_PER_DAY > period_ms {
        Grade::Elite
    } else if count * 7 * MS_PER_DAY >= period_ms {
        Grade::High
    } else if count * 30 * MS_PER_DAY >= period_ms {
        Grade::Medium
    } else {
        Grade::Low
    }
}

/// SEI's change failure rate bands: Elite up to 15 %, High up to 30 %, Medium up to 45 %,
/// Low above; `None` without deployments. Compared in integers so a boundary is exact.
pub fn failure_grade(failures: u64, deployments: u64) -> Option<Grade> {
    if deployments == 0 {
        return None;
    }
    let (failures, deployments) = (u128::from(failures), u128::from(deployments));
    Some(if failures * 100 <= 15 * deployments {
        Grade::Elite
    } else if failures * 100 <= 30 * deployments {
        Grade::High
    } else if failures * 100 <= 45 * deployments {
        Grade::Medium
    } else {
        Grade::Low
    })
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Change failure rate over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeFailureRate {
    /// Failure incidents created in the period.
    pub failures: u64,
    /// Deployments in the period (the denominator).
    pub deployments: u64,
    /// `failures / deployments` (can exceed 1); null without deployments.
    pub rate: Option<f64>,
    /// DORA grade of `rate`; null without deployments.
    pub grade: Option<Grade>,
    /// The exact figure through `caused_by`.
    pub attributed: AttributedFailures,
}

/// Deployments that an incident names as its cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributedFailures {
    /// Deployments at least one live incident's `caused_by` points to.
    pub failed_deployments: u64,
    /// Deployments in the period.
    pub deployments: u64,
    /// `failed_deployments / deployments`; null without deployments.
    pub rate: Option<f64>,
    /// DORA grade of `rate`; null without deployments.
    pub grade: Option<Grade>,
}

impl ChangeFailureRate {
    fn of(failures: u64, deployments: u64, failed_deployments: u64) -> Self {
        Self {
            failures,
            deployments,
            rate: ratio(failures, deployments),
            grade: failure_grade(failures, deployments),
            attributed: AttributedFailures {
                failed_deployments,
                deployments,
                rate: ratio(failed_deployments, deployments),
                grade: failure_grade(failed_deployments, deployments),
            },
        }
    }
}

/// The three figures over one part of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoraFigures {
    /// Time to restore.
    pub mttr: MttrStats,
    /// Deployment frequency.
    pub deployment_frequency: DeploymentFrequency,
    /// Change failure rate.
    pub change_failure_rate: ChangeFailureRate,
}

/// One group of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoraGroup {
    /// Week start (`yyyy-MM-dd`, a Monday), month (`yyyy-MM`) or priority value (`"none"`
    /// when unset).
    pub key: String,
    /// The period's start, clipped to the window (the window's for priority groups).
    pub from: String,
    /// The period's exclusive end, clipped to the window.
    pub to: String,
    /// The group's figures.
    #[serde(flatten)]
    pub figures: DoraFigures,
}

/// What the report counted, echoed so a reader knows what the figures mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoraDefinitions {
    /// Start of time to restore.
    pub mttr_start: MttrStart,
    /// Change states counted as deployments; empty: any.
    pub change_states: Vec<String>,
    /// Change types counted as deployments; empty: any.
    pub change_types: Vec<String>,
    /// Failure incidents' priorities; empty: any.
    pub failure_priorities: Vec<String>,
    /// Failure incidents' categories; empty: any.
    pub failure_categories: Vec<String>,
}

/// The body of `GET /v1/metrics/dora`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoraReport {
    /// Integration reported on.
    pub integration_id: String,
    /// Inclusive start of the window.
    pub from: String,
    /// Exclusive end of the window.
    pub to: String,
    /// The grouping asked for, if any.
    pub group_by: Option<DoraGroupBy>,
    /// What was counted.
    pub definitions: DoraDefinitions,
    /// Live incidents of the integration that name a change in `caused_by`, whatever their
    /// time: 0 means the attributed figures have nothing to go on (the sender does not fill
    /// the field), not that no change failed.
    pub incidents_with_caused_by: u64,
    /// Over the whole window.
    pub overall: DoraFigures,
    /// Time groupings: every period meeting the window, in order. Priority: every priority
    /// seen among the counted records, ordered by value. Empty without `group_by`.
    pub groups: Vec<DoraGroup>,
}

/// Why a report cannot be built from valid parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoraError {
    /// Too many periods.
    #[error("the window holds {periods} {unit}s; at most {MAX_PERIODS} can be grouped")]
    TooManyPeriods {
        /// How many.
        periods: usize,
        /// `week` or `month`.
        unit: &'static str,
    },
}

fn text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn in_window(time: Option<DateTime<Utc>>, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    time.is_some_and(|time| from <= time && time < to)
}

fn restore_ms(incident: &DoraIncident, start: MttrStart) -> Option<i64> {
    let resolved = incident.resolved_at?;
    let elapsed = match start {
        MttrStart::SysCreatedOn => resolved - incident.sys_created_on?,
        MttrStart::OpenedAt => match incident.time_to_restore_ms {
            Some(ms) => return (ms >= 0).then_some(ms),
            None => resolved - incident.opened_at?,
        },
    };
    (elapsed >= TimeDelta::zero()).then(|| elapsed.num_milliseconds())
}

/// What each record contributes, computed once.
struct Counted<'a> {
    /// (resolved_at, priority, restore ms) of incidents resolved in the window.
    restores: Vec<(DateTime<Utc>, Option<&'a str>, i64)>,
    /// Deployments in the window, with whether an incident names them, and the priorities
    /// of the incidents that do.
    deployments: Vec<(&'a DoraChange, BTreeSet<Option<&'a str>>)>,
    /// (sys_created_on, priority) of failure incidents created in the window.
    failures: Vec<(DateTime<Utc>, Option<&'a str>)>,
}

impl DoraReport {
    /// The report over every live incident and change request of the integration.
    pub fn build(
        params: &DoraParams,
        incidents: &[DoraIncident],
        changes: &[DoraChange],
    ) -> Result<Self, DoraError> {
        let (from, to) = (params.from, params.to);
        let mut causes: BTreeMap<&str, BTreeSet<Option<&str>>> = BTreeMap::new();
        let mut incidents_with_caused_by = 0;
        for incident in incidents {
            if let Some(change) = incident.caused_by.as_deref().filter(|c| !c.is_empty()) {
                incidents_with_caused_by += 1;
                causes
                    .entry(change)
                    .or_default()
                    .insert(incident.priority.as_deref());
            }
        }
        let counted = Counted {
            restores: incidents
                .iter()
                .filter(|incident| in_window(incident.resolved_at, from, to))
                .filter_map(|incident| {
                    Some((
                        incident.resolved_at?,
                        incident.priority.as_deref(),
                        restore_ms(incident, params.mttr_start)?,
                    ))
                })
                .collect(),
            deployments: changes
                .iter()
                .filter(|change| in_window(change.closed_at, from, to))
                .filter(|change| one_of(&params.change_states, change.state.as_deref()))
                .filter(|change| one_of(&params.change_types, change.change_type.as_deref()))
                .map(|change| {
                    let causing = causes
                        .get(change.sys_id.as_str())
                        .cloned()
                        .unwrap_or_default();
                    (change, causing)
                })
                .collect(),
            failures: incidents
                .iter()
                .filter(|incident| in_window(incident.sys_created_on, from, to))
                .filter(|incident| params.failure.matches(incident))
                .filter_map(|incident| {
                    Some((incident.sys_created_on?, incident.priority.as_deref()))
                })
                .collect(),
        };
        let overall = figures_in(&counted, from, to);
        let groups = match params.group_by {
            None => Vec::new(),
            Some(DoraGroupBy::Priority) => by_priority(&counted, from, to),
            Some(unit @ (DoraGroupBy::Week | DoraGroupBy::Month)) => {
                let periods = periods(unit, from, to)?;
                periods
                    .into_iter()
                    .map(|(key, start, end)| {
                        let (start, end) = (start.max(from), end.min(to));
                        DoraGroup {
                            key,
                            from: text(start),
                            to: text(end),
                            figures: figures_in(&counted, start, end),
                        }
                    })
                    .collect()
            }
        };
        Ok(Self {
            integration_id: params.integration_id.clone(),
            from: text(from),
            to: text(to),
            group_by: params.group_by,
            definitions: DoraDefinitions {
                mttr_start: params.mttr_start,
                change_states: params.change_states.clone(),
                change_types: params.change_types.clone(),
                failure_priorities: params.failure.priorities.clone(),
                failure_categories: params.failure.categories.clone(),
            },
            incidents_with_caused_by,
            overall,
            groups,
        })
    }
}

/// The figures of the records whose time falls in `[start, end)`, deployments spread over
/// that period's length.
fn figures_in(counted: &Counted<'_>, start: DateTime<Utc>, end: DateTime<Utc>) -> DoraFigures {
    let inside = |time: DateTime<Utc>| start <= time && time < end;
    let restores: Vec<i64> = counted
        .restores
        .iter()
        .filter(|(resolved, _, _)| inside(*resolved))
        .map(|&(_, _, ms)| ms)
        .collect();
    let deployments: Vec<_> = counted
        .deployments
        .iter()
        .filter(|(change, _)| change.closed_at.is_some_and(inside))
        .collect();
    let failed = deployments
        .iter()
        .filter(|(_, causing)| !causing.is_empty())
        .count() as u64;
    let failures = counted
        .failures
        .iter()
        .filter(|(created, _)| inside(*created))
        .count() as u64;
    let count = deployments.len() as u64;
    DoraFigures {
        mttr: MttrStats::of(&restores),
        deployment_frequency: DeploymentFrequency::of(count, start, end),
        change_failure_rate: ChangeFailureRate::of(failures, count, failed),
    }
}

/// Per priority: MTTR of incidents of that priority; deployments of change requests of that
/// priority; failures of that priority over **all** deployments of the window (an incident's
/// priority says nothing about a change's), and deployments an incident of that priority
/// names as its cause, over all deployments.
fn by_priority(counted: &Counted<'_>, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DoraGroup> {
    let key = |priority: Option<&str>| priority.unwrap_or("none").to_owned();
    let mut keys: BTreeSet<String> = BTreeSet::new();
    keys.extend(counted.restores.iter().map(|(_, p, _)| key(*p)));
    keys.extend(counted.failures.iter().map(|(_, p)| key(*p)));
    keys.extend(
        counted
            .deployments
            .iter()
            .map(|(change, _)| key(change.priority.as_deref())),
    );
    let all_deployments = counted.deployments.len() as u64;
    keys.into_iter()
        .map(|group| {
            let restores: Vec<i64> = counted
                .restores
                .iter()
                .filter(|(_, p, _)| key(*p) == group)
                .map(|&(_, _, ms)| ms)
                .collect();
            let deployments = counted
                .deployments
                .iter()
                .filter(|(change, _)| key(change.priority.as_deref()) == group)
                .count() as u64;
            let failures = counted
                .failures
                .iter()
                .filter(|(_, p)| key(*p) == group)
                .count() as u64;
            let failed = counted
                .deployments
                .iter()
                .filter(|(_, causing)| causing.iter().any(|p| key(*p) == group))
                .count() as u64;
            DoraGroup {
                key: group,
                from: text(from),
                to: text(to),
                figures: DoraFigures {
                    mttr: MttrStats::of(&restores),
                    deployment_frequency: DeploymentFrequency::of(deployments, from, to),
                    change_failure_rate: ChangeFailureRate::of(failures, all_deployments, failed),
                },
            }
        })
        .collect()
}

/// A week or month: its key, start and exclusive end.
type Period = (String, DateTime<Utc>, DateTime<Utc>);

/// Every week or month meeting `[from, to)`.
fn periods(
    unit: DoraGroupBy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Period>, DoraError> {
    let midnight = |date: NaiveDate| date.and_time(chrono::NaiveTime::MIN).and_utc();
    let (unit_name, mut start) = match unit {
        DoraGroupBy::Month => ("month", month_start(from.date_naive())),
        _ => ("week", iso_week_start(from)),
    };
    let mut periods = Vec::new();
    while midnight(start) < to {
        let next = match unit {
            DoraGroupBy::Month => next_month(start),
            _ => start + TimeDelta::days(7),
        };
        let key = match unit {
            DoraGroupBy::Month => start.format("%Y-%m").to_string(),
            _ => start.format("%Y-%m-%d").to_string(),
        };
        periods.push((key, midnight(start), midnight(next)));
        if periods.len() > MAX_PERIODS {
            let total = match unit {
                DoraGroupBy::Month => {
                    let months = |d: NaiveDate| d.year() * 12 + d.month0() as i32;
                    (months(to.date_naive()) - months(from.date_naive()) + 1) as usize
                }
                _ => ((to - midnight(iso_week_start(from))).num_days() / 7 + 1) as usize,
            };
            return Err(DoraError::TooManyPeriods {
                periods: total,
                unit: unit_name,
            });
        }
        start = next;
    }
    Ok(periods)
}

fn month_start(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

fn next_month(first: NaiveDate) -> NaiveDate {
    let (year, month) = if first.month() == 12 {
        (first.year() + 1, 1)
    } else {
        (first.year(), first.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(first + TimeDelta::days(31))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i128 = MS_PER_DAY;

    #[test]
    fn deployment_grades_change_exactly_at_seis_boundaries() {
        // 30 days: 31 deployments is more than one per day.
        assert_eq!(deployment_grade(31, 30 * DAY), Grade::Elite);
        assert_eq!(deployment_grade(30, 30 * DAY), Grade::High);
        // One per week exactly is High; a hair less is Medium.
        assert_eq!(deployment_grade(1, 7 * DAY), Grade::High);
        assert_eq!(deployment_grade(1, 7 * DAY + 1), Grade::Medium);
        assert_eq!(deployment_grade(1, 30 * DAY), Grade::Medium);
        assert_eq!(deployment_grade(1, 30 * DAY + 1), Grade::Low);
        assert_eq!(deployment_grade(0, DAY), Grade::Low);
    }

    #[test]
    fn failure_grades_change_exactly_at_seis_boundaries() {
        assert_eq!(failure_grade(15, 100), Some(Grade::Elite));
        assert_eq!(failure_grade(16, 100), Some(Grade::High));
        assert_eq!(failure_grade(30, 100), Some(Grade::High));
        assert_eq!(failure_grade(31, 100), Some(Grade::Medium));
        assert_eq!(failure_grade(45, 100), Some(Grade::Medium));
        assert_eq!(failure_grade(46, 100), Some(Grade::Low));
        assert_eq!(failure_grade(3, 0), None);
    }

    #[test]
    fn time_to_restore_starts_where_asked_and_time_to_restore_ms_counts_only_from_opened_at() {
        let at = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().to_utc());
        let incident = DoraIncident {
            sys_created_on: at("2024-03-01T00:00:00Z"),
            opened_at: at("2024-03-01T02:00:00Z"),
            resolved_at: at("2024-03-01T03:00:00Z"),
            ..DoraIncident::default()
        };
        assert_eq!(
            restore_ms(&incident, MttrStart::SysCreatedOn),
            Some(3 * 3_600_000)
        );
        assert_eq!(restore_ms(&incident, MttrStart::OpenedAt), Some(3_600_000));
        let explicit = DoraIncident {
            time_to_restore_ms: Some(42),
            ..incident.clone()
        };
        assert_eq!(restore_ms(&explicit, MttrStart::OpenedAt), Some(42));
        assert_eq!(
            restore_ms(&explicit, MttrStart::SysCreatedOn),
            Some(3 * 3_600_000)
        );
        let created_after_resolution = DoraIncident {
            sys_created_on: at("2024-03-02T00:00:00Z"),
            ..incident
        };
        assert_eq!(
            restore_ms(&created_after_resolution, MttrStart::SysCreatedOn),
            None
        );
    }

    #[test]
    fn months_cross_a_year_end() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let months = periods(
            DoraGroupBy::Month,
            at("2024-11-15T00:00:00Z"),
            at("2025-01-02T00:00:00Z"),
        )
        .unwrap();
        let keys: Vec<&str> = months.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, ["2024-11", "2024-12", "2025-01"]);
    }

    #[test]
    fn a_window_of_too_many_weeks_is_refused() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let error = periods(
            DoraGroupBy::Week,
            at("1970-01-01T00:00:00Z"),
            at("2024-01-01T00:00:00Z"),
        )
        .unwrap_err();
        assert!(
            matches!(error, DoraError::TooManyPeriods { unit: "week", periods } if periods > 2800)
        );
    }
}
