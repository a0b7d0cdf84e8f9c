//! Executing a Table API list request: filter with the encoded query, order, count, page.
//!
//! The query language itself (parsing, matching, value comparison) belongs to
//! `nowstream_model::table_api::query`, so the fetcher and the simulator agree on what a query means.

use std::cmp::Ordering;

use nowstream_model::table_api::query::{EncodedQuery, compare_values};

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

/// Whether `path` (`field` or dot-walked `reference.field…`) names a field of `table`, following
/// each reference to its target table.
pub fn field_exists(store: &Store, table: &str, path: &str) -> bool {
    let mut current = table.to_owned();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(def) = store.field_def(&current, part) else {
            return false;
        };
        if parts.peek().is_some() {
            match def.reference_target() {
                Some(target) => current = target.to_owned(),
                None => return false,
            }
        }
    }
    true
}

/// `query` without its conditions on fields `table` does not have, as a real instance runs it
/// (with the default `glide.invalid_query.returns_no_rows=false`): the condition is dropped
/// silently, so `u_typo=x` alone matches every row. A clause left without conditions is
/// dropped; a group left without clauses matches every row.
pub fn without_unknown_fields(store: &Store, table: &str, query: &EncodedQuery) -> EncodedQuery {
    let groups = query
        .groups
        .iter()
        .map(|group| {
            group
                .iter()
                .map(|clause| {
                    clause
                        .iter()
                        .filter(|condition| field_exists(store, table, &condition.field))
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .filter(|clause| !clause.is_empty())
                .collect()
        })
        .collect();
    EncodedQuery {
        groups,
        order_by: query.order_by.clone(),
    }
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
    let known = without_unknown_fields(store, table, query);
    let mut matching: Vec<Row<'a>> = store
        .scan(table)?
        .filter(|(concrete, record)| {
            known.matches(&|name: &str| raw_value(store, concrete, record, name))
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
