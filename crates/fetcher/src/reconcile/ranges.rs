//! Splitting the sys_id space into ranges, so reconciliation never holds more than
//! `reconcile_max_keys` sys_ids of one table at once.
//!
//! ServiceNow sys_ids are 32 lowercase hex digits, spread uniformly, so ranges by their leading
//! hex digits hold about equally many. The first range has no lower bound and the last no upper
//! bound: a sys_id that is not hex (imported records can carry any string) still falls in
//! exactly one range.

use std::fmt;

/// Most leading hex digits a range is split by (65,536 ranges): beyond that, a table is
/// reconciled with more keys per range than asked for rather than with ever more scans.
const MAX_PREFIX_DIGITS: u32 = 4;

/// `[lower, upper)` in ServiceNow's string order of sys_ids; `None` is unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysIdRange {
    pub lower: Option<String>,
    pub upper: Option<String>,
}

impl SysIdRange {
    /// Every sys_id.
    pub fn all() -> Self {
        SysIdRange {
            lower: None,
            upper: None,
        }
    }

    /// Ranges covering every sys_id with about `rows / max_keys` rows or fewer each: one
    /// range when the table fits, else 16, 256, … ranges by leading hex digits.
    pub fn split(rows: u64, max_keys: usize) -> Vec<SysIdRange> {
        let max_keys = max_keys.max(1) as u64;
        let needed = rows.div_ceil(max_keys).max(1);
        let mut digits = 0u32;
        while 16u64.pow(digits) < needed && digits < MAX_PREFIX_DIGITS {
            digits += 1;
        }
        if digits == 0 {
            return vec![SysIdRange::all()];
        }
        let count = 16usize.pow(digits);
        let prefix = |n: usize| format!("{n:0width$x}", width = digits as usize);
        (0..count)
            .map(|n| SysIdRange {
                lower: (n > 0).then(|| prefix(n)),
                upper: (n + 1 < count).then(|| prefix(n + 1)),
            })
            .collect()
    }

    /// Whether `sys_id` lies in this range (byte-wise string order, as ServiceNow compares
    /// sys_ids).
    pub fn contains(&self, sys_id: &str) -> bool {
        self.lower.as_deref().is_none_or(|lower| sys_id >= lower)
            && self.upper.as_deref().is_none_or(|upper| sys_id < upper)
    }

    /// The encoded-query conditions of this range (empty for [`SysIdRange::all`]).
    pub fn conditions(&self) -> Vec<String> {
        let mut conditions = Vec::new();
        if let Some(lower) = &self.lower {
            conditions.push(format!("sys_id>={lower}"));
        }
        if let Some(upper) = &self.upper {
            conditions.push(format!("sys_id<{upper}"));
        }
        conditions
    }
}

impl fmt::Display for SysIdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {})",
            self.lower.as_deref().unwrap_or("-∞"),
            self.upper.as_deref().unwrap_or("+∞")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_fits_is_one_range_and_a_larger_one_is_split_by_hex_prefixes() {
        assert_eq!(SysIdRange::split(0, 100), vec![SysIdRange::all()]);
        assert_eq!(SysIdRange::split(100, 100), vec![SysIdRange::all()]);
        let ranges = SysIdRange::split(101, 100);
        assert_eq!(ranges.len(), 16);
        assert_eq!(ranges[0].upper.as_deref(), Some("1"));
        assert_eq!(ranges[15].lower.as_deref(), Some("f"));
        assert_eq!(SysIdRange::split(1_700, 100).len(), 256);
        assert_eq!(SysIdRange::split(u64::MAX, 1).len(), 65_536);
    }

    #[test]
    fn every_sys_id_falls_in_exactly_one_range() {
        let ranges = SysIdRange::split(1_000, 10);
        for sys_id in [
            "00000000000000000000000000000000",
            "0fffffffffffffffffffffffffffffff",
            "10000000000000000000000000000000",
            "46d44a5e4f1a3210a1b2c3d4e5f60718",
            "ffffffffffffffffffffffffffffffff",
            "",
            "IMPORTED-42",
            "zzz",
        ] {
            let holding = ranges.iter().filter(|r| r.contains(sys_id)).count();
            assert_eq!(holding, 1, "{sys_id:?}");
        }
        assert_eq!(
            ranges[0x46].conditions(),
            ["sys_id>=46".to_owned(), "sys_id<47".to_owned()]
        );
    }
}
