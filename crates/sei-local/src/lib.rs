//! sei-local: the reference receiver of nowstream's ingestion contract (not an SEI API), for
//! development, demos and tests.
//!
//! It serves the contract in `schemas/sei-ingestion.openapi.yaml`: API-key auth per
//! tenant, gzip bodies, a body size limit, all-or-nothing batches with per-record
//! validation, versioned upserts (newest wins; older or equal are stale), tombstones that
//! older replays cannot resurrect, `Idempotency-Key` replays, listing and reading records
//! back, the MTTR report with its DORA grade, the DORA report (MTTR, deployment frequency,
//! change failure rate) and a dashboard charting it. Records live in SQLite (a file, or
//! memory). Deterministic fault injection and request counters let tests check how a
//! client retries. See `docs/sei-local.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nowstream_sei_local::SeiLocalError> {
//! use nowstream_model::Entity;
//! use nowstream_sei_local::{SeiLocal, SeiLocalConfig};
//!
//! let sei = SeiLocal::start(SeiLocalConfig::for_tenant("acme", "secret")).await?;
//! println!("SEI at {}", sei.base_url());
//! let incidents = sei.records("acme", "sn1", Entity::Incident)?;
//! # drop(incidents);
//! sei.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod batch;
pub mod config;
pub mod dora;
pub mod faults;
mod http;
pub mod mttr;
pub mod server;
pub mod stats;
pub mod store;

pub use batch::IngestResult;
pub use config::{ConfigError, DatabaseLocation, SeiLocalConfig};
pub use dora::{DoraGroupBy, DoraReport, MttrStart};
pub use faults::{Fault, FaultRule, RuleReport, Trigger};
pub use mttr::{Grade, GroupBy, MttrGroup, MttrReport, MttrStats};
pub use server::{RunningSeiLocal, SeiLocal, SeiLocalError};
pub use stats::Stats;
pub use store::{RecordState, StoreError, StoredRecord};
