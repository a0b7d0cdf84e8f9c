//! The sys_ids a table holds now, from a keys-only scan (`sysparm_fields=sys_id`).
//!
//! The scan pages in sys_id order (`sys_id>last^ORDERBYsys_id`), not in the fetcher's usual
//! `(sys_updated_on, sys_id)` order: a sys_id never changes, so a record that exists for the
//! whole scan is listed exactly once, however often it is updated meanwhile. Row ACLs filter
//! after the limit, so, as in every scan, the end is decided by count, never by a short page.
//!
//! Memory: a sys_id of 32 hex digits is held as a `u128` in a sorted `Vec` (16 bytes per
//! record); anything else (rare: imported records) as a string.

use std::collections::BTreeSet;

use nowstream_model::table_api::query::{EncodedQuery, SYS_ID};
use nowstream_servicenow::client::{Client, ClientError, ListRequest};
use tokio_util::sync::CancellationToken;

use super::ranges::SysIdRange;

/// A set of sys_ids, compact for ServiceNow's hex sys_ids.
#[derive(Debug, Default)]
pub struct LiveKeys {
    hex: Vec<u128>,
    other: BTreeSet<String>,
    sorted: bool,
}

/// The `u128` of a sys_id of 32 lowercase hex digits (ServiceNow's form); `None` otherwise, so
/// that `ABC…` and `abc…` stay different sys_ids, as they are to ServiceNow.
fn hex_key(sys_id: &str) -> Option<u128> {
    (sys_id.len() == 32
        && sys_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| u128::from_str_radix(sys_id, 16).ok())
    .flatten()
}

impl LiveKeys {
    pub fn insert(&mut self, sys_id: &str) {
        match hex_key(sys_id) {
            Some(key) => {
                self.hex.push(key);
                self.sorted = false;
            }
            None => {
                self.other.insert(sys_id.to_owned());
            }
        }
    }

    /// Sorts and deduplicates; [`LiveKeys::contains`] needs it.
    pub fn seal(&mut self) {
        self.hex.sort_unstable();
        self.hex.dedup();
        self.hex.shrink_to_fit();
        self.sorted = true;
    }

    pub fn contains(&self, sys_id: &str) -> bool {
        debug_assert!(
            self.sorted || self.hex.is_empty(),
            "seal() before contains()"
        );
        match hex_key(sys_id) {
            Some(key) => self.hex.binary_search(&key).is_ok(),
            None => self.other.contains(sys_id),
        }
    }

    pub fn len(&self) -> usize {
        self.hex.len() + self.other.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a keys-only scan stopped early.
#[derive(Debug, thiserror::Error)]
pub enum KeyScanError {
    #[error(transparent)]
    ServiceNow(#[from] ClientError),
    #[error(
        "table {table}: the keys-only scan does not advance (after {after:?} came {got:?}); the \
         instance does not order by sys_id"
    )]
    OutOfOrder {
        table: String,
        after: String,
        got: String,
    },
    #[error("cancelled")]
    Cancelled,
}

/// `conditions` (ANDed, no `^NQ`) AND `filter`, distributed over the filter's `^NQ` groups,
/// then `order`.
pub fn with_filter(conditions: &[String], filter: Option<&EncodedQuery>, order: &str) -> String {
    let own = conditions.join("^");
    let query = match (filter, EncodedQuery::parse(&own)) {
        (Some(filter), Ok(parsed)) => parsed.and(filter).to_string(),
        _ => own,
    };
    match (query.is_empty(), order.is_empty()) {
        (_, true) => query,
        (true, false) => order.to_owned(),
        (false, false) => format!("{query}^{order}"),
    }
}

/// Every sys_id of `table` in `range` that matches `filter` (the integration's configured
/// filter of the table), as the integration user sees them.
pub async fn scan(
    client: &Client,
    table: &str,
    range: &SysIdRange,
    filter: Option<&EncodedQuery>,
    page_size: usize,
    cancel: &CancellationToken,
) -> Result<LiveKeys, KeyScanError> {
    let mut keys = LiveKeys::default();
    let mut last: Option<String> = None;
    let mut offset = 0usize;
    let limit = page_size.max(1);
    loop {
        let mut conditions = range.conditions();
        if let Some(last) = &last {
            conditions.push(format!("sys_id>{last}"));
        }
        let request = ListRequest {
            table: table.to_owned(),
            query: with_filter(&conditions, filter, "ORDERBYsys_id"),
            limit,
            offset,
            fields: Some(vec![SYS_ID.to_owned()]),
        };
        let page = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(KeyScanError::Cancelled),
            page = client.list_page(&request) => page?,
        };
        let more = page.rows_remain_after(offset, limit);
        if page.records.is_empty() {
            if more == Some(true) {
                // Every row of this window is hidden by row ACLs: step over them.
                offset = offset.saturating_add(limit);
                continue;
            }
            break;
        }
        let full = page.records.len() >= limit;
        let mut page_last = None;
        for sys_id in page
            .records
            .iter()
            .filter_map(|record| record.stored_value(SYS_ID))
        {
            keys.insert(&sys_id);
            page_last = Some(sys_id);
        }
        // Only progress is checked, not the order inside a page: a database collation may
        // order unusual (non-hex) sys_ids differently, which costs nothing here because every
        // candidate is asked for directly before it is deleted. A cursor that does not move
        // would loop for ever.
        match (page_last, &last) {
            (Some(got), Some(previous)) if got.as_str() <= previous.as_str() => {
                return Err(KeyScanError::OutOfOrder {
                    table: table.to_owned(),
                    after: previous.clone(),
                    got,
                });
            }
            (Some(got), _) => last = Some(got),
            (None, _) => break,
        }
        offset = 0;
        if full && more == Some(false) {
            break;
        }
    }
    keys.seal();
    Ok(keys)
}

/// sys_ids per re-check request (about 3.3 kB of query string).
pub const RECHECK_BATCH: usize = 100;

/// Which of `sys_ids` (all of `table`) the instance still returns and that still match
/// `filter`, asked for directly by sys_id (`sys_idIN…`, [`RECHECK_BATCH`] at a time): the
/// last word before a delete is published.
pub async fn still_present(
    client: &Client,
    table: &str,
    sys_ids: &[String],
    filter: Option<&EncodedQuery>,
    cancel: &CancellationToken,
) -> Result<BTreeSet<String>, KeyScanError> {
    let mut present = BTreeSet::new();
    for batch in sys_ids.chunks(RECHECK_BATCH) {
        let request = ListRequest {
            table: table.to_owned(),
            query: with_filter(&[format!("sys_idIN{}", batch.join(","))], filter, ""),
            limit: batch.len(),
            offset: 0,
            fields: Some(vec![SYS_ID.to_owned()]),
        };
        let page = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(KeyScanError::Cancelled),
            page = client.list_page(&request) => page?,
        };
        present.extend(
            page.records
                .iter()
                .filter_map(|record| record.stored_value(SYS_ID)),
        );
    }
    Ok(present)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_is_anded_into_each_of_its_groups_before_the_order() {
        let filter = EncodedQuery::parse("category=network^NQpriority=1").unwrap();
        let conditions = ["sys_id>=4".to_owned(), "sys_id<8".to_owned()];
        assert_eq!(
            with_filter(&conditions, Some(&filter), "ORDERBYsys_id"),
            "sys_id>=4^sys_id<8^category=network^NQsys_id>=4^sys_id<8^priority=1^ORDERBYsys_id"
        );
        assert_eq!(
            with_filter(&[], Some(&filter), ""),
            "category=network^NQpriority=1"
        );
        assert_eq!(
            with_filter(&conditions, None, "ORDERBYsys_id"),
            "sys_id>=4^sys_id<8^ORDERBYsys_id"
        );
        assert_eq!(with_filter(&[], None, "ORDERBYsys_id"), "ORDERBYsys_id");
    }

    #[test]
    fn hex_sys_ids_are_held_as_numbers_and_others_as_text() {
        let mut keys = LiveKeys::default();
        keys.insert("46d44a5e4f1a3210a1b2c3d4e5f60718");
        keys.insert("00000000000000000000000000000001");
        keys.insert("46d44a5e4f1a3210a1b2c3d4e5f60718");
        keys.insert("IMPORTED-1");
        keys.insert("46D44A5E4F1A3210A1B2C3D4E5F60718");
        keys.seal();
        assert_eq!(keys.len(), 4);
        assert!(keys.contains("46d44a5e4f1a3210a1b2c3d4e5f60718"));
        assert!(keys.contains("00000000000000000000000000000001"));
        assert!(keys.contains("IMPORTED-1"));
        assert!(keys.contains("46D44A5E4F1A3210A1B2C3D4E5F60718"));
        assert!(!keys.contains("00000000000000000000000000000002"));
        assert!(!keys.contains("imported-1"));
        assert_eq!(keys.hex.len(), 2, "hex sys_ids take 16 bytes each");
    }
}
