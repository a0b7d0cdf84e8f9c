//! The integration's filters (`metadata.incident_query`, `change_request_query`), checked
//! against the instance.
//!
//! ServiceNow drops a condition on a field the table does not have without a word (with the
//! default `glide.invalid_query.returns_no_rows=false`): a misspelt `categroy=network` makes the
//! filter let every incident through. So each field a filter names is looked up in
//! `sys_dictionary`, under the table and every table it extends (found through
//! `sys_db_object.super_class`: incident and change_request extend task); a dot-walked field
//! is followed through each reference to its target table.

use std::collections::{BTreeMap, HashMap};

use nowstream_model::table_api::query::EncodedQuery;
use nowstream_model::table_api::tables;
use nowstream_runtime::IntegrationMetadata;
use nowstream_servicenow::client::{Client, ClientError, ListRequest, ScanRequest};

use super::report::{Check, CheckKind};

/// The table of table definitions.
const SYS_DB_OBJECT: &str = "sys_db_object";
/// Longest `super_class` chain followed; ServiceNow hierarchies are a few levels deep.
const MAX_DEPTH: usize = 16;

/// One check per configured filter. `index` is the integration's place in `integrations`,
/// for naming the key.
pub(super) async fn check_filters(
    client: &Client,
    metadata: &IntegrationMetadata,
    index: usize,
) -> Vec<Check> {
    let mut dictionary = Dictionary::new(client);
    let mut checks = Vec::new();
    for (key, table, query) in metadata.filters() {
        let path = metadata.key_path(index, key);
        checks.push(check_filter(&mut dictionary, key, &path, table, query).await);
    }
    checks
}

/// The check kinds [`check_filters`] gives for `metadata`: for skipping them all.
pub(super) fn filter_kinds(metadata: &IntegrationMetadata) -> Vec<CheckKind> {
    metadata
        .filters()
        .map(|(key, _, _)| CheckKind::Filter(key))
        .collect()
}

async fn check_filter(
    dictionary: &mut Dictionary<'_>,
    key: &'static str,
    path: &str,
    table: &'static str,
    query: &str,
) -> Check {
    let kind = CheckKind::Filter(key);
    let parsed = match EncodedQuery::parse(query) {
        Ok(parsed) => parsed,
        Err(error) => {
            return Check::fail(
                kind,
                format!("{path} is not an encoded query nowstream can use: {error}"),
                format!("fix {path}; copy the query from the {table} list's filter (Copy query)"),
            );
        }
    };
    if !parsed.order_by.is_empty() {
        return Check::fail(
            kind,
            format!("{path} orders (ORDERBY), which would break the fetcher's keyset paging"),
            format!("remove the ORDERBY/ORDERBYDESC terms from {path}"),
        );
    }
    let lineage = match dictionary.lineage(table).await {
        Ok(lineage) => lineage,
        Err(error) => {
            return Check::warn(
                kind,
                format!(
                    "cannot check the fields {path} names: reading {SYS_DB_OBJECT} failed: {error}"
                ),
                "grant the integration user read access to sys_db_object and sys_dictionary \
                 (personalize_dictionary), or make sure every field in the query exists: \
                 ServiceNow ignores a condition on an unknown field",
            );
        }
    };
    let columns = match dictionary.columns(&lineage).await {
        Ok(columns) => columns,
        Err(error) => {
            return Check::warn(
                kind,
                format!(
                    "cannot check the fields {path} names: reading sys_dictionary failed: {error}"
                ),
                "see the Read sys_dictionary check; ServiceNow ignores a condition on an \
                 unknown field",
            );
        }
    };
    if !columns.contains_key("number") {
        return Check::warn(
            kind,
            format!(
                "cannot check the fields {path} names: sys_dictionary does not show {table}'s \
                 columns to the integration user"
            ),
            "grant personalize_dictionary, or make sure every field in the query exists: \
             ServiceNow ignores a condition on an unknown field",
        );
    }
    let mut unknown = Vec::new();
    for field in parsed.fields() {
        match dictionary.field_exists(&columns, field).await {
            Ok(true) => {}
            Ok(false) => unknown.push(field.to_owned()),
            Err(error) => {
                return Check::warn(
                    kind,
                    format!("cannot check {field} in {path}: {error}"),
                    "ServiceNow ignores a condition on an unknown field",
                );
            }
        }
    }
    if unknown.is_empty() {
        return Check::pass(
            kind,
            format!(
                "{path} parses and every field it names exists on {table} ({})",
                lineage.join(" → ")
            ),
        );
    }
    Check::fail(
        kind,
        format!(
            "{path} names field(s) {table} does not have: {}; ServiceNow ignores such a \
             condition silently, so the filter would not limit what it seems to",
            unknown.join(", ")
        ),
        format!(
            "fix the field name(s) in {path}; {table}'s columns are those sys_dictionary lists \
             for {}",
            lineage.join(", ")
        ),
    )
}

/// Table lineages and columns read once per validation.
struct Dictionary<'a> {
    client: &'a Client,
    lineages: HashMap<String, Vec<String>>,
    columns: HashMap<Vec<String>, BTreeMap<String, String>>,
}

impl<'a> Dictionary<'a> {
    fn new(client: &'a Client) -> Self {
        Dictionary {
            client,
            lineages: HashMap::new(),
            columns: HashMap::new(),
        }
    }

    /// `table` and the tables it extends, nearest first (`incident`, `task`).
    async fn lineage(&mut self, table: &str) -> Result<Vec<String>, ClientError> {
        if let Some(found) = self.lineages.get(table) {
            return Ok(found.clone());
        }
        let mut lineage = vec![table.to_owned()];
        while lineage.len() < MAX_DEPTH {
            let Some(current) = lineage.last() else {
                break;
            };
            let request = ListRequest {
                table: SYS_DB_OBJECT.to_owned(),
                query: format!("name={current}"),
                limit: 1,
                offset: 0,
                fields: Some(vec!["name".to_owned(), "super_class.name".to_owned()]),
            };
            let page = self.client.list_page(&request).await?;
            let parent = page
                .records
                .first()
                .and_then(|record| record.stored_value("super_class.name"))
                .filter(|parent| !parent.is_empty() && !lineage.contains(parent));
            match parent {
                Some(parent) => lineage.push(parent),
                None => break,
            }
        }
        self.lineages.insert(table.to_owned(), lineage.clone());
        Ok(lineage)
    }

    /// Column name → referenced table (empty for non-references) of the tables of `lineage`.
    async fn columns(
        &mut self,
        lineage: &[String],
    ) -> Result<BTreeMap<String, String>, ClientError> {
        if let Some(found) = self.columns.get(lineage) {
            return Ok(found.clone());
        }
        let filter = format!("nameIN{}^elementISNOTEMPTY", lineage.join(","));
        let mut scan = self.client.scan(
            ScanRequest::new(tables::SYS_DICTIONARY)
                .filter(filter)
                .fields(["element", "reference"]),
        );
        let mut columns = BTreeMap::new();
        while let Some(page) = scan.next_page().await? {
            for row in &page.records {
                if let Some(element) = row.stored_value("element") {
                    let reference = row.stored_value("reference").unwrap_or_default();
                    columns.insert(element, reference);
                }
            }
        }
        self.columns.insert(lineage.to_vec(), columns.clone());
        Ok(columns)
    }

    /// Whether the (possibly dot-walked) `path` exists, starting from a table with `columns`.
    /// A referenced table whose columns the dictionary does not show at all cannot be judged,
    /// and is given the benefit of the doubt.
    async fn field_exists(
        &mut self,
        columns: &BTreeMap<String, String>,
        path: &str,
    ) -> Result<bool, ClientError> {
        let mut parts = path.split('.');
        let Some(first) = parts.next() else {
            return Ok(false);
        };
        let Some(mut reference) = columns.get(first).cloned() else {
            return Ok(false);
        };
        for part in parts {
            if reference.is_empty() {
                return Ok(false);
            }
            let target_lineage = self.lineage(&reference).await?;
            let target_columns = self.columns(&target_lineage).await?;
            if target_columns.is_empty() {
                return Ok(true);
            }
            match target_columns.get(part) {
                Some(next) => reference = next.clone(),
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}
