//! Executing a Table API list request: filter with the encoded query, order, count, page.
//!
//! The query language itself (parsing, matching, value comparison) belongs to
//! `nowstream_servicenow::query`, so the fetcher and the simulator agree on what a query means.

use std::cmp::Ordering;

use nowstream_servicenow::query::{EncodedQuery, compare_values};

use crate::display::raw_value;
use crate::store::{Record, Store, StoreError};

/// A row with the concrete table it lives in (differs from the requested one for `task`).
pub type Row<'a> = (&'static str, &'a Record);

/// One page of a list request.
#[derive(Debug)]
pub struct Page<'a> {
    /// Rows matching the query, before limit/offset (`X-Total-Count`).
    pub total: usize,
    /// The rows in `[offset, offset + limit)`, each with its concrete table.
    pub rows: Vec<Row<'a>>,
}

/// Rows of `table` matching `query`, ordered by its `ORDERBY` terms only (no implicit
/// sys_id tie-break: ties keep insertion order, as a database heap would), then paged.
pub fn list<'a>(
    store: &'a Store,
    table: &str,
    query: &EncodedQuery,
    offset: usize,
    limit: usize,
) -> Result<Page<'a>, StoreError> {
    let mut matching: Vec<Row<'a>> = store
        .scan(table)?
        .filter(|(concrete, record)| {
            query.matches(&|name: &str| raw_value(store, concrete, record, name))
        })
        .collect();
    if !query.order_by.is_empty() {
        let mut keyed: Vec<(Vec<Option<String>>, Row<'a>)> = matching
            .into_iter()
            .map(|(concrete, record)| {
                let keys = query
                    .order_by
                    .iter()
                    .map(|o| raw_value(store, concrete, record, &o.field))
                    .collect();
                (keys, (concrete, record))
            })
            .collect();
        keyed.sort_by(|(a, _), (b, _)| {
            query
                .order_by
                .iter()
                .zip(a.iter().zip(b))
                .map(|(order, (x, y))| {
                    let ord = compare_values(x.as_deref(), y.as_deref());
                    if order.descending { ord.reverse() } else { ord }
                })
                .find(|ord| *ord != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        });
        matching = keyed.into_iter().map(|(_, row)| row).collect();
    }
    let total = matching.len();
    let rows = matching.into_iter().skip(offset).take(limit).collect();
    Ok(Page { total, rows })
}
