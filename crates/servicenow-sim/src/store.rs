//! In-memory tables of string-valued records, with ServiceNow's write semantics.
//!
//! Records keep insertion order (like rows in a heap table): a query without `ORDERBY`
//! returns them in that order, and ties under `ORDERBY` keep it too, so a client that forgets
//! its sys_id tie-break sees an order that is *not* sys_id order, as it would on a real
//! instance.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SubsecRound, Utc};
use indexmap::IndexMap;
use nowstream_model::table_api::{format_time, tables};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::schema::{self, FieldDef, TableSchema};

/// One record: field name → raw stored value (always a string, as in ServiceNow).
pub type Record = BTreeMap<String, String>;

/// Records per table, in insertion order; what the generator produces and the store loads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dataset {
    /// Table name → rows.
    pub tables: BTreeMap<String, Vec<Record>>,
}

/// Who performs a write: recorded in `sys_created_by` / `sys_updated_by` and in the
/// `*_by` references that business rules fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `sys_user.user_name`.
    pub user_name: String,
}

impl Actor {
    /// Actor for writes made through the test/admin API rather than as a user.
    pub fn system() -> Self {
        Self {
            user_name: "system".to_owned(),
        }
    }
}

/// A store operation that cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The table is not one the simulator serves.
    #[error("table {table:?} is not served by the simulator")]
    UnknownTable {
        /// Requested table.
        table: String,
    },
    /// No record with that sys_id.
    #[error("no record with sys_id {sys_id:?} in table {table:?}")]
    NotFound {
        /// Table searched.
        table: String,
        /// sys_id asked for.
        sys_id: String,
    },
    /// Writes to a view table such as `task`.
    #[error("table {table:?} is a read-only view in the simulator")]
    ReadOnly {
        /// Table written to.
        table: String,
    },
    /// An insert supplied a sys_id that is already taken.
    #[error("table {table:?} already has a record with sys_id {sys_id:?}")]
    Duplicate {
        /// Table inserted into.
        table: String,
        /// The clashing sys_id.
        sys_id: String,
    },
    /// A write whose values are not a JSON object.
    #[error("values written to table {table:?} must be a JSON object")]
    NotAnObject {
        /// Table written to.
        table: String,
    },
    /// An insert supplied a sys_id that is not 32 lowercase hex digits.
    #[error("sys_id {sys_id:?} for table {table:?} is not 32 lowercase hex digits")]
    BadSysId {
        /// Table inserted into.
        table: String,
        /// The rejected sys_id.
        sys_id: String,
    },
}

/// Fields a client can never set: the platform owns them.
const SYSTEM_OWNED: [&str; 6] = [
    "sys_created_on",
    "sys_created_by",
    "sys_updated_on",
    "sys_updated_by",
    "sys_mod_count",
    "sys_class_name",
];

/// The simulator's data.
#[derive(Debug)]
pub struct Store {
    schemas: BTreeMap<&'static str, TableSchema>,
    tables: BTreeMap<&'static str, IndexMap<String, Record>>,
    /// Custom `u_*` fields per table, derived from `sys_dictionary` after every change to it.
    custom_fields: BTreeMap<String, Vec<FieldDef>>,
    /// table → element → value → label, derived from `sys_choice` after every change to it
    /// (nested so that lookups, done for every rendered field, need no allocation).
    choice_labels: HashMap<String, HashMap<String, HashMap<String, String>>>,
    /// Frozen "now" for tests; `None` means the wall clock.
    frozen_now: Option<DateTime<Utc>>,
    /// Makes sys_ids of records inserted at run time repeatable for a given seed.
    rng: ChaCha8Rng,
    /// Next task number per table (INC…, CHG…).
    next_number: HashMap<&'static str, u64>,
}

impl Store {
    /// A store holding `dataset`; `seed` drives the sys_ids of records inserted later.
    pub fn new(dataset: Dataset, seed: u64) -> Self {
        let schemas: BTreeMap<&'static str, TableSchema> = schema::all_tables()
            .into_iter()
            .map(|s| (s.name, s))
            .collect();
        let mut tables: BTreeMap<&'static str, IndexMap<String, Record>> = schemas
            .values()
            .filter(|s| !s.is_view)
            .map(|s| (s.name, IndexMap::new()))
            .collect();
        for (name, rows) in dataset.tables {
            let Some(table) = tables
                .iter_mut()
                .find(|(t, _)| **t == name)
                .map(|(_, rows)| rows)
            else {
                tracing::warn!(table = %name, "dataset table is not served; dropped");
                continue;
            };
            for row in rows {
                let sys_id = row.get("sys_id").cloned().unwrap_or_default();
                table.insert(sys_id, row);
            }
        }
        let mut store = Self {
            schemas,
            tables,
            custom_fields: BTreeMap::new(),
            choice_labels: HashMap::new(),
            frozen_now: None,
            rng: ChaCha8Rng::seed_from_u64(seed ^ INSERT_SEED_SALT),
            next_number: HashMap::new(),
        };
        store.rebuild_custom_fields();
        store.rebuild_choice_labels();
        for (table, prefix) in NUMBER_PREFIXES {
            let max = store
                .tables
                .get(table)
                .into_iter()
                .flat_map(|rows| rows.values())
                .filter_map(|r| {
                    r.get("number")
                        .and_then(|n| n.strip_prefix(prefix))
                        .and_then(|n| n.parse::<u64>().ok())
                });
            let next = max.max().map_or(FIRST_NUMBER, |m| m + 1);
            store.next_number.insert(table, next);
        }
        store
    }

    /// Current time as ServiceNow records it: UTC, whole seconds.
    pub fn now(&self) -> DateTime<Utc> {
        self.frozen_now.unwrap_or_else(Utc::now).trunc_subsecs(0)
    }

    /// Freeze the clock at `now` (or let it follow the wall clock again with `None`).
    pub fn set_now(&mut self, now: Option<DateTime<Utc>>) {
        self.frozen_now = now;
    }

    /// Schema of a served table.
    pub fn schema(&self, table: &str) -> Result<&TableSchema, StoreError> {
        self.schemas
            .get(table)
            .ok_or_else(|| StoreError::UnknownTable {
                table: table.to_owned(),
            })
    }

    /// Whether the simulator serves `table`.
    pub fn has_table(&self, table: &str) -> bool {
        self.schemas.contains_key(table)
    }

    /// Names of the served tables.
    pub fn table_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.schemas.keys().copied()
    }

    /// Base fields followed by the custom fields `sys_dictionary` defines, in render order.
    pub fn fields_of(&self, table: &str) -> Vec<&FieldDef> {
        let base = self
            .schemas
            .get(table)
            .map(|s| s.fields.iter())
            .into_iter()
            .flatten();
        let custom = self.custom_fields_of(table);
        base.chain(custom).collect()
    }

    fn custom_fields_of<'a>(&'a self, table: &str) -> impl Iterator<Item = &'a FieldDef> + 'a {
        // `task` shows no custom fields; each extending table has its own.
        self.custom_fields
            .get(table)
            .map(|f| f.iter())
            .into_iter()
            .flatten()
    }

    /// Definition of one field of `table` (base or custom).
    pub fn field_def(&self, table: &str, field: &str) -> Option<&FieldDef> {
        self.schemas
            .get(table)
            .and_then(|s| s.field(field))
            .or_else(|| self.custom_fields_of(table).find(|f| f.name == field))
    }

    /// Label of a choice value, from `sys_choice` rows for the table, falling back to `task`'s.
    pub fn choice_label(&self, table: &str, element: &str, value: &str) -> Option<&str> {
        let lookup = |t: &str| self.choice_labels.get(t)?.get(element)?.get(value);
        lookup(table)
            .or_else(|| lookup(tables::TASK))
            .map(String::as_str)
    }

    /// Every row of `table` with the concrete table it lives in (differs only for `task`).
    pub fn scan<'a>(
        &'a self,
        table: &str,
    ) -> Result<Box<dyn Iterator<Item = (&'static str, &'a Record)> + 'a>, StoreError> {
        let schema = self.schema(table)?;
        if schema.is_view {
            let rows = schema::TASK_TABLES.into_iter().flat_map(move |t| {
                self.tables
                    .get(t)
                    .into_iter()
                    .flat_map(move |rows| rows.values().map(move |r| (t, r)))
            });
            return Ok(Box::new(rows));
        }
        let name = schema.name;
        let rows = self
            .tables
            .get(name)
            .into_iter()
            .flat_map(move |rows| rows.values().map(move |r| (name, r)));
        Ok(Box::new(rows))
    }

    /// One record and the concrete table it lives in.
    pub fn get(
        &self,
        table: &str,
        sys_id: &str,
    ) -> Result<Option<(&'static str, &Record)>, StoreError> {
        let schema = self.schema(table)?;
        let candidates: &[&'static str] = if schema.is_view {
            &schema::TASK_TABLES
        } else {
            &[schema.name]
        };
        Ok(candidates.iter().find_map(|t| {
            self.tables
                .get(t)
                .and_then(|rows| rows.get(sys_id))
                .map(|r| (*t, r))
        }))
    }

    /// A copy of every row of a table, for tests and the admin API.
    pub fn snapshot(&self, table: &str) -> Result<Vec<Record>, StoreError> {
        Ok(self.scan(table)?.map(|(_, r)| r.clone()).collect())
    }

    fn rows_mut(
        &mut self,
        table: &str,
    ) -> Result<(&'static str, &mut IndexMap<String, Record>), StoreError> {
        let schema = self.schema(table)?;
        if schema.is_view {
            return Err(StoreError::ReadOnly {
                table: table.to_owned(),
            });
        }
        let name = schema.name;
        let rows = self
            .tables
            .get_mut(name)
            .ok_or_else(|| StoreError::UnknownTable {
                table: table.to_owned(),
            })?;
        Ok((name, rows))
    }

    /// sys_id of the `sys_user` row whose `user_name` is given.
    pub fn user_sys_id(&self, user_name: &str) -> Option<String> {
        self.tables
            .get(tables::SYS_USER)?
            .values()
            .find(|u| u.get("user_name").is_some_and(|n| n == user_name))
            .and_then(|u| u.get("sys_id").cloned())
    }

    fn new_sys_id(&mut self) -> String {
        format!("{:032x}", self.rng.random::<u128>())
    }

    /// Create a record as `POST /api/now/table/{table}` does: unknown fields are ignored,
    /// platform fields are set here, a missing sys_id is generated.
    pub fn insert(
        &mut self,
        table: &str,
        values: &serde_json::Map<String, Value>,
        actor: &Actor,
    ) -> Result<Record, StoreError> {
        let (name, _) = self.rows_mut(table)?;
        let sys_id = match values
            .get("sys_id")
            .map(raw_string)
            .filter(|s| !s.is_empty())
        {
            Some(id) if !is_sys_id(&id) => {
                return Err(StoreError::BadSysId {
                    table: name.to_owned(),
                    sys_id: id,
                });
            }
            Some(id) => id,
            None => self.new_sys_id(),
        };
        if self
            .tables
            .get(name)
            .is_some_and(|rows| rows.contains_key(&sys_id))
        {
            return Err(StoreError::Duplicate {
                table: name.to_owned(),
                sys_id,
            });
        }
        let now = format_time(self.now());
        let mut record: Record = self
            .fields_of(name)
            .iter()
            .map(|f| (f.name.clone(), String::new()))
            .collect();
        for (field, value) in values {
            if self.is_client_writable(name, field) {
                record.insert(field.clone(), raw_string(value));
            }
        }
        record.insert("sys_id".to_owned(), sys_id.clone());
        record.insert("sys_created_on".to_owned(), now.clone());
        record.insert("sys_updated_on".to_owned(), now.clone());
        record.insert("sys_created_by".to_owned(), actor.user_name.clone());
        record.insert("sys_updated_by".to_owned(), actor.user_name.clone());
        record.insert("sys_mod_count".to_owned(), "0".to_owned());
        if schema::TASK_TABLES.contains(&name) {
            self.apply_task_insert_defaults(name, &mut record, actor, &now, values);
        }
        let (_, rows) = self.rows_mut(name)?;
        rows.insert(sys_id, record.clone());
        self.after_write(name);
        Ok(record)
    }

    /// Update a record as `PATCH`/`PUT` do: bump `sys_mod_count`, stamp `sys_updated_on`.
    pub fn update(
        &mut self,
        table: &str,
        sys_id: &str,
        values: &serde_json::Map<String, Value>,
        actor: &Actor,
    ) -> Result<Record, StoreError> {
        let (name, _) = self.rows_mut(table)?;
        let writable: Vec<(String, String)> = values
            .iter()
            .filter(|(field, _)| field.as_str() != "sys_id" && self.is_client_writable(name, field))
            .map(|(field, value)| (field.clone(), raw_string(value)))
            .collect();
        let now = format_time(self.now());
        let actor_id = self.user_sys_id(&actor.user_name).unwrap_or_default();
        let (_, rows) = self.rows_mut(name)?;
        let record = rows.get_mut(sys_id).ok_or_else(|| StoreError::NotFound {
            table: name.to_owned(),
            sys_id: sys_id.to_owned(),
        })?;
        let old_state = record.get("state").cloned();
        for (field, value) in writable {
            record.insert(field, value);
        }
        let mod_count = record
            .get("sys_mod_count")
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0);
        record.insert("sys_mod_count".to_owned(), (mod_count + 1).to_string());
        record.insert("sys_updated_on".to_owned(), now.clone());
        record.insert("sys_updated_by".to_owned(), actor.user_name.clone());
        if schema::TASK_TABLES.contains(&name) {
            if !values.contains_key("priority")
                && (values.contains_key("urgency") || values.contains_key("impact"))
            {
                let priority = priority_of(field(record, "urgency"), field(record, "impact"));
                record.insert("priority".to_owned(), priority);
            }
            if old_state.as_deref() != record.get("state").map(String::as_str) {
                apply_state_rules(name, record, &now, &actor_id);
            }
        }
        let updated = record.clone();
        self.after_write(name);
        Ok(updated)
    }

    /// Overwrites one stored value as is, system fields included and without stamping
    /// `sys_updated_on` or `sys_mod_count`: what a damaged row, a broken instance or a proxy
    /// rewriting bodies would serve (a non-numeric `sys_mod_count`, an audit row without
    /// `documentkey`).
    pub fn overwrite_raw(
        &mut self,
        table: &str,
        sys_id: &str,
        field: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        let (name, rows) = self.rows_mut(table)?;
        let record = rows.get_mut(sys_id).ok_or_else(|| StoreError::NotFound {
            table: name.to_owned(),
            sys_id: sys_id.to_owned(),
        })?;
        record.insert(field.to_owned(), value.to_owned());
        Ok(())
    }

    /// Delete a record and leave the `sys_audit_delete` row ServiceNow writes for it.
    pub fn delete(
        &mut self,
        table: &str,
        sys_id: &str,
        actor: &Actor,
    ) -> Result<Record, StoreError> {
        let (name, rows) = self.rows_mut(table)?;
        let removed = rows
            .shift_remove(sys_id)
            .ok_or_else(|| StoreError::NotFound {
                table: name.to_owned(),
                sys_id: sys_id.to_owned(),
            })?;
        let display_field = self
            .schema(name)
            .map(|s| s.display_field)
            .unwrap_or("sys_id");
        let mut audit = serde_json::Map::new();
        audit.insert("tablename".to_owned(), Value::from(name));
        audit.insert("documentkey".to_owned(), Value::from(sys_id));
        audit.insert(
            "display_value".to_owned(),
            Value::from(field(&removed, display_field)),
        );
        self.insert(tables::SYS_AUDIT_DELETE, &audit, actor)?;
        self.after_write(name);
        Ok(removed)
    }

    fn is_client_writable(&self, table: &str, field: &str) -> bool {
        !SYSTEM_OWNED.contains(&field) && self.field_def(table, field).is_some()
    }

    fn apply_task_insert_defaults(
        &mut self,
        table: &'static str,
        record: &mut Record,
        actor: &Actor,
        now: &str,
        values: &serde_json::Map<String, Value>,
    ) {
        record.insert("sys_class_name".to_owned(), table.to_owned());
        if field(record, "number").is_empty() {
            let prefix = NUMBER_PREFIXES
                .iter()
                .find(|(t, _)| *t == table)
                .map_or("TASK", |(_, p)| p);
            let next = self.next_number.entry(table).or_insert(FIRST_NUMBER);
            record.insert("number".to_owned(), format!("{prefix}{next:07}"));
            *next += 1;
        }
        let defaults: [(&str, String); 4] = [
            (
                "state",
                if table == tables::CHANGE_REQUEST {
                    "-5"
                } else {
                    "1"
                }
                .to_owned(),
            ),
            ("active", "true".to_owned()),
            ("opened_at", now.to_owned()),
            (
                "opened_by",
                self.user_sys_id(&actor.user_name).unwrap_or_default(),
            ),
        ];
        for (name, value) in defaults {
            if field(record, name).is_empty() {
                record.insert(name.to_owned(), value);
            }
        }
        for name in ["urgency", "impact"] {
            if field(record, name).is_empty() {
                record.insert(name.to_owned(), "3".to_owned());
            }
        }
        if !values.contains_key("priority") {
            let priority = priority_of(field(record, "urgency"), field(record, "impact"));
            record.insert("priority".to_owned(), priority);
        }
    }

    fn after_write(&mut self, table: &str) {
        if table == tables::SYS_DICTIONARY {
            self.rebuild_custom_fields();
        } else if table == tables::SYS_CHOICE {
            self.rebuild_choice_labels();
        }
    }

    fn rebuild_custom_fields(&mut self) {
        let mut custom: BTreeMap<String, Vec<FieldDef>> = BTreeMap::new();
        let rows = self
            .tables
            .get(tables::SYS_DICTIONARY)
            .into_iter()
            .flat_map(|rows| rows.values());
        for row in rows {
            let (table, element) = (field(row, "name"), field(row, "element"));
            let served = self.schemas.get(table).is_some_and(|s| !s.is_view);
            if !element.starts_with("u_") || !served || field(row, "active") == "false" {
                continue;
            }
            let kind =
                schema::kind_from_dictionary(field(row, "internal_type"), field(row, "reference"));
            let defs = custom.entry(table.to_owned()).or_default();
            if !defs.iter().any(|d| d.name == element) {
                defs.push(FieldDef {
                    name: element.to_owned(),
                    kind,
                });
            }
        }
        self.custom_fields = custom;
    }

    fn rebuild_choice_labels(&mut self) {
        let mut labels: HashMap<String, HashMap<String, HashMap<String, String>>> = HashMap::new();
        let rows = self
            .tables
            .get(tables::SYS_CHOICE)
            .into_iter()
            .flat_map(|rows| rows.values());
        for row in rows.filter(|row| field(row, "inactive") != "true") {
            labels
                .entry(field(row, "name").to_owned())
                .or_default()
                .entry(field(row, "element").to_owned())
                .or_default()
                .insert(
                    field(row, "value").to_owned(),
                    field(row, "label").to_owned(),
                );
        }
        self.choice_labels = labels;
    }
}

/// Keeps run-time sys_ids from repeating the generator's stream for the same seed.
const INSERT_SEED_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// First number handed out when a table has no numbered rows yet.
const FIRST_NUMBER: u64 = 10_001;

/// Number prefixes of the task tables.
pub const NUMBER_PREFIXES: [(&str, &str); 2] =
    [(tables::INCIDENT, "INC"), (tables::CHANGE_REQUEST, "CHG")];

/// A field's raw value, empty when absent.
pub fn field<'a>(record: &'a Record, name: &str) -> &'a str {
    record.get(name).map_or("", String::as_str)
}

/// Whether `s` looks like a sys_id (32 lowercase hex digits).
pub fn is_sys_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The string ServiceNow would store for a JSON input value.
fn raw_string(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // Clients sometimes echo `{"value": …, "link": …}` objects back.
        Value::Object(map) => map.get("value").map(raw_string).unwrap_or_default(),
        Value::Array(_) => value.to_string(),
    }
}

/// ServiceNow's default priority lookup: urgency × impact → priority 1..5.
pub fn priority_of(urgency: &str, impact: &str) -> String {
    let u: u8 = urgency.parse().unwrap_or(3).clamp(1, 3);
    let i: u8 = impact.parse().unwrap_or(3).clamp(1, 3);
    (u + i - 1).to_string()
}

/// Business rules that stamp resolution and closure when the state changes.
fn apply_state_rules(table: &str, record: &mut Record, now: &str, actor_id: &str) {
    let state = field(record, "state").to_owned();
    let set_if_empty = |record: &mut Record, name: &str, value: &str| {
        if field(record, name).is_empty() {
            record.insert(name.to_owned(), value.to_owned());
        }
    };
    match (table, state.as_str()) {
        (tables::INCIDENT, "6") => {
            set_if_empty(record, "resolved_at", now);
            set_if_empty(record, "resolved_by", actor_id);
        }
        (tables::INCIDENT, "7") | (tables::CHANGE_REQUEST, "3") => {
            if table == tables::INCIDENT {
                set_if_empty(record, "resolved_at", now);
                set_if_empty(record, "resolved_by", actor_id);
            }
            set_if_empty(record, "closed_at", now);
            set_if_empty(record, "closed_by", actor_id);
            record.insert("active".to_owned(), "false".to_owned());
        }
        (tables::INCIDENT, "8") | (tables::CHANGE_REQUEST, "4") => {
            record.insert("active".to_owned(), "false".to_owned());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn actor() -> Actor {
        Actor {
            user_name: "tester".to_owned(),
        }
    }

    #[test]
    fn insert_sets_platform_fields_and_ignores_unknown_ones() {
        let mut store = Store::new(Dataset::default(), 1);
        let rec = store
            .insert(
                "incident",
                &map(json!({"short_description": "x", "bogus": "y", "sys_mod_count": "9"})),
                &actor(),
            )
            .unwrap();
        assert!(is_sys_id(field(&rec, "sys_id")));
        assert_eq!(field(&rec, "sys_mod_count"), "0");
        assert_eq!(field(&rec, "sys_created_by"), "tester");
        assert_eq!(field(&rec, "number"), "INC0010001");
        assert_eq!(field(&rec, "priority"), "5");
        assert!(!rec.contains_key("bogus"));
    }

    #[test]
    fn update_bumps_mod_count_and_delete_leaves_an_audit_row() {
        let mut store = Store::new(Dataset::default(), 1);
        let rec = store
            .insert(
                "incident",
                &map(json!({"short_description": "x"})),
                &actor(),
            )
            .unwrap();
        let id = field(&rec, "sys_id").to_owned();
        let updated = store
            .update("incident", &id, &map(json!({"state": "6"})), &actor())
            .unwrap();
        assert_eq!(field(&updated, "sys_mod_count"), "1");
        assert!(!field(&updated, "resolved_at").is_empty());
        store.delete("incident", &id, &actor()).unwrap();
        assert!(store.get("incident", &id).unwrap().is_none());
        let audits = store.snapshot("sys_audit_delete").unwrap();
        assert_eq!(audits.len(), 1);
        assert_eq!(field(&audits[0], "documentkey"), id);
        assert_eq!(field(&audits[0], "tablename"), "incident");
    }

    #[test]
    fn dictionary_rows_define_custom_fields() {
        let mut store = Store::new(Dataset::default(), 1);
        assert!(store.field_def("incident", "u_team").is_none());
        store
            .insert(
                "sys_dictionary",
                &map(json!({"name": "incident", "element": "u_team", "internal_type": "string"})),
                &actor(),
            )
            .unwrap();
        assert!(store.field_def("incident", "u_team").is_some());
        assert!(store.field_def("change_request", "u_team").is_none());
    }

    #[test]
    fn priority_follows_the_urgency_impact_matrix() {
        assert_eq!(priority_of("1", "1"), "1");
        assert_eq!(priority_of("1", "2"), "2");
        assert_eq!(priority_of("2", "2"), "3");
        assert_eq!(priority_of("3", "2"), "4");
        assert_eq!(priority_of("3", "3"), "5");
    }
}
