//! `FieldDefinition`: value of `sei.servicenow.field_definition`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::CustomField;
use crate::avro_value::avro_record;
use crate::contract::{self, ContractSchema};
use crate::single_object::AvroRecord;
use crate::version::{Version, Versioned};

avro_record! {
    /// A `sys_dictionary` entry normalized for SEI: tells SEI the type and label of the
    /// custom fields carried in `custom_fields`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct FieldDefinition {
        /// SEI integration the record belongs to.
        pub integration_id: String,
        /// The dictionary entry's sys_id.
        pub sys_id: String,
        /// Last update in ServiceNow; first half of the version.
        pub sys_updated_on: DateTime<Utc>,
        /// ServiceNow's update counter; second half of the version.
        pub sys_mod_count: Option<i64>,
        /// Table the field belongs to (`sys_dictionary.name`).
        pub table: String,
        /// Column name; `None` for the entry describing the table itself.
        pub element: Option<String>,
        /// Label users see.
        pub column_label: Option<String>,
        /// Field type, e.g. `string`, `reference`, `glide_date_time`.
        pub internal_type: Option<String>,
        /// Table a reference field points to.
        pub reference: Option<String>,
        /// Whether the field is mandatory.
        pub mandatory: Option<bool>,
        /// Whether the field is active.
        pub active: Option<bool>,
        /// Maximum length of the value.
        pub max_length: Option<i32>,
        /// Names of the fields the exclusion policy removed.
        #[serde(default)]
        pub excluded_fields: Vec<String>,
        /// Custom `u_*` fields that were kept, by element name.
        #[serde(default)]
        pub custom_fields: BTreeMap<String, CustomField>,
    }
}

impl AvroRecord for FieldDefinition {
    fn contract() -> &'static ContractSchema {
        &contract::FIELD_DEFINITION
    }
}

impl Versioned for FieldDefinition {
    fn version(&self) -> Version {
        Version::new(self.sys_updated_on, self.sys_mod_count)
    }
}
