//! Mean time to restore (MTTR), the DORA metric, over resolved incidents.
//!
//! Time to restore is `time_to_restore_ms` when the incident carries it (the normalizer
//! derives it once so every consumer agrees), else `resolved_at - opened_at`. Incidents
//! with neither are not counted. The grade is DORA's, judged on the *median*, which one
//! outlier cannot drag: Elite < 1 hour, High < 1 day, Medium < 1 week, Low otherwise.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

const MS_PER_HOUR: f64 = 3_600_000.0;
const MS_PER_DAY: f64 = 24.0 * MS_PER_HOUR;
const MS_PER_WEEK: f64 = 7.0 * MS_PER_DAY;

/// A live incident resolved inside the report's window, as the store hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedIncident {
    /// When it was resolved.
    pub resolved_at: DateTime<Utc>,
    /// Time to restore in milliseconds, when known.
    pub restore_ms: Option<i64>,
    /// Priority value (`"1"`…), when set.
    pub priority: Option<String>,
}

/// DORA's time-to-restore performance levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grade {
    /// Under an hour.
    Elite,
    /// Under a day.
    High,
    /// Under a week.
    Medium,
    /// A week or more.
    Low,
}

impl Grade {
    /// The grade of a time to restore given in milliseconds.
    pub fn of_ms(ms: f64) -> Self {
        if ms < MS_PER_HOUR {
            Self::Elite
        } else if ms < MS_PER_DAY {
            Self::High
        } else if ms < MS_PER_WEEK {
            Self::Medium
        } else {
            Self::Low
        }
    }
}

/// How the report is split besides its overall figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// By priority value; `"none"` when unset.
    Priority,
    /// By the Monday (UTC) that starts the ISO week of `resolved_at`.
    Week,
}

/// Time to restore over a set of incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MttrStats {
    /// Incidents counted.
    pub count: u64,
    /// Mean in hours; null when count is 0.
    pub mean_hours: Option<f64>,
    /// Median in hours (mean of the two middle values for an even count); null when count is 0.
    pub median_hours: Option<f64>,
    /// DORA grade of the median; null when count is 0.
    pub grade: Option<Grade>,
}

impl MttrStats {
    /// Statistics of some times to restore, in milliseconds.
    pub fn of(restore_ms: &[i64]) -> Self {
        let mut sorted = restore_ms.to_vec();
        sorted.sort_unstable();
        let count = sorted.len();
        if count == 0 {
            return Self {
                count: 0,
                mean_hours: None,
                median_hours: None,
                grade: None,
            };
        }
        // Summed as i128: a few million incidents of years each cannot overflow it.
        let total: i128 = sorted.iter().map(|&ms| i128::from(ms)).sum();
        let mean_ms = total as f64 / count as f64;
        let median_ms = if count % 2 == 1 {
            sorted[count / 2] as f64
        } else {
            (sorted[count / 2 - 1] as f64 + sorted[count / 2] as f64) / 2.0
        };
        Self {
            count: count as u64,
            mean_hours: Some(mean_ms / MS_PER_HOUR),
            median_hours: Some(median_ms / MS_PER_HOUR),
            grade: Some(Grade::of_ms(median_ms)),
        }
    }
}

/// One group of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MttrGroup {
    /// Priority value (`"none"` when unset) or ISO week start (`yyyy-MM-dd`, a Monday).
    pub key: String,
    /// The group's figures.
    #[serde(flatten)]
    pub stats: MttrStats,
}

/// The body of `GET /v1/metrics/mttr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MttrReport {
    /// Integration reported on.
    pub integration_id: String,
    /// Inclusive start of the `resolved_at` window.
    pub from: String,
    /// Exclusive end of the window.
    pub to: String,
    /// The grouping asked for, if any.
    pub group_by: Option<GroupBy>,
    /// Over every counted incident.
    pub overall: MttrStats,
    /// One entry per group, ordered by key; empty without `group_by`.
    pub groups: Vec<MttrGroup>,
}

impl MttrReport {
    /// The report over `incidents` (already limited to the window and to live records).
    pub fn build(
        integration_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: Option<GroupBy>,
        incidents: &[ResolvedIncident],
    ) -> Self {
        let counted: Vec<(&ResolvedIncident, i64)> = incidents
            .iter()
            .filter_map(|incident| incident.restore_ms.map(|ms| (incident, ms)))
            .collect();
        let overall = MttrStats::of(&counted.iter().map(|&(_, ms)| ms).collect::<Vec<_>>());
        let groups = match group_by {
            None => Vec::new(),
            Some(group_by) => {
                let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
                for &(incident, ms) in &counted {
                    by_key
                        .entry(group_key(group_by, incident))
                        .or_default()
                        .push(ms);
                }
                by_key
                    .into_iter()
                    .map(|(key, restore_ms)| MttrGroup {
                        key,
                        stats: MttrStats::of(&restore_ms),
                    })
                    .collect()
            }
        };
        Self {
            integration_id: integration_id.to_owned(),
            from: from.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            to: to.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            group_by,
            overall,
            groups,
        }
    }
}

fn group_key(group_by: GroupBy, incident: &ResolvedIncident) -> String {
    match group_by {
        GroupBy::Priority => incident
            .priority
            .clone()
            .unwrap_or_else(|| "none".to_owned()),
        GroupBy::Week => iso_week_start(incident.resolved_at)
            .format("%Y-%m-%d")
            .to_string(),
    }
}

/// The Monday (UTC) that starts the ISO week `time` falls in.
pub fn iso_week_start(time: DateTime<Utc>) -> NaiveDate {
    let date = time.date_naive();
    let days_since_monday = i64::from(date.weekday().num_days_from_monday());
    date - TimeDelta::days(days_since_monday)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn an_odd_count_has_the_middle_value_as_median() {
        let stats = MttrStats::of(&[3 * HOUR, HOUR, 20 * HOUR]);
        assert_eq!(stats.count, 3);
        assert_eq!(stats.mean_hours, Some(8.0));
        assert_eq!(stats.median_hours, Some(3.0));
        assert_eq!(stats.grade, Some(Grade::High));
    }

    #[test]
    fn an_even_count_averages_the_two_middle_values() {
        let stats = MttrStats::of(&[HOUR, 2 * HOUR, 4 * HOUR, 1000 * HOUR]);
        assert_eq!(stats.median_hours, Some(3.0));
        assert_eq!(stats.mean_hours, Some(251.75));
    }

    #[test]
    fn no_incidents_give_nulls_not_zeros() {
        let stats = MttrStats::of(&[]);
        assert_eq!(stats.count, 0);
        assert_eq!(stats.mean_hours, None);
        assert_eq!(stats.grade, None);
    }

    #[test]
    fn grades_change_exactly_at_the_dora_thresholds() {
        let h = HOUR as f64;
        assert_eq!(Grade::of_ms(h - 1.0), Grade::Elite);
        assert_eq!(Grade::of_ms(h), Grade::High);
        assert_eq!(Grade::of_ms(24.0 * h - 1.0), Grade::High);
        assert_eq!(Grade::of_ms(24.0 * h), Grade::Medium);
        assert_eq!(Grade::of_ms(168.0 * h - 1.0), Grade::Medium);
        assert_eq!(Grade::of_ms(168.0 * h), Grade::Low);
    }

    #[test]
    fn iso_weeks_start_on_monday() {
        // 2024-03-03 is a Sunday: it belongs to the week of Monday 2024-02-26.
        assert_eq!(
            iso_week_start(at("2024-03-03T23:59:59Z")).to_string(),
            "2024-02-26"
        );
        assert_eq!(
            iso_week_start(at("2024-03-04T00:00:00Z")).to_string(),
            "2024-03-04"
        );
        // Across a year end: 2021-01-01 (Friday) is in ISO week 2020-W53.
        assert_eq!(
            iso_week_start(at("2021-01-01T12:00:00Z")).to_string(),
            "2020-12-28"
        );
    }

    #[test]
    fn incidents_without_a_time_to_restore_are_not_counted() {
        let incidents = [
            ResolvedIncident {
                resolved_at: at("2024-03-01T00:00:00Z"),
                restore_ms: None,
                priority: Some("1".to_owned()),
            },
            ResolvedIncident {
                resolved_at: at("2024-03-01T00:00:00Z"),
                restore_ms: Some(HOUR),
                priority: None,
            },
        ];
        let report = MttrReport::build(
            "sn1",
            at("2024-03-01T00:00:00Z"),
            at("2024-04-01T00:00:00Z"),
            Some(GroupBy::Priority),
            &incidents,
        );
        assert_eq!(report.overall.count, 1);
        assert_eq!(report.groups.len(), 1);
        assert_eq!(report.groups[0].key, "none");
    }
}
