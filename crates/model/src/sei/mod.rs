//! SEI entities: ServiceNow records normalized to the SEI ServiceNow datasheet.
//!
//! Each type is both the Avro value of its `sei.servicenow.<entity>` topic and, through
//! serde, the entity JSON of nowstream's ingestion contract (same field names, RFC 3339 UTC times).
//! Fields that the exclusion policy may remove are `Option`s; the names of removed fields
//! are listed in `excluded_fields`, never their values.

mod change_request;
mod field_definition;
mod field_value;
mod incident;
mod user;

pub use change_request::ChangeRequest;
pub use field_definition::FieldDefinition;
pub use field_value::{Choice, CustomField, Reference};
pub use incident::Incident;
pub use user::User;
