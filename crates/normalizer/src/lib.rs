//! nowstream-normalizer: raw ServiceNow records in, SEI entities out.
//!
//! The crate has two layers. The pure core knows nothing of Kafka: for each
//! `RawRecord` consumed from `servicenow.raw.<table>`, [`map_record`] returns what to
//! publish on `sei.servicenow.<entity>`: an [`EntityRecord`] to upsert (keyed
//! `<integration_id>:<sys_id>`, Avro single-object encoded by [`EntityRecord::encode`], which
//! writes the Avro binary straight from the struct),
//! a tombstone ([`Mapped::Delete`]) for a deletion, or a [`MapError`] whose
//! [`code`](MapError::code) is the DLQ reason.
//!
//! | ServiceNow table | entity |
//! |---|---|
//! | `incident` | `incident` |
//! | `change_request` | `change_request` |
//! | `sys_user` | `user` |
//! | `sys_dictionary` | `field_definition` |
//!
//! # How a record is mapped
//!
//! 1. The payload is read straight from its JSON text
//!    ([`nowstream_model::table_api::RecordFields`], no `serde_json::Value` tree), and every
//!    key the [`ExclusionPolicy`] excludes is skipped unread *before* any mapping code runs:
//!    no mapping code can read an excluded value, so none can leak one (into a field, a
//!    custom field, a derived value, or an error message).
//! 2. Fields are read as `sysparm_display_value=all` returns them,
//!    `{"value": ..., "display_value": ...}`; plain strings, numbers, booleans and
//!    `{"link", "value"}` objects are accepted too (see [`fields`]). Empty strings are null.
//! 3. Choices become `Choice {value, label}`, references `Reference {sys_id, display_value}`,
//!    dot-walked departments (`business_service.department`, `requested_by.department`) the
//!    `*_department` references. Times are parsed from the UTC `value` only, never from a
//!    display value (those are in the API user's zone). Incidents get a derived
//!    `time_to_restore_ms`. Every top-level `u_*` field goes into `custom_fields`.
//! 4. Identity and version come from the raw record: `integration_id`, `sys_id`,
//!    `sys_updated_on`, and `sys_mod_count` (from the payload when the raw record lacks it).
//!    `excluded_fields` names the withheld entity fields ([`mapping::excluded_fields`]).
//!
//! [`mapping::field_sources`] lists which ServiceNow field feeds which entity field;
//! `docs/normalizer-mapping.md` is the same table for people.
//!
//! # The stage
//!
//! Around the core, the stage ([`run`], binary `nowstream-normalizer`) consumes the four raw
//! topics as the consumer group `normalizer.group_id`, publishes each record's entity (or
//! tombstone) to `sei.servicenow.<entity>` and each record it cannot map (or whose entity is
//! too large to publish) to `sei.servicenow.dlq`, scrubbed of its integration's excluded fields
//! or as a reference only ([`dead_letter`]), and stores an input offset only once Kafka
//! acknowledged its output (`docs/architecture.md`). [`replay()`] re-normalizes history from
//! the raw topics.
//! `docs/normalizer.md` is the operator's guide.
//!
//! | module | concern |
//! |---|---|
//! | [`normalize`] | one raw message → an [`normalize::Output`] or a DLQ reason |
//! | [`dead_letter`] | what a DLQ record carries: the record scrubbed, or a reference |
//! | `stage` | start-up checks, topics, sessions and restarts ([`run`]) |
//! | `pipeline` | the at-least-once loop: pipelined produce, store-after-ack, backpressure |
//! | `transactional` | the `exactly_once` loop: batches in Kafka transactions |
//! | [`replay`] | replays up to the end offsets captured at start |
//! | [`metrics`] | Prometheus metrics |

pub mod dead_letter;
pub mod error;
pub mod fields;
pub mod mapping;
pub mod metrics;
pub mod normalize;
mod pipeline;
pub mod record;
pub mod replay;
mod stage;
mod stage_error;
mod summary;
mod transactional;

pub use dead_letter::{Content, DeadLetter};
pub use error::MapError;
pub use mapping::{excluded_fields, field_sources, map_record};
pub use normalize::{Decision, Normalizer};
pub use nowstream_model::policy::{self, ExclusionPolicy, PolicyError};
pub use record::{EntityRecord, Mapped};
pub use replay::{ReplayFrom, ReplayReport, replay};
pub use stage::{STAGE, run};
pub use stage_error::NormalizerError;
pub use summary::Summary;
