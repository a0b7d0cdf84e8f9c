//! Read access per table, as the fetcher's first page of each would need it, and the mapped
//! fields `sys_dictionary` shows the integration user.

use std::collections::BTreeSet;
use std::time::Duration;

use nowstream_model::table_api::query::SYS_ID;
use nowstream_model::table_api::tables;
use nowstream_runtime::FetcherConfig;
use nowstream_servicenow::client::{Client, ClientError, ListRequest};

use nowstream_model::ExclusionPolicy;

use super::report::{Check, CheckKind};
use crate::fields;

/// Every table the fetcher reads.
pub const TABLES: [&str; 6] = [
    tables::INCIDENT,
    tables::CHANGE_REQUEST,
    tables::SYS_USER,
    tables::SYS_DICTIONARY,
    tables::SYS_AUDIT_DELETE,
    tables::SYS_CHOICE,
];

/// Tables whose field list is built from `sys_dictionary` (see [`crate::fields`]).
pub const FIELD_LIST_TABLES: [&str; 2] = [tables::INCIDENT, tables::CHANGE_REQUEST];

/// One `sysparm_limit=1` read, as the fetcher's first page would be.
pub(super) async fn check_table(
    client: &Client,
    table: &'static str,
    fetcher: &FetcherConfig,
) -> Check {
    let kind = CheckKind::TableRead(table);
    let request = ListRequest {
        table: table.to_owned(),
        query: String::new(),
        limit: 1,
        offset: 0,
        fields: Some(vec![SYS_ID.to_owned()]),
    };
    match client.list_page(&request).await {
        Ok(page) => {
            let rows = page.total.map_or_else(
                || "row count not reported".to_owned(),
                |n| format!("{n} rows"),
            );
            if page.records.is_empty() && page.total.is_some_and(|n| n > 0) {
                Check::warn(
                    kind,
                    format!("readable ({rows}), but the first row is hidden by an ACL"),
                    format!(
                        "row-level ACLs hide some {table} records from the integration user; \
                         they will not reach SEI unless its roles cover them"
                    ),
                )
            } else {
                Check::pass(kind, format!("readable ({rows})"))
            }
        }
        Err(ClientError::Forbidden { message, .. }) if table == tables::SYS_AUDIT_DELETE => {
            Check::warn(
                kind,
                format!(
                    "read access to {table} denied (HTTP 403): {message}; audit-based deletes \
                     are off for this integration, and the fetcher finds deletions by \
                     reconciliation instead (a keys-only scan of each table every {}, see \
                     reconcile_interval)",
                    humanize(fetcher.reconcile_interval)
                ),
                "deletions reach SEI up to one reconcile_interval late; for deletes within a \
                 poll, grant the integration user read access to sys_audit_delete (an ACL on \
                 it for one of the user's roles; on a default instance only admin has it)",
            )
        }
        Err(ClientError::Forbidden { message, .. }) => Check::fail(
            kind,
            format!("read access to {table} denied (HTTP 403): {message}"),
            table_access_hint(table),
        ),
        Err(ClientError::Rejected {
            status: 400 | 404,
            message,
            ..
        }) => Check::fail(
            kind,
            format!("the instance does not serve table {table}: {message}"),
            "the table's plugin may be inactive on this instance, or the Table API is blocked \
             for it",
        ),
        Err(error) => Check::fail(
            kind,
            format!("reading {table} failed: {error}"),
            "see the error; a transient failure may pass on the next run",
        ),
    }
}

/// `1h`, `90s`: a duration as the configuration writes it.
fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Compares the fields the normalizer maps for `table` with the columns `sys_dictionary` shows
/// the integration user. Missing ones are still asked for (see [`crate::fields`]), so this
/// warns: if ServiceNow does not return them either, they reach SEI empty.
pub(super) async fn check_mapped_fields(
    client: &Client,
    table: &'static str,
    excluded: Option<&ExclusionPolicy>,
) -> Check {
    let kind = CheckKind::MappedFields(table);
    let shown = match fields::dictionary_columns(client, table).await {
        Ok(shown) => shown,
        Err(error) => {
            return Check::warn(
                kind,
                format!("cannot compare with sys_dictionary: {error}"),
                "see the Read sys_dictionary check",
            );
        }
    };
    let missing: BTreeSet<&str> = fields::mapped_fields(table)
        .into_iter()
        .map(|field| field.split('.').next().unwrap_or(field))
        .filter(|field| !excluded.is_some_and(|policy| policy.excludes(field)))
        .filter(|field| !shown.contains(*field))
        .collect();
    if missing.is_empty() {
        return Check::pass(
            kind,
            format!("sys_dictionary shows every field nowstream maps for {table}"),
        );
    }
    Check::warn(
        kind,
        format!(
            "sys_dictionary does not show {} mapped field(s) of {table} to the integration \
             user: {}; the fetcher asks for them anyway",
            missing.len(),
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ),
        "if they reach SEI empty, the user lacks read access to them (field ACLs) or to their \
         sys_dictionary rows (personalize_dictionary); records without number or \
         sys_created_on are logged and counted in nowstream_fetcher_records_missing_identity_total",
    )
}

fn table_access_hint(table: &str) -> String {
    let role = match table {
        tables::INCIDENT | tables::CHANGE_REQUEST => {
            "itil grants read access to incidents and change requests"
        }
        tables::SYS_USER => "itil reads users; user_admin reads all of them",
        tables::SYS_DICTIONARY => "personalize_dictionary grants read access to sys_dictionary",
        tables::SYS_CHOICE => "personalize_choices grants read access to sys_choice",
        tables::SYS_AUDIT_DELETE => {
            "sys_audit_delete is often admin-only: add a read ACL on it for the integration \
             user's role, or deletions reach SEI only through reconciliation"
        }
        _ => "add a read ACL for the integration user's role",
    };
    format!("grant the integration user read access to {table} ({role})")
}
