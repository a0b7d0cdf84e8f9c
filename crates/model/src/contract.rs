//! The contract's Avro schemas, compiled in from `/schemas`.
//!
//! Compiling the `.avsc` files in (rather than re-declaring them in Rust) means the
//! binaries can never drift from the files customers read: a schema edit is a code
//! change, and the tests of this crate see it.

use std::fmt;
use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use digest::Digest;

use crate::canonical_form::{CanonicalFormError, canonical_form};

/// The bytes of a compiled-in schema file, relative to the workspace's `schemas/` folder.
macro_rules! schema_file {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/",
            $path
        ))
    };
}

/// CRC-64-AVRO (Rabin) fingerprint of a schema's Parsing Canonical Form.
///
/// Stored as the 8 bytes that follow `C3 01` in single-object encoding (little-endian),
/// and displayed as their hex in that order: the same form fastavro and the Avro spec use.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 8]);

impl Fingerprint {
    /// Wraps the 8 fingerprint bytes exactly as they appear on the wire.
    pub const fn from_wire_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    /// Fingerprint of a schema given as JSON text, as the Avro spec defines it.
    pub fn of_schema_json(schema_json: &str) -> Result<Self, CanonicalFormError> {
        canonical_form(schema_json).map(|form| Self::of_canonical_form(&form))
    }

    /// CRC-64-AVRO of a Parsing Canonical Form.
    pub fn of_canonical_form(canonical_form: &str) -> Self {
        Self(Rabin::digest(canonical_form.as_bytes()).into())
    }

    /// The 8 bytes as written after the `C3 01` marker.
    pub const fn wire_bytes(&self) -> [u8; 8] {
        self.0
    }

    /// The fingerprint as the signed 64-bit number the Avro spec's test vectors list.
    pub const fn as_i64(&self) -> i64 {
        i64::from_le_bytes(self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A schema version that was released to customers and must stay readable.
#[derive(Debug)]
pub struct ReleasedSchema {
    version: u32,
    source: &'static str,
    schema: Schema,
    fingerprint: Fingerprint,
}

impl ReleasedSchema {
    /// Release number: `schemas/released/<name>/v<version>.avsc`.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The `.avsc` text as released.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The parsed released schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Fingerprint producers of this release put in their messages.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

/// One record schema of the public contract: the current version plus every released one.
///
/// Producers write with the current version; readers accept data written with any
/// released version too (Avro schema resolution fills what is missing from defaults),
/// so a consumer upgraded before its producers keeps working.
#[derive(Debug)]
pub struct ContractSchema {
    name: &'static str,
    full_name: String,
    source: &'static str,
    schema: Schema,
    fingerprint: Fingerprint,
    released: Vec<ReleasedSchema>,
}

impl ContractSchema {
    /// Parses a compiled-in schema and its released versions.
    ///
    /// The texts are part of the binary, not input: the crate's tests parse every one of
    /// them, so a failure here is a build defect and panicking names the broken file.
    pub(crate) fn load(
        name: &'static str,
        source: &'static str,
        released: &[(u32, &'static str)],
    ) -> Self {
        let (schema, fingerprint) = parse_compiled_in(name, source);
        let full_name = match &schema {
            Schema::Record(record) => record.name.fullname(None),
            other => panic!("schemas/{name}.avsc must define a record, found {other:?}"),
        };
        let released = released
            .iter()
            .map(|&(version, source)| {
                let (schema, fingerprint) = parse_compiled_in(name, source);
                ReleasedSchema {
                    version,
                    source,
                    fingerprint,
                    schema,
                }
            })
            .collect();
        Self {
            name,
            fingerprint,
            full_name,
            source,
            schema,
            released,
        }
    }

    /// File stem under `schemas/`, e.g. `incident`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Avro full name, e.g. `io.nowstream.sei.Incident`.
    pub fn full_name(&self) -> &str {
        &self.full_name
    }

    /// The current `.avsc` text.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The current parsed schema: what producers write and readers resolve into.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Fingerprint of the current schema.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Every released version, oldest first.
    pub fn released(&self) -> &[ReleasedSchema] {
        &self.released
    }

    /// The schema a message with `fingerprint` was written with, if it is this record's
    /// current or a released version.
    pub fn writer_schema(&self, fingerprint: Fingerprint) -> Option<&Schema> {
        if fingerprint == self.fingerprint {
            return Some(&self.schema);
        }
        self.released
            .iter()
            .find(|released| released.fingerprint == fingerprint)
            .map(|released| &released.schema)
    }
}

fn parse_compiled_in(name: &str, source: &str) -> (Schema, Fingerprint) {
    let schema = match Schema::parse_str(source) {
        Ok(schema) => schema,
        Err(error) => panic!("compiled-in schema {name} does not parse: {error}"),
    };
    match Fingerprint::of_schema_json(source) {
        Ok(fingerprint) => (schema, fingerprint),
        Err(error) => panic!("compiled-in schema {name} has no canonical form: {error}"),
    }
}

/// `raw_record.avsc`: value of `servicenow.raw.<table>`.
pub static RAW_RECORD: LazyLock<ContractSchema> = LazyLock::new(|| {
    ContractSchema::load(
        "raw_record",
        schema_file!("raw_record.avsc"),
        &[(1, schema_file!("released/raw_record/v1.avsc"))],
    )
});

/// `checkpoint.avsc`: value of `servicenow.fetcher.checkpoints`.
pub static CHECKPOINT: LazyLock<ContractSchema> = LazyLock::new(|| {
    ContractSchema::load(
        "checkpoint",
        schema_file!("checkpoint.avsc"),
        &[(1, schema_file!("released/checkpoint/v1.avsc"))],
    )
});

/// `incident.avsc`: value of `sei.servicenow.incident`.
pub static INCIDENT: LazyLock<ContractSchema> = LazyLock::new(|| {
    ContractSchema::load(
        "incident",
        schema_file!("incident.avsc"),
        &[
            (1, schema_file!("released/incident/v1.avsc")),
            (2, schema_file!("released/incident/v2.avsc")),
        ],
    )
});

/// `change_request.avsc`: value of `sei.servicenow.change_request`.
pub static CHANGE_REQUEST: LazyLock<ContractSchema> = LazyLock::new(|| {
    ContractSchema::load(
        "change_request",
        schema_file!("change_request.avsc"),
        &[(1, schema_file!("released/change_request/v1.avsc"))],
    )
});

/// `user.avsc`: value of `sei.servicenow.user`.
pub static USER: LazyLock<ContractSchema> = LazyLock::new(|| {
    ContractSchema::load(
        "user",
        schema_file!("user.avsc"),
        &[
            (1, schema_file!("released/user/v1.avsc")),
            (2, schema_file!("released/user/v2.avsc")),
        ],
    )
});

/// `field_definition.avsc`: value of `sei.servicenow.field_definition`.
pub static FIELD_DEFINITION: LazyLock<ContractSchema> = LazyLock::new(|| {
    ContractSchema::load(
        "field_definition",
        schema_file!("field_definition.avsc"),
        &[(1, schema_file!("released/field_definition/v1.avsc"))],
    )
});

/// Every record schema of the contract, for registries, docs and compatibility checks.
pub fn all() -> [&'static ContractSchema; 6] {
    [
        &RAW_RECORD,
        &CHECKPOINT,
        &INCIDENT,
        &CHANGE_REQUEST,
        &USER,
        &FIELD_DEFINITION,
    ]
}

/// The contract schema whose current or released version has `fingerprint`.
pub fn by_fingerprint(fingerprint: Fingerprint) -> Option<&'static ContractSchema> {
    all()
        .into_iter()
        .find(|contract| contract.writer_schema(fingerprint).is_some())
}
