//! Which fields the fetcher asks ServiceNow for (`sysparm_fields`).
//!
//! Without `sysparm_fields` the Table API returns every column of the record but no dot-walked
//! values, and SEI's datasheet needs two of those (the business service's department, the
//! requester's department). So for incident and change_request the fetcher lists the columns
//! itself — read from `sys_dictionary` for the table and `task`, which both extend — plus the
//! dot-walked fields. The same list, minus excluded fields, implements `exclude_at_source` for
//! those two tables; other tables are fetched without a list (see [`needs_field_list`]) and
//! their excluded fields are removed before anything is published.
//!
//! The dictionary is not trusted to be complete: an ACL on dictionary rows, or a column defined
//! on a parent table other than `task`, hides columns from the integration user, and a list
//! built from it alone would silently fetch every mapped field as null. So the list always
//! also holds every field the normalizer maps ([`mapped_fields`]) and the key and version
//! fields ([`SYSTEM_FIELDS`]); ServiceNow leaves fields it does not know out of the response,
//! so asking for them is harmless.
//!
//! Should a record still come back without a mapped identity field (`number`,
//! `sys_created_on`), the fetcher reports it ([`IdentityReport`]: a warning naming
//! table and sys_id, and a metric by table) and publishes it anyway: it is a real change, and
//! dropping it would lose it. The fetcher is where this is checked because it is the stage that
//! chose the field list and can name the request that lacked the field.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use nowstream_model::Entity;
use nowstream_model::field_sources::{derived_fields, field_sources};
use nowstream_model::table_api::{stored_value, tables};
use nowstream_servicenow::client::{Client, ClientError, ScanRequest};

use crate::metrics;

/// Fields every record is asked for whatever the dictionary lists: key and version.
pub const SYSTEM_FIELDS: [&str; 4] = [
    "sys_id",
    "sys_updated_on",
    "sys_mod_count",
    "sys_created_on",
];

/// Mapped fields that identify a record to a person: a record without one is reported.
const IDENTITY_FIELDS: [&str; 2] = ["number", "sys_created_on"];

/// Most records per page named one by one in the log when identity fields are missing; the
/// rest of the page is summed up in one more line.
const MISSING_IDENTITY_LOGGED_PER_PAGE: usize = 5;

/// Every ServiceNow field the normalizer maps for records of `table` (as sources or inputs of
/// derived fields), dot-walked ones included. Empty for a table the normalizer does not map.
pub fn mapped_fields(table: &str) -> BTreeSet<&'static str> {
    let Some(entity) = Entity::from_source_table(table) else {
        return BTreeSet::new();
    };
    field_sources(entity)
        .iter()
        .map(|source| source.source)
        .chain(
            derived_fields(entity)
                .iter()
                .flat_map(|derived| derived.inputs.iter().copied()),
        )
        .collect()
}

/// The mapped identity fields of `table` (`number`, `sys_created_on`, where the normalizer
/// maps them).
pub fn identity_fields(table: &str) -> Vec<&'static str> {
    let mapped = mapped_fields(table);
    IDENTITY_FIELDS
        .into_iter()
        .filter(|field| mapped.contains(field))
        .collect()
}

/// Counts and logs the records of a page that lack a mapped identity field (other than one
/// the exclusion policy says was left out on purpose), one record at a time as the page is
/// published ([`IdentityReport::check`]), with a summary at the end of the page
/// ([`IdentityReport::finish`]).
#[derive(Debug)]
pub struct IdentityReport<'a> {
    integration_id: &'a str,
    table: &'a str,
    identity: Vec<&'static str>,
    lacking: usize,
}

impl<'a> IdentityReport<'a> {
    pub fn new(integration_id: &'a str, table: &'a str, excluded: &dyn Fn(&str) -> bool) -> Self {
        IdentityReport {
            integration_id,
            table,
            identity: identity_fields(table)
                .into_iter()
                .filter(|field| !excluded(field))
                .collect(),
            lacking: 0,
        }
    }

    /// The identity fields checked (a record's other fields need not be read).
    pub fn fields(&self) -> &[&'static str] {
        &self.identity
    }

    /// Counts `record` if it lacks an identity field; logs the first few of a page.
    pub fn check(&mut self, record: &Map<String, Value>) {
        let missing: Vec<&str> = self
            .identity
            .iter()
            .copied()
            .filter(|field| stored_value(record, field).is_none())
            .collect();
        if missing.is_empty() {
            return;
        }
        for field in &missing {
            metrics::missing_identity(self.integration_id, self.table, field, 1);
        }
        self.lacking += 1;
        if self.lacking <= MISSING_IDENTITY_LOGGED_PER_PAGE {
            tracing::warn!(
                integration = %self.integration_id,
                table = %self.table,
                sys_id = %stored_value(record, "sys_id").unwrap_or(Cow::Borrowed("(no sys_id)")),
                missing = %missing.join(","),
                "record arrived without a mapped identity field; it is published as returned \
                 (check the integration user's field ACLs on this table)"
            );
        }
    }

    /// The page's summary, when more records lacked an identity field than were named.
    pub fn finish(self) {
        if self.lacking > MISSING_IDENTITY_LOGGED_PER_PAGE {
            tracing::warn!(
                integration = %self.integration_id,
                table = %self.table,
                records = self.lacking,
                "records of this page arrived without a mapped identity field (the first \
                 {MISSING_IDENTITY_LOGGED_PER_PAGE} are named above)"
            );
        }
    }
}

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

/// The columns `sys_dictionary` shows the integration user for `table` (and the tables it
/// extends).
pub async fn dictionary_columns(
    client: &Client,
    table: &str,
) -> Result<BTreeSet<String>, ClientError> {
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
                .filter_map(|row| row.stored_value("element")),
        );
    }
    Ok(columns)
}

/// Every column of `table` the dictionary shows, every mapped field, the key and version fields
/// and the dot-walked fields, minus those `excluded` says to drop. A dot-walked field is dropped
/// when its full name or its first segment is excluded.
pub async fn field_list(
    client: &Client,
    table: &str,
    excluded: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<String>, ClientError> {
    let mut columns = dictionary_columns(client, table).await?;
    columns.extend(mapped_fields(table).into_iter().map(str::to_owned));
    columns.extend(SYSTEM_FIELDS.iter().map(|field| (*field).to_owned()));
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

    #[test]
    fn mapped_fields_include_identity_timestamps_and_dot_walks() {
        let incident = mapped_fields("incident");
        for field in [
            "number",
            "state",
            "priority",
            "sys_created_on",
            "opened_at",
            "resolved_at",
            "business_service.department",
        ] {
            assert!(incident.contains(field), "{field}");
        }
        assert!(mapped_fields("change_request").contains("requested_by.department"));
        assert!(mapped_fields("sys_audit_delete").is_empty());
        assert_eq!(identity_fields("incident"), ["number", "sys_created_on"]);
        assert_eq!(identity_fields("sys_user"), ["sys_created_on"]);
    }
}
