//! `RawRecord`: a ServiceNow record as the Table API returned it (value of `servicenow.raw.<table>`).

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::avro_binary::{BodyReader, EncodeAvro, write_long};
use crate::avro_value::{FromAvro, ToAvro, ValueError, avro_record};
use crate::contract::{self, ContractSchema};
use crate::single_object::{AvroRecord, ModelError, read_header};
use crate::version::{Version, Versioned};

/// Whether a raw record reports a live version or a deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordOp {
    /// The record exists in this version.
    Upsert,
    /// The record was deleted (found in `sys_audit_delete`).
    Delete,
}

impl RecordOp {
    /// The Avro enum symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Upsert => "UPSERT",
            Self::Delete => "DELETE",
        }
    }

    /// Position of the symbol in the `RecordOp` enum of `raw_record.avsc`.
    fn index(self) -> u32 {
        match self {
            Self::Upsert => 0,
            Self::Delete => 1,
        }
    }
}

impl ToAvro for RecordOp {
    fn to_avro(&self) -> Value {
        Value::Enum(self.index(), self.symbol().to_owned())
    }
}

impl EncodeAvro for RecordOp {
    fn encode_avro(&self, out: &mut Vec<u8>) {
        write_long(out, i64::from(self.index()));
    }
}

impl FromAvro for RecordOp {
    fn from_avro(value: Value) -> Result<Self, ValueError> {
        // Matched by symbol, not index: schema resolution may renumber symbols.
        match value {
            Value::Enum(_, symbol) => match symbol.as_str() {
                "UPSERT" => Ok(Self::Upsert),
                "DELETE" => Ok(Self::Delete),
                _ => Err(ValueError::UnknownSymbol {
                    path: String::new(),
                    symbol,
                }),
            },
            other => Err(ValueError::WrongType {
                path: String::new(),
                expected: "enum RecordOp",
                found: format!("{:?}", apache_avro::schema::SchemaKind::from(&other)),
            }),
        }
    }
}

avro_record! {
    /// One ServiceNow record exactly as fetched, or the news that it was deleted.
    ///
    /// Raw records keep the source's full fidelity so the normalizer can change and be
    /// replayed without fetching again. Keyed `<integration_id>:<sys_id>`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct RawRecord {
        /// SEI integration the record was fetched for.
        pub integration_id: String,
        /// ServiceNow table, e.g. `incident`.
        pub table: String,
        /// The record's sys_id.
        pub sys_id: String,
        /// When ServiceNow last updated the record (for a DELETE: when it was deleted).
        pub sys_updated_on: DateTime<Utc>,
        /// ServiceNow's update counter, when the instance returns it.
        pub sys_mod_count: Option<i64>,
        /// Upsert or delete.
        pub op: RecordOp,
        /// When the fetcher received the record.
        pub fetched_at: DateTime<Utc>,
        /// Base URL of the instance, e.g. `https://acme.service-now.com`.
        pub instance_url: String,
        /// The record's JSON exactly as returned with `sysparm_display_value=all`; `None` for DELETE.
        pub payload: Option<String>,
    }
}

impl AvroRecord for RawRecord {
    fn contract() -> &'static ContractSchema {
        &contract::RAW_RECORD
    }

    /// Reads a message of the current schema directly, without apache-avro's `Value` tree
    /// (the normalizer decodes every raw record). Anything else — a released schema
    /// version, another fingerprint, a malformed body — goes through
    /// [`decode_with_apache_avro`](AvroRecord::decode_with_apache_avro), which resolves
    /// old versions and names what is wrong; so a message decodes to exactly what that
    /// reference gives, or fails as it fails.
    fn decode(bytes: &[u8]) -> Result<Self, ModelError> {
        match read_header(bytes) {
            Ok((fingerprint, body)) if fingerprint == contract::RAW_RECORD.fingerprint() => {
                match Self::read_current(body) {
                    Some(record) => Ok(record),
                    None => Self::decode_with_apache_avro(bytes),
                }
            }
            _ => Self::decode_with_apache_avro(bytes),
        }
    }
}

impl RawRecord {
    /// The body of a message written with the current `raw_record.avsc`, field by field in
    /// its order; `None` when anything does not fit (see [`BodyReader`]).
    fn read_current(body: &[u8]) -> Option<Self> {
        let mut reader = BodyReader::new(body);
        let integration_id = reader.str()?.to_owned();
        let table = reader.str()?.to_owned();
        let sys_id = reader.str()?.to_owned();
        let sys_updated_on = reader.timestamp_millis()?;
        let sys_mod_count = if reader.present()? {
            Some(reader.long()?)
        } else {
            None
        };
        let op = match reader.int()? {
            0 => RecordOp::Upsert,
            1 => RecordOp::Delete,
            _ => return None,
        };
        let fetched_at = reader.timestamp_millis()?;
        let instance_url = reader.str()?.to_owned();
        let payload = if reader.present()? {
            Some(reader.str()?.to_owned())
        } else {
            None
        };
        reader.is_empty().then_some(Self {
            integration_id,
            table,
            sys_id,
            sys_updated_on,
            sys_mod_count,
            op,
            fetched_at,
            instance_url,
            payload,
        })
    }
}

impl Versioned for RawRecord {
    fn version(&self) -> Version {
        Version::new(self.sys_updated_on, self.sys_mod_count)
    }
}
