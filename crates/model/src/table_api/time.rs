//! ServiceNow's time format: how date-time `value`s are stored and how encoded queries
//! compare times.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Format of date-time `value`s and of times in encoded queries: UTC, second resolution.
/// (Display values use the session user's zone and format and must never be parsed as times.)
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// A ServiceNow time `value` that is not UTC `yyyy-MM-dd HH:mm:ss`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ServiceNow time {input:?} is not in the UTC format \"yyyy-MM-dd HH:mm:ss\": {reason}")]
pub struct TimeError {
    /// The text that failed to parse.
    pub input: String,
    /// What chrono objected to.
    pub reason: String,
}

/// Parses a date-time `value` (always UTC, whatever the user's zone).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, TimeError> {
    NaiveDateTime::parse_from_str(s, TIME_FORMAT)
        .map(|t| t.and_utc())
        .map_err(|e| TimeError {
            input: s.to_owned(),
            reason: e.to_string(),
        })
}

/// Formats a time the way ServiceNow stores and compares it; sub-second parts are dropped,
/// since ServiceNow keeps whole seconds.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format(TIME_FORMAT).to_string()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn times_parse_as_utc_and_format_back_unchanged() {
        let text = "2024-03-05 07:08:09";
        let parsed = parse_time(text).unwrap();
        assert_eq!(parsed, Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap());
        assert_eq!(format_time(parsed), text);
    }

    #[test]
    fn formatting_drops_sub_second_parts() {
        let t = Utc.timestamp_millis_opt(1_700_000_000_999).unwrap();
        assert_eq!(format_time(t), "2023-11-14 22:13:20");
    }

    #[test]
    fn a_bad_time_error_names_the_input() {
        for bad in [
            "2024-03-05T07:08:09Z",
            "05/03/2024 07:08",
            "",
            "2024-13-01 00:00:00",
        ] {
            let err = parse_time(bad).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
