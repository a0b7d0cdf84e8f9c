//! The SQLite store: the newest version of each record, tombstones, and recent
//! `Idempotency-Key`s.
//!
//! One connection behind a mutex: sei-local is a development and test server, and
//! serialising writes makes each batch one transaction with no lock juggling. Calls block;
//! the HTTP layer runs them on tokio's blocking pool.
//!
//! # Versions and tombstones
//!
//! A record is kept per (tenant, integration_id, entity, sys_id). An upsert replaces a live
//! record only when its version is strictly newer ([`Version::supersedes`]: `sys_mod_count`
//! first, then `sys_updated_on`, so a later write that carries an earlier time still wins);
//! equal or older ones are *stale*. A delete (a bare sys_id in the contract) turns the
//! record into a tombstone that keeps the version it superseded and `deleted_at`, the time
//! sei-local received the delete. Across a deletion the counter says nothing (a record
//! re-created under the same sys_id counts from 0 again), so an upsert brings a tombstoned
//! record back by **time** alone: when its `sys_updated_on` is later than both the
//! superseded version's and `deleted_at`, i.e. the record changed in ServiceNow after the
//! deletion was known (it was restored or re-created). Any version that existed before the
//! deletion, replayed later or fetched in a race with the deletion, is stale, whatever its
//! counter. A delete of a record never seen still leaves a tombstone, so a late upsert of it
//! does not create it. Deleting a tombstone again keeps the first `deleted_at`.
//!
//! Versions are compared in Rust, never in SQL: the order is not the columns' order.

use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use nowstream_model::{Entity, Version};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use crate::batch::{Batch, IngestResult, ValidRecord, sortable_time};
use crate::config::DatabaseLocation;
use crate::dora::{DoraChange, DoraIncident};
use crate::mttr::ResolvedIncident;

/// The schema this code reads and writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    tenant          TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    entity          TEXT NOT NULL,
    sys_id          TEXT NOT NULL,
    -- version held; for a tombstone, the version it superseded (NULL if none was held)
    sys_updated_on  TEXT,
    sys_mod_count   INTEGER,
    -- entity JSON; NULL for a tombstone
    body            TEXT,
    -- when the delete was received; NULL while live
    deleted_at      TEXT,
    -- incidents only, for the MTTR report
    resolved_at     TEXT,
    restore_ms      INTEGER,
    priority        TEXT,
    PRIMARY KEY (tenant, integration_id, entity, sys_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_resolved_at
    ON records (tenant, integration_id, entity, resolved_at);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant          TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    entity          TEXT NOT NULL,
    key             TEXT NOT NULL,
    body_sha256     BLOB NOT NULL,
    upserted        INTEGER NOT NULL,
    deleted         INTEGER NOT NULL,
    stale           INTEGER NOT NULL,
    stored_at       TEXT NOT NULL,
    UNIQUE (tenant, integration_id, entity, key)
);
";

/// Why the store failed. Carries what was being done, never record contents.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be opened or set up.
    #[error("cannot open SQLite database {location}: {source}")]
    Open {
        /// File path or `:memory:`.
        location: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer (or foreign) schema.
    #[error(
        "SQLite database {location} has schema version {found}; this sei-local reads version {SCHEMA_VERSION}"
    )]
    SchemaVersion {
        /// File path.
        location: String,
        /// `PRAGMA user_version` found.
        found: i64,
    },
    /// A statement failed.
    #[error("SQLite failed to {operation}: {source}")]
    Sql {
        /// What was being done.
        operation: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored value cannot be read back.
    #[error("stored {what} of {entity} `{sys_id}` cannot be read back: {reason}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// Entity.
        entity: Entity,
        /// Record.
        sys_id: String,
        /// Why.
        reason: String,
    },
}

fn sql(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sql { operation, source }
}

/// Which records a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Tenant.
    pub tenant: String,
    /// SEI integration.
    pub integration_id: String,
    /// Entity kind.
    pub entity: Entity,
}

impl Scope {
    /// A scope from its parts.
    pub fn new(tenant: &str, integration_id: &str, entity: Entity) -> Self {
        Self {
            tenant: tenant.to_owned(),
            integration_id: integration_id.to_owned(),
            entity,
        }
    }
}

/// A batch's `Idempotency-Key` and a digest of its (decoded) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The header's value.
    pub key: String,
    /// SHA-256 of the decoded body: a replay must be the same batch.
    pub body_sha256: [u8; 32],
}

/// How a batch's `Idempotency-Key` was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// Not seen recently: the batch was applied.
    Fresh,
    /// Seen with the same body: the stored response is returned and nothing is applied.
    Replayed,
    /// Seen with another body (a sender bug): the batch was applied as new and its
    /// response replaces the stored one.
    ReusedWithOtherBody,
}

/// What ingesting a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    /// The response.
    pub result: IngestResult,
    /// How the key was met.
    pub key_use: KeyUse,
}

/// A stored record: live, or a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// sys_id.
    pub sys_id: String,
    /// The version held; for a tombstone, the version it superseded (`None` when the
    /// record was deleted before any version of it arrived).
    pub version: Option<Version>,
    /// Live or deleted.
    pub state: RecordState,
}

/// Whether a stored record is live.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordState {
    /// The entity JSON of the newest version.
    Live(Value),
    /// A tombstone.
    Deleted {
        /// When sei-local received the delete.
        deleted_at: DateTime<Utc>,
    },
}

impl StoredRecord {
    /// The entity JSON, unless deleted.
    pub fn body(&self) -> Option<&Value> {
        match &self.state {
            RecordState::Live(body) => Some(body),
            RecordState::Deleted { .. } => None,
        }
    }

    /// Whether this is a tombstone.
    pub fn is_deleted(&self) -> bool {
        matches!(self.state, RecordState::Deleted { .. })
    }
}

/// What is held for one key, as far as versioning cares.
struct Held {
    version: Option<Version>,
    deleted_at: Option<DateTime<Utc>>,
}

/// The SQLite store.
#[derive(Debug)]
pub struct Store {
    connection: Mutex<Connection>,
    location: DatabaseLocation,
}

impl Store {
    /// Opens (creating when missing) the database at `location`.
    pub fn open(location: &DatabaseLocation) -> Result<Self, StoreError> {
        let opened = match location {
            DatabaseLocation::Memory => Connection::open_in_memory(),
            DatabaseLocation::File(path) => Connection::open(path),
        };
        let open_error = |source| StoreError::Open {
            location: location.to_string(),
            source,
        };
        let connection = opened.map_err(open_error)?;
        if let DatabaseLocation::File(_) = location {
            // WAL: readers never wait for the writer, and a crash loses no committed batch.
            connection
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(open_error)?;
            connection
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(open_error)?;
            connection
                .busy_timeout(std::time::Duration::from_secs(5))
                .map_err(open_error)?;
        }
        let found: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(open_error)?;
        match found {
            0 => {
                connection.execute_batch(SCHEMA).map_err(open_error)?;
                connection
                    .pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(open_error)?;
            }
            SCHEMA_VERSION => {}
            found => {
                return Err(StoreError::SchemaVersion {
                    location: location.to_string(),
                    found,
                });
            }
        }
        Ok(Self {
            connection: Mutex::new(connection),
            location: location.clone(),
        })
    }

    /// Where the database lives.
    pub fn location(&self) -> &DatabaseLocation {
        &self.location
    }

    /// A panic while holding the lock leaves no half-done batch (the transaction rolls
    /// back on drop), so a poisoned lock is safe to take over.
    fn connection(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `batch` in one transaction (upserts first, then deletes, as the contract's
    /// body keeps no order between the two), unless `key` was already used for the same
    /// body, in which case the stored response is returned and nothing changes.
    /// `now` stamps tombstones; `keys_kept` bounds how many keys are remembered.
    pub fn ingest(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        batch: &Batch,
        now: DateTime<Utc>,
        keys_kept: usize,
    ) -> Result<IngestOutcome, StoreError> {
        let mut connection = self.connection();
        let tx = connection
            .transaction()
            .map_err(sql("begin a batch transaction"))?;
        let key_use = match stored_response(&tx, scope, key)? {
            Some((digest, result)) if digest == key.body_sha256 => {
                return Ok(IngestOutcome {
                    result,
                    key_use: KeyUse::Replayed,
                });
            }
            Some(_) => KeyUse::ReusedWithOtherBody,
            None => KeyUse::Fresh,
        };
        let mut result = IngestResult::default();
        for record in &batch.upserts {
            let held = held(&tx, scope, &record.sys_id)?;
            if accepts(held.as_ref(), record.version) {
                write_record(&tx, scope, record)?;
                result.upserted += 1;
            } else {
                result.stale += 1;
            }
        }
        let now_text = sortable_time(now);
        for sys_id in &batch.deletes {
            match held(&tx, scope, sys_id)? {
                Some(Held {
                    deleted_at: Some(_),
                    ..
                }) => {}
                Some(_) => {
                    tx.execute(
                        "UPDATE records SET body = NULL, deleted_at = ?5,
                             resolved_at = NULL, restore_ms = NULL, priority = NULL
                         WHERE tenant = ?1 AND integration_id = ?2 AND entity = ?3 AND sys_id = ?4",
                        params![
                            scope.tenant,
                            scope.integration_id,
                            scope.entity.name(),
                            sys_id,
                            now_text
                        ],
                    )
                    .map_err(sql("write a tombstone"))?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO records (tenant, integration_id, entity, sys_id, deleted_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            scope.tenant,
                            scope.integration_id,
                            scope.entity.name(),
                            sys_id,
                            now_text
                        ],
                    )
                    .map_err(sql("write a tombstone"))?;
                }
            }
            result.deleted += 1;
        }
        remember_response(&tx, scope, key, result, &now_text, keys_kept)?;
        tx.commit().map_err(sql("commit a batch"))?;
        Ok(IngestOutcome { result, key_use })
    }

    /// One record, live or tombstone.
    pub fn get(&self, scope: &Scope, sys_id: &str) -> Result<Option<StoredRecord>, StoreError> {
        let connection = self.connection();
        let row = connection
            .query_row(
                "SELECT sys_id, sys_updated_on, sys_mod_count, body, deleted_at FROM records
                 WHERE tenant = ?1 AND integration_id = ?2 AND entity = ?3 AND sys_id = ?4",
                params![
                    scope.tenant,
                    scope.integration_id,
                    scope.entity.name(),
                    sys_id
                ],
                RawRow::read,
            )
            .optional()
            .map_err(sql("read a record"))?;
        row.map(|row| row.into_record(scope.entity)).transpose()
    }

    /// Up to `limit` live records with sys_id after `after`, ordered by sys_id.
    pub fn list(
        &self,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, StoreError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "SELECT sys_id, body FROM records
                 WHERE tenant = ?1 AND integration_id = ?2 AND entity = ?3
                   AND body IS NOT NULL AND (?4 IS NULL OR sys_id > ?4)
                 ORDER BY sys_id LIMIT ?5",
            )
            .map_err(sql("prepare a listing"))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(
                params![
                    scope.tenant,
                    scope.integration_id,
                    scope.entity.name(),
                    after,
                    limit
                ],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            )
            .map_err(sql("list records"))?;
        let mut records = Vec::new();
        for row in rows {
            let (sys_id, body) = row.map_err(sql("list records"))?;
            let body = parse_body(scope.entity, &sys_id, &body)?;
            records.push((sys_id, body));
        }
        Ok(records)
    }

    /// Every stored record of one scope, tombstones included, ordered by sys_id (for tests
    /// that check what arrived without going through HTTP).
    pub fn records(&self, scope: &Scope) -> Result<Vec<StoredRecord>, StoreError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "SELECT sys_id, sys_updated_on, sys_mod_count, body, deleted_at FROM records
                 WHERE tenant = ?1 AND integration_id = ?2 AND entity = ?3 ORDER BY sys_id",
            )
            .map_err(sql("prepare a record scan"))?;
        let rows = statement
            .query_map(
                params![scope.tenant, scope.integration_id, scope.entity.name()],
                RawRow::read,
            )
            .map_err(sql("scan records"))?;
        let mut records = Vec::new();
        for row in rows {
            records.push(
                row.map_err(sql("scan records"))?
                    .into_record(scope.entity)?,
            );
        }
        Ok(records)
    }

    /// Live incidents of `integration_id` resolved in `[from, to)`.
    pub fn resolved_incidents(
        &self,
        tenant: &str,
        integration_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ResolvedIncident>, StoreError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "SELECT sys_id, resolved_at, restore_ms, priority FROM records
                 WHERE tenant = ?1 AND integration_id = ?2 AND entity = ?3
                   AND body IS NOT NULL AND resolved_at >= ?4 AND resolved_at < ?5",
            )
            .map_err(sql("prepare the MTTR query"))?;
        let rows = statement
            .query_map(
                params![
                    tenant,
                    integration_id,
                    Entity::Incident.name(),
                    sortable_time(from),
                    sortable_time(to)
                ],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                        row.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .map_err(sql("run the MTTR query"))?;
        let mut incidents = Vec::new();
        for row in rows {
            let (sys_id, resolved_at, restore_ms, priority) =
                row.map_err(sql("run the MTTR query"))?;
            incidents.push(ResolvedIncident {
                resolved_at: parse_time(&resolved_at, "resolved_at", Entity::Incident, &sys_id)?,
                restore_ms,
                priority,
            });
        }
        Ok(incidents)
    }
    /// What the DORA report reads of one integration's live incidents and change requests.
    ///
    /// Every live record of the two entities, read out of the stored bodies with
    /// `json_extract`: the report's windows apply to three different times (resolved,
    /// created, closed), which a dev server can well filter in Rust.
    pub fn dora_facts(
        &self,
        tenant: &str,
        integration_id: &str,
    ) -> Result<(Vec<DoraIncident>, Vec<DoraChange>), StoreError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "SELECT sys_id, json_extract(body, '$.sys_created_on'),
                        json_extract(body, '$.opened_at'), json_extract(body, '$.resolved_at'),
                        json_extract(body, '$.time_to_restore_ms'),
                        json_extract(body, '$.priority.value'), json_extract(body, '$.category.value'),
                        json_extract(body, '$.caused_by.sys_id')
                 FROM records
                 WHERE tenant = ?1 AND integration_id = ?2 AND entity = ?3 AND body IS NOT NULL",
            )
            .map_err(sql("prepare the DORA incident query"))?;
        let rows = statement
            .query_map(
                params![tenant, integration_id, Entity::Incident.name()],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        [
                            row.get::<_, Option<String>>(1)?,
                            row.get::<_, Option<String>>(2)?,
                            row.get::<_, Option<String>>(3)?,
                        ],
                        row.get::<_, Option<i64>>(4)?,
                        row.get::<_, Option<String>>(5)?,
                        row.get::<_, Option<String>>(6)?,
                        row.get::<_, Option<String>>(7)?,
                    ))
                },
            )
            .map_err(sql("run the DORA incident query"))?;
        let mut incidents = Vec::new();
        for row in rows {
            let (
                sys_id,
                [created, opened, resolved],
                time_to_restore_ms,
                priority,
                category,
                caused_by,
            ) = row.map_err(sql("run the DORA incident query"))?;
            let time = |text: Option<String>, what| {
                text.map(|text| parse_time(&text, what, Entity::Incident, &sys_id))
                    .transpose()
            };
            incidents.push(DoraIncident {
                sys_created_on: time(created, "sys_created_on")?,
                opened_at: time(opened, "opened_at")?,
                resolved_at: time(resolved, "resolved_at")?,
                time_to_restore_ms,
                priority,
                category,
                caused_by,
                sys_id,
            });
        }
        let mut statement = connection
            .prepare_cached(
                "SELECT sys_id, json_extract(body, '$.closed_at'), json_extract(body, '$.state.value'),
                        json_extract(body, '$.type.value'), json_extract(body, '$.priority.value')
                 FROM records
                 WHERE tenant = ?1 AND integration_id = ?2 AND entity = ?3 AND body IS NOT NULL",
            )
            .map_err(sql("prepare the DORA change query"))?;
        let rows = statement
            .query_map(
                params![tenant, integration_id, Entity::ChangeRequest.name()],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .map_err(sql("run the DORA change query"))?;
        let mut changes = Vec::new();
        for row in rows {
            let (sys_id, closed_at, state, change_type, priority) =
                row.map_err(sql("run the DORA change query"))?;
            let closed_at = closed_at
                .map(|text| parse_time(&text, "closed_at", Entity::ChangeRequest, &sys_id))
                .transpose()?;
            changes.push(DoraChange {
                sys_id,
                closed_at,
                state,
                change_type,
                priority,
            });
        }
        Ok((incidents, changes))
    }
}

/// Whether an upsert of `version` replaces what is held (see the module docs).
fn accepts(held: Option<&Held>, version: Version) -> bool {
    match held {
        None => true,
        Some(Held {
            version: held_version,
            deleted_at: None,
        }) => version.supersedes(held_version.as_ref()),
        Some(Held {
            version: superseded,
            deleted_at: Some(deleted_at),
        }) => {
            version.is_after(*deleted_at)
                && superseded.is_none_or(|superseded| version.is_after(superseded.sys_updated_on))
        }
    }
}

fn held(tx: &Transaction<'_>, scope: &Scope, sys_id: &str) -> Result<Option<Held>, StoreError> {
    let row = tx
        .query_row(
            "SELECT sys_updated_on, sys_mod_count, deleted_at FROM records
             WHERE tenant = ?1 AND integration_id = ?2 AND entity = ?3 AND sys_id = ?4",
            params![
                scope.tenant,
                scope.integration_id,
                scope.entity.name(),
                sys_id
            ],
            |row| {
                Ok((
                    row.get::<_, Option<String>>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, Option<String>>(2)?,
                ))
            },
        )
        .optional()
        .map_err(sql("read the held version"))?;
    let Some((updated_on, mod_count, deleted_at)) = row else {
        return Ok(None);
    };
    let version = updated_on
        .map(|text| parse_time(&text, "sys_updated_on", scope.entity, sys_id))
        .transpose()?
        .map(|updated_on| Version::new(updated_on, mod_count));
    let deleted_at = deleted_at
        .map(|text| parse_time(&text, "deleted_at", scope.entity, sys_id))
        .transpose()?;
    Ok(Some(Held {
        version,
        deleted_at,
    }))
}

fn write_record(
    tx: &Transaction<'_>,
    scope: &Scope,
    record: &ValidRecord,
) -> Result<(), StoreError> {
    let facts = record.incident.as_ref();
    tx.execute(
        "INSERT INTO records (tenant, integration_id, entity, sys_id, sys_updated_on,
             sys_mod_count, body, deleted_at, resolved_at, restore_ms, priority)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9, ?10)
         ON CONFLICT (tenant, integration_id, entity, sys_id) DO UPDATE SET
             sys_updated_on = excluded.sys_updated_on, sys_mod_count = excluded.sys_mod_count,
             body = excluded.body, deleted_at = NULL, resolved_at = excluded.resolved_at,
             restore_ms = excluded.restore_ms, priority = excluded.priority",
        params![
            scope.tenant,
            scope.integration_id,
            scope.entity.name(),
            record.sys_id,
            sortable_time(record.version.sys_updated_on),
            record.version.sys_mod_count,
            record.body.to_string(),
            facts.and_then(|facts| facts.resolved_at).map(sortable_time),
            facts.and_then(|facts| facts.restore_ms),
            facts.and_then(|facts| facts.priority.as_deref()),
        ],
    )
    .map_err(sql("write a record"))?;
    Ok(())
}

fn stored_response(
    tx: &Transaction<'_>,
    scope: &Scope,
    key: &IdempotencyKey,
) -> Result<Option<(Vec<u8>, IngestResult)>, StoreError> {
    tx.query_row(
        "SELECT body_sha256, upserted, deleted, stale FROM idempotency_keys
         WHERE tenant = ?1 AND integration_id = ?2 AND entity = ?3 AND key = ?4",
        params![
            scope.tenant,
            scope.integration_id,
            scope.entity.name(),
            key.key
        ],
        |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                IngestResult {
                    upserted: row.get(1)?,
                    deleted: row.get(2)?,
                    stale: row.get(3)?,
                },
            ))
        },
    )
    .optional()
    .map_err(sql("look up an Idempotency-Key"))
}

fn remember_response(
    tx: &Transaction<'_>,
    scope: &Scope,
    key: &IdempotencyKey,
    result: IngestResult,
    now: &str,
    keys_kept: usize,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR REPLACE INTO idempotency_keys
             (tenant, integration_id, entity, key, body_sha256, upserted, deleted, stale, stored_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            scope.tenant,
            scope.integration_id,
            scope.entity.name(),
            key.key,
            key.body_sha256.as_slice(),
            result.upserted,
            result.deleted,
            result.stale,
            now
        ],
    )
    .map_err(sql("remember an Idempotency-Key"))?;
    tx.execute(
        "DELETE FROM idempotency_keys WHERE seq <= (SELECT MAX(seq) FROM idempotency_keys) - ?1",
        params![i64::try_from(keys_kept).unwrap_or(i64::MAX)],
    )
    .map_err(sql("forget old Idempotency-Keys"))?;
    Ok(())
}

/// A `records` row as SQLite returns it.
struct RawRow {
    sys_id: String,
    sys_updated_on: Option<String>,
    sys_mod_count: Option<i64>,
    body: Option<String>,
    deleted_at: Option<String>,
}

impl RawRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            sys_id: row.get(0)?,
            sys_updated_on: row.get(1)?,
            sys_mod_count: row.get(2)?,
            body: row.get(3)?,
            deleted_at: row.get(4)?,
        })
    }

    fn into_record(self, entity: Entity) -> Result<StoredRecord, StoreError> {
        let version = self
            .sys_updated_on
            .map(|text| parse_time(&text, "sys_updated_on", entity, &self.sys_id))
            .transpose()?
            .map(|updated_on| Version::new(updated_on, self.sys_mod_count));
        let state = match (self.body, self.deleted_at) {
            (_, Some(deleted_at)) => RecordState::Deleted {
                deleted_at: parse_time(&deleted_at, "deleted_at", entity, &self.sys_id)?,
            },
            (Some(body), None) => RecordState::Live(parse_body(entity, &self.sys_id, &body)?),
            (None, None) => {
                return Err(StoreError::Corrupt {
                    what: "body",
                    entity,
                    sys_id: self.sys_id,
                    reason: "neither a body nor a deletion time".to_owned(),
                });
            }
        };
        Ok(StoredRecord {
            sys_id: self.sys_id,
            version,
            state,
        })
    }
}

fn parse_time(
    text: &str,
    what: &'static str,
    entity: Entity,
    sys_id: &str,
) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.to_utc())
        .map_err(|error| StoreError::Corrupt {
            what,
            entity,
            sys_id: sys_id.to_owned(),
            reason: error.to_string(),
        })
}

fn parse_body(entity: Entity, sys_id: &str, body: &str) -> Result<Value, StoreError> {
    serde_json::from_str(body).map_err(|error| StoreError::Corrupt {
        what: "body",
        entity,
        sys_id: sys_id.to_owned(),
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn user(sys_id: &str, updated_on: &str, mod_count: i64) -> ValidRecord {
        let body = json!({"integration_id": "sn1", "sys_id": sys_id,
                          "sys_updated_on": updated_on, "sys_mod_count": mod_count});
        let body = body.to_string();
        let batch = Batch::parse(
            format!(r#"{{"upserts": [{body}], "deletes": []}}"#).as_bytes(),
            Entity::User,
            "sn1",
        )
        .unwrap();
        batch.upserts.into_iter().next().unwrap()
    }

    fn key(name: &str, digest: u8) -> IdempotencyKey {
        IdempotencyKey {
            key: name.to_owned(),
            body_sha256: [digest; 32],
        }
    }

    fn scope() -> Scope {
        Scope::new("acme", "sn1", Entity::User)
    }

    fn ingest(
        store: &Store,
        name: &str,
        upserts: Vec<ValidRecord>,
        deletes: &[&str],
        now: &str,
    ) -> IngestResult {
        let batch = Batch {
            upserts,
            deletes: deletes.iter().map(|d| (*d).to_owned()).collect(),
        };
        store
            .ingest(&scope(), &key(name, 1), &batch, at(now), 100)
            .unwrap()
            .result
    }

    #[test]
    fn a_tombstone_keeps_the_version_it_superseded() {
        let store = Store::open(&DatabaseLocation::Memory).unwrap();
        ingest(
            &store,
            "k1",
            vec![user("a", "2024-01-01T00:00:00Z", 2)],
            &[],
            "2024-06-01T00:00:00Z",
        );
        ingest(
            &store,
            "k2",
            vec![],
            &["a", "never-seen"],
            "2024-06-01T00:00:00Z",
        );
        let records = store.records(&scope()).unwrap();
        assert!(records.iter().all(StoredRecord::is_deleted));
        assert_eq!(records[0].version.unwrap().sys_mod_count, Some(2));
        assert_eq!(records[1].version, None);
    }

    #[test]
    fn only_a_change_after_the_deletion_brings_a_record_back() {
        let store = Store::open(&DatabaseLocation::Memory).unwrap();
        ingest(
            &store,
            "k1",
            vec![user("a", "2024-01-01T00:00:00Z", 2)],
            &["a"],
            "2024-06-01T00:00:00Z",
        );
        // Newer than the superseded version, but from before the deletion: stale.
        let raced = ingest(
            &store,
            "k2",
            vec![user("a", "2024-05-01T00:00:00Z", 3)],
            &[],
            "2024-06-02T00:00:00Z",
        );
        assert_eq!(raced.stale, 1);
        let restored = ingest(
            &store,
            "k3",
            vec![user("a", "2024-07-01T00:00:00Z", 4)],
            &[],
            "2024-07-02T00:00:00Z",
        );
        assert_eq!(restored.upserted, 1);
        assert!(!store.get(&scope(), "a").unwrap().unwrap().is_deleted());
    }

    #[test]
    fn a_late_write_with_an_earlier_update_time_but_a_higher_mod_count_wins() {
        let store = Store::open(&DatabaseLocation::Memory).unwrap();
        ingest(
            &store,
            "k1",
            vec![user("a", "2024-01-01T10:00:05Z", 7)],
            &[],
            "2024-06-01T00:00:00Z",
        );
        // Committed later (higher counter) by a node whose clock is behind.
        let late = ingest(
            &store,
            "k2",
            vec![user("a", "2024-01-01T10:00:01Z", 8)],
            &[],
            "2024-06-01T00:00:00Z",
        );
        assert_eq!(late.upserted, 1);
        let held = store.get(&scope(), "a").unwrap().unwrap();
        assert_eq!(held.version.unwrap().sys_mod_count, Some(8));
        // The version it replaced, replayed, is now stale though its time is later.
        let replayed = ingest(
            &store,
            "k3",
            vec![user("a", "2024-01-01T10:00:05Z", 7)],
            &[],
            "2024-06-01T00:00:00Z",
        );
        assert_eq!(replayed.stale, 1);
    }

    #[test]
    fn a_record_re_created_with_its_counter_reset_wins_over_the_tombstone() {
        let store = Store::open(&DatabaseLocation::Memory).unwrap();
        ingest(
            &store,
            "k1",
            vec![user("a", "2024-01-01T00:00:00Z", 12)],
            &["a"],
            "2024-06-01T00:00:00Z",
        );
        // The deleted version and an older one, replayed with higher counters: stale.
        let replay = ingest(
            &store,
            "k2",
            vec![user("a", "2024-01-01T00:00:00Z", 12)],
            &[],
            "2024-06-02T00:00:00Z",
        );
        assert_eq!(replay.stale, 1);
        // Re-created under the same sys_id after the deletion: counter 0, later time.
        let recreated = ingest(
            &store,
            "k3",
            vec![user("a", "2024-07-01T00:00:00Z", 0)],
            &[],
            "2024-07-02T00:00:00Z",
        );
        assert_eq!(recreated.upserted, 1);
        let held = store.get(&scope(), "a").unwrap().unwrap();
        assert!(!held.is_deleted());
        assert_eq!(held.version.unwrap().sys_mod_count, Some(0));
    }

    #[test]
    fn deleting_twice_keeps_the_first_deletion_time() {
        let store = Store::open(&DatabaseLocation::Memory).unwrap();
        ingest(&store, "k1", vec![], &["a"], "2024-06-01T00:00:00Z");
        ingest(&store, "k2", vec![], &["a"], "2024-09-01T00:00:00Z");
        let record = store.get(&scope(), "a").unwrap().unwrap();
        assert_eq!(
            record.state,
            RecordState::Deleted {
                deleted_at: at("2024-06-01T00:00:00Z")
            }
        );
    }

    #[test]
    fn only_the_most_recent_keys_are_remembered() {
        let store = Store::open(&DatabaseLocation::Memory).unwrap();
        let batch = Batch {
            upserts: vec![],
            deletes: vec!["a".to_owned()],
        };
        let now = at("2024-06-01T00:00:00Z");
        for name in ["k1", "k2", "k3"] {
            store
                .ingest(&scope(), &key(name, 1), &batch, now, 2)
                .unwrap();
        }
        let replay = |name| {
            store
                .ingest(&scope(), &key(name, 1), &batch, now, 2)
                .unwrap()
                .key_use
        };
        assert_eq!(replay("k3"), KeyUse::Replayed);
        assert_eq!(replay("k1"), KeyUse::Fresh);
    }

    #[test]
    fn a_key_reused_with_another_body_is_applied_again() {
        let store = Store::open(&DatabaseLocation::Memory).unwrap();
        let batch = Batch {
            upserts: vec![],
            deletes: vec!["a".to_owned()],
        };
        let now = at("2024-06-01T00:00:00Z");
        store
            .ingest(&scope(), &key("k", 1), &batch, now, 10)
            .unwrap();
        let again = store
            .ingest(&scope(), &key("k", 2), &batch, now, 10)
            .unwrap();
        assert_eq!(again.key_use, KeyUse::ReusedWithOtherBody);
    }
}
