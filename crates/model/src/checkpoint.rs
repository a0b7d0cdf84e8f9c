//! `Checkpoint`: how far the fetcher has read one table (value of `servicenow.fetcher.checkpoints`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::avro_value::avro_record;
use crate::contract::{self, ContractSchema};
use crate::single_object::AvroRecord;

avro_record! {
    /// The fetcher's resume point for one (integration, table), kept on a compacted topic.
    ///
    /// The cursor is a keyset, `(last_updated_on, last_sys_id)`: a timestamp alone loses
    /// rows when more than a page of them share one second.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Checkpoint {
        /// SEI integration the checkpoint belongs to.
        pub integration_id: String,
        /// ServiceNow table it tracks.
        pub table: String,
        /// `sys_updated_on` of the last record published.
        pub last_updated_on: DateTime<Utc>,
        /// `sys_id` of the last record published; breaks ties on `last_updated_on`.
        pub last_sys_id: String,
        /// When the checkpoint was written; shows a stalled fetcher.
        pub updated_at: DateTime<Utc>,
        /// Records published for this table since the first checkpoint; for operators.
        #[serde(default)]
        pub records_total: i64,
        /// `sys_created_on` of the last `sys_audit_delete` row read for this table.
        pub deletes_last_created_on: Option<DateTime<Utc>>,
        /// `sys_id` of the last `sys_audit_delete` row read for this table.
        pub deletes_last_sys_id: Option<String>,
    }
}

impl AvroRecord for Checkpoint {
    fn contract() -> &'static ContractSchema {
        &contract::CHECKPOINT
    }
}
