//! nowstream-model: the public contract of nowstream, in Rust.
//!
//! - [`contract`]: the Avro schemas of `/schemas`, compiled in and parsed once.
//! - [`RawRecord`], [`Checkpoint`] and the SEI entities ([`Incident`], [`ChangeRequest`],
//!   [`User`], [`FieldDefinition`]): Kafka values via [`AvroRecord`] (single-object
//!   encoding) and SEI entity JSON via serde (RFC 3339 UTC times).
//! - [`topics`] and [`keys`]: topic and key naming; [`Entity`]: every name of an entity.
//! - [`Version`]: which of two versions of a record is newer.
//! - [`compatibility`]: the rule every schema change must pass.
//! - [`EntityRecord`]: any one SEI entity, for code that handles all four alike.
//! - [`table_api`]: the shape of ServiceNow's Table API records (field values, times, table
//!   names); [`field_sources`]: which ServiceNow field feeds which entity field.
//! - [`ExclusionPolicy`]: which fields an integration keeps from SEI.
//!
//! The crate holds what more than one stage must agree on, so the stages meet only here and
//! on Kafka. It links no Kafka, HTTP or async runtime crate (a test over `cargo metadata`
//! in `tests/dependency_rules.rs` holds it to that).
//! - [`error_chain`]: an error and its causes on one line (shared by every crate that reports
//!   HTTP errors; `std` only).

pub mod avro_binary;
pub mod avro_value;
pub mod canonical_form;
pub mod checkpoint;
pub mod compatibility;
pub mod contract;
pub mod entity;
pub mod entity_record;
pub mod error_chain;
pub mod field_sources;
pub mod keys;
pub mod policy;
pub mod raw_record;
pub mod sei;
pub mod single_object;
pub mod table_api;
pub mod topics;
pub mod version;
#[cfg(test)]
mod wire_format_tests;

pub use checkpoint::Checkpoint;
pub use contract::{ContractSchema, Fingerprint};
pub use entity::{Entity, UnknownEntity};
pub use entity_record::EntityRecord;
pub use error_chain::error_chain;
pub use keys::{CheckpointKey, IntegrationKey, KeyError, KeyPart, RecordKey, SysIdPart, TablePart};
pub use policy::{ExclusionPolicy, PolicyError};
pub use raw_record::{RawRecord, RecordOp};
pub use sei::{ChangeRequest, Choice, CustomField, FieldDefinition, Incident, Reference, User};
pub use single_object::{AvroRecord, HeaderError, ModelError};
pub use topics::{TopicNameError, TopicNames};
pub use version::{Version, Versioned};
