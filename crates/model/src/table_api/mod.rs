//! The shape of ServiceNow's Table API records, as every crate reads them: the fetcher keys
//! and versions them, the ServiceNow client pages through them, the normalizer maps them and
//! the simulator writes them. One home, so all of them agree on what a field's stored value
//! is, what a ServiceNow time looks like and what each table is called.
//!
//! - [`field`]: one field of a record fetched with `sysparm_display_value=all`
//!   (`{"value", "display_value", "link"}`), and how its stored and display values are read.
//! - [`record`]: a whole record's fields read straight from its JSON text, without building a
//!   `serde_json::Value` tree (the normalizer's hot path), each read as [`field`] reads it.
//! - [`time`]: the UTC `yyyy-MM-dd HH:mm:ss` of date-time values and encoded queries.
//! - [`tables`]: the names of the tables the project reads.
//! - [`query`]: the encoded query language (`sysparm_query`): the fetcher's keyset queries and
//!   customer filters, the simulator's evaluation of them, the config's check of a filter.

pub mod field;
pub mod query;
pub mod record;
mod record_scan;
pub mod tables;
pub mod time;

pub use field::{
    FieldShape, FieldShapeError, FieldText, FieldValue, read_field, read_field_value, stored_value,
};
pub use record::{RecordFields, RecordParseError};
pub use time::{TIME_FORMAT, TimeError, format_time, parse_time};
