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
    if let Some(time) = parse_exact_time(s) {
        return Ok(time);
    }
    NaiveDateTime::parse_from_str(s, TIME_FORMAT)
        .map(|t| t.and_utc())
        .map_err(|e| TimeError {
            input: s.to_owned(),
            reason: e.to_string(),
        })
}

/// The common case of [`parse_time`] without chrono's format interpreter (the normalizer
/// parses several times per record): exactly `dddd-dd-dd dd:dd:dd` naming a valid time,
/// seconds 00–59. Anything else (`None`) goes to chrono, which accepts the same texts with
/// the same result, and more (a leap second, single digits), and words the errors.
fn parse_exact_time(s: &str) -> Option<DateTime<Utc>> {
    let b: &[u8; 19] = s.as_bytes().try_into().ok()?;
    let digits = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |number, &digit| {
            digit
                .is_ascii_digit()
                .then(|| number * 10 + u32::from(digit - b'0'))
        })
    };
    if [b[4], b[7], b[10], b[13], b[16]] != *b"-- ::" {
        return None;
    }
    let year = i32::try_from(digits(0..4)?).ok()?;
    let date = chrono::NaiveDate::from_ymd_opt(year, digits(5..7)?, digits(8..10)?)?;
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if second > 59 {
        return None;
    }
    Some(date.and_hms_opt(hour, minute, second)?.and_utc())
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

    proptest::proptest! {
        #[test]
        fn the_quick_path_agrees_with_chrono(
            parts in (0u32..10000, 0u32..14, 0u32..33, 0u32..25, 0u32..61, 0u32..62),
            odd in "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}|[0-9: -]{17,21}",
        ) {
            let (y, mo, d, h, mi, s) = parts;
            for text in [format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"), odd.clone()] {
            let chrono = NaiveDateTime::parse_from_str(&text, TIME_FORMAT).ok().map(|t| t.and_utc());
            if let Some(quick) = parse_exact_time(&text) {
                proptest::prop_assert_eq!(Some(quick), chrono);
            }
            proptest::prop_assert_eq!(parse_time(&text).ok(), chrono);
            }
        }
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
