//! The fetcher: polls ServiceNow incrementally and publishes each record, as the Table API
//! returned it, to `servicenow.raw.<table>`.
//!
//! Work is split into units (integration × table, see [`units`]); replicas share them through a
//! Kafka consumer group ([`coordination`]); each unit pages with a keyset cursor and checkpoints
//! after Kafka acknowledged each page ([`mod@unit`], [`writer`], [`checkpoints`]).

pub mod backoff;
pub mod checkpoints;
pub mod coordination;
pub mod dead_letter;
mod error;
pub mod failure;
pub mod fields;
pub mod instance;
pub mod metrics;
pub mod oauth_login;
pub mod preflight;
pub mod raw;
pub mod reconcile;
pub mod resume;
pub mod slices;
pub mod supervision;
pub mod supervisor;
pub mod token_file;
pub mod unit;
pub mod unit_state;
pub mod units;
pub mod writer;

pub use error::FetchError;
pub use supervisor::run;
