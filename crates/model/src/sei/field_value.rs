//! The shapes ServiceNow field values take in SEI entities.

use serde::{Deserialize, Serialize};

use crate::avro_value::avro_record;

avro_record! {
    /// A choice field: the stored value and the label users see.
    ///
    /// Labels are localised and customisable per instance; compare on `value`.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct Choice {
        /// Stored value, e.g. `"1"`.
        pub value: Option<String>,
        /// Display label, e.g. `"1 - Critical"`.
        pub label: Option<String>,
    }
}

avro_record! {
    /// A reference field: the referenced record's sys_id and its display value.
    ///
    /// An empty reference is a `None` field, never a `Reference` with an empty sys_id.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct Reference {
        /// sys_id of the referenced record.
        pub sys_id: String,
        /// Its display value (e.g. a user's name), as ServiceNow rendered it.
        pub display_value: Option<String>,
    }
}

avro_record! {
    /// A custom (`u_*`) field, kept as ServiceNow returned it: its type is only known from
    /// `sys_dictionary` (see [`FieldDefinition`](crate::FieldDefinition)).
    #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct CustomField {
        /// Stored value as a string.
        pub value: Option<String>,
        /// Display value as ServiceNow rendered it.
        pub display_value: Option<String>,
    }
}
