//! Which fields the fetcher asks ServiceNow for (`sysparm_fields`).
//!
//! Without `sysparm_fields` the Table API returns every column of the record but no dot-walked
//! values, and SEI's datasheet needs two of those (the business service's department, the
//! requester's department). So for incident and change_request the fetcher lists the columns
//! itself — read from `sys_dictionary` for the table and `task`, which both extend — plus the
//! dot-walked fields. The same list, minus excluded fields, implements `exclude_at_source` for
//! those two tables; other tables are fetched without a list (see [`needs_field_list`]) and
//! their excluded fields are removed before anything is published.

use std::collections::BTreeSet;

use nowstream_servicenow::client::{Client, ClientError, ScanRequest};
use nowstream_servicenow::table::tables;

use crate::raw::field_value;

/// Dot-walked fields the normalizer maps, per table.
pub fn dot_walked(table: &str) -> &'static [&'static str] {
    match table {
        tables::INCIDENT => &["business_service.department"],
        tables::CHANGE_REQUEST => &["business_service.department", "requested_by.department"],
        _ => &[],
    }
}

/// The tables whose dictionary rows define `table`'s columns.
fn dictionary_tables(table: &str) -> Vec<&str> {
    match table {
        tables::INCIDENT | tables::CHANGE_REQUEST => vec![table, tables::TASK],
        _ => vec![table],
    }
}

/// Whether the fetcher must send an explicit field list for `table`: only to get its
/// dot-walked fields. Exclusion alone is no reason: a table whose columns `sys_dictionary` does
/// not list under its own name (inherited from a parent such as `sys_metadata`, or absent for
/// the integration user) would come back with nothing but `sys_id` and `sys_updated_on`, and
/// every user or field definition would silently lose its data.
pub fn needs_field_list(table: &str) -> bool {
    !dot_walked(table).is_empty()
}

/// Every column of `table` plus its dot-walked fields, minus those `excluded` says to drop.
/// A dot-walked field is dropped when its full name or its first segment is excluded.
pub async fn field_list(
    client: &Client,
    table: &str,
    excluded: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<String>, ClientError> {
    let filter = format!(
        "nameIN{}^elementISNOTEMPTY",
        dictionary_tables(table).join(",")
    );
    let mut scan = client.scan(
        ScanRequest::new(tables::SYS_DICTIONARY)
            .filter(filter)
            .fields(["element"]),
    );
    let mut columns = BTreeSet::new();
    while let Some(page) = scan.next_page().await? {
        columns.extend(
            page.records
                .iter()
                .filter_map(|row| field_value(row, "element"))
                .map(str::to_owned),
        );
    }
    columns.extend(dot_walked(table).iter().map(|field| (*field).to_owned()));
    Ok(columns
        .into_iter()
        .filter(|field| {
            let base = field.split('.').next().unwrap_or(field);
            !excluded(field) && !excluded(base)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_incident_and_change_request_need_a_field_list_for_their_dot_walked_departments() {
        assert!(needs_field_list("incident"));
        assert!(needs_field_list("change_request"));
        assert!(!needs_field_list("sys_user"));
        assert!(!needs_field_list("sys_dictionary"));
    }
}
