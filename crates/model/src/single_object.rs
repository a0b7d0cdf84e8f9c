//! Avro single-object encoding: `C3 01`, the writer schema's 8-byte CRC-64-AVRO
//! fingerprint (little-endian), then the Avro binary body.
//!
//! The fingerprint makes every Kafka value self-describing without a schema registry:
//! a reader looks the writer schema up among the contract's current and released
//! versions, so producers and consumers can be upgraded in any order.

use apache_avro::{from_avro_datum, to_avro_datum};

use crate::avro_binary::EncodeAvro;
use crate::avro_value::{FromAvro, ToAvro, ValueError};
use crate::contract::{self, ContractSchema, Fingerprint};

/// The two bytes every single-object encoded message starts with.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];

/// Magic plus fingerprint.
pub const HEADER_LEN: usize = 10;

/// What was wrong with the 10-byte single-object header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    #[error("message is {len} bytes, shorter than the {HEADER_LEN}-byte single-object header")]
    TooShort {
        /// Length of the message.
        len: usize,
    },
    /// The first two bytes are not `C3 01`: not single-object encoded (plain Avro, JSON,
    /// a schema-registry frame, ...).
    #[error("message starts with {:02x} {:02x}, not the single-object marker c3 01", .found[0], .found[1])]
    BadMagic {
        /// The two bytes found.
        found: [u8; 2],
    },
}

/// Why a value could not be encoded or decoded. Every variant names the record schema
/// (`io.nowstream.sei.Incident`, ...) it was about.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The message header is malformed.
    #[error("cannot decode {schema}: {source}")]
    Header {
        /// Full name of the expected record schema.
        schema: &'static str,
        /// What was wrong.
        #[source]
        source: HeaderError,
    },
    /// The fingerprint matches no version of any contract schema.
    #[error(
        "cannot decode {schema}: writer schema fingerprint {fingerprint} is not a known version of it"
    )]
    UnknownFingerprint {
        /// Full name of the expected record schema.
        schema: &'static str,
        /// Fingerprint found in the header.
        fingerprint: Fingerprint,
    },
    /// The message holds another contract record (e.g. a User where an Incident was expected).
    #[error("cannot decode {schema}: message was written as {found} (fingerprint {fingerprint})")]
    OtherSchema {
        /// Full name of the expected record schema.
        schema: &'static str,
        /// Full name of the schema the fingerprint belongs to.
        found: &'static str,
        /// Fingerprint found in the header.
        fingerprint: Fingerprint,
    },
    /// The body does not decode with the writer schema named by the fingerprint.
    #[error("cannot decode {schema}: body does not match writer schema {fingerprint}: {source}")]
    Body {
        /// Full name of the expected record schema.
        schema: &'static str,
        /// Fingerprint found in the header.
        fingerprint: Fingerprint,
        /// The Avro decoder's complaint.
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// The body decoded but bytes were left over: the message was truncated, padded or
    /// concatenated on the way.
    #[error("cannot decode {schema}: {count} bytes left over after the body")]
    TrailingBytes {
        /// Full name of the expected record schema.
        schema: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// The decoded value does not fit the Rust type (a schema and its Rust type disagree).
    #[error("cannot decode {schema}: {source}")]
    Value {
        /// Full name of the expected record schema.
        schema: &'static str,
        /// The field that did not fit.
        #[source]
        source: ValueError,
    },
    /// The Rust value does not validate against the schema (a schema and its Rust type disagree).
    #[error("cannot encode {schema}: {source}")]
    Encode {
        /// Full name of the record schema.
        schema: &'static str,
        /// The Avro encoder's complaint.
        #[source]
        source: Box<apache_avro::Error>,
    },
}

/// A top-level record of the contract: a Kafka value, encoded single-object.
pub trait AvroRecord: ToAvro + FromAvro + EncodeAvro {
    /// The contract schema this type is written with.
    fn contract() -> &'static ContractSchema;

    /// Encodes with the current schema, header included.
    ///
    /// Writes the Avro binary directly from the fields ([`crate::avro_binary`]); the bytes
    /// are those [`encode_with_apache_avro`](Self::encode_with_apache_avro) writes (map
    /// entries aside, which apache-avro writes in hash order). Never fails today; the
    /// `Result` stays so that a future type that can hold a value its schema cannot (an
    /// out-of-range number, say) reports it instead of writing it.
    fn encode(&self) -> Result<Vec<u8>, ModelError> {
        // Room for a typical entity (an incident is 400 to 800 bytes) without growing.
        let mut message = Vec::with_capacity(1024);
        message.extend_from_slice(&MAGIC);
        message.extend_from_slice(&Self::contract().fingerprint().wire_bytes());
        self.encode_avro(&mut message);
        Ok(message)
    }

    /// Encodes through apache-avro: builds the generic `Value`, validates it against the
    /// schema, writes it. The reference implementation the tests hold
    /// [`encode`](Self::encode) to; about ten times slower.
    fn encode_with_apache_avro(&self) -> Result<Vec<u8>, ModelError> {
        encode_with(Self::contract(), self.to_avro())
    }

    /// Decodes a message written with the current or any released version of the schema.
    fn decode(bytes: &[u8]) -> Result<Self, ModelError> {
        Self::decode_with_apache_avro(bytes)
    }

    /// Decodes through apache-avro's generic `Value` (with schema resolution for released
    /// versions): what [`decode`](Self::decode) does unless a type has a direct reader,
    /// and the reference such a reader is tested against.
    fn decode_with_apache_avro(bytes: &[u8]) -> Result<Self, ModelError> {
        let contract = Self::contract();
        let value = decode_value(contract, bytes)?;
        Self::from_avro(value).map_err(|source| ModelError::Value {
            schema: contract.full_name(),
            source,
        })
    }
}

/// Splits a message into the writer schema's fingerprint and the Avro body.
pub fn read_header(bytes: &[u8]) -> Result<(Fingerprint, &[u8]), HeaderError> {
    let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(HeaderError::TooShort { len: bytes.len() });
    };
    let [first, second, fingerprint @ ..] = *header;
    if [first, second] != MAGIC {
        return Err(HeaderError::BadMagic {
            found: [first, second],
        });
    }
    Ok((Fingerprint::from_wire_bytes(fingerprint), body))
}

/// Encodes `value` with the current version of `contract`, header included.
fn encode_with(
    contract: &'static ContractSchema,
    value: apache_avro::types::Value,
) -> Result<Vec<u8>, ModelError> {
    let body = to_avro_datum(contract.schema(), value).map_err(|source| ModelError::Encode {
        schema: contract.full_name(),
        source: Box::new(source),
    })?;
    let mut message = Vec::with_capacity(HEADER_LEN + body.len());
    message.extend_from_slice(&MAGIC);
    message.extend_from_slice(&contract.fingerprint().wire_bytes());
    message.extend_from_slice(&body);
    Ok(message)
}

/// Decodes a message of `contract` into a generic value of its current schema.
fn decode_value(
    contract: &'static ContractSchema,
    bytes: &[u8],
) -> Result<apache_avro::types::Value, ModelError> {
    let schema = contract.full_name();
    let (fingerprint, mut body) =
        read_header(bytes).map_err(|source| ModelError::Header { schema, source })?;
    let Some(writer) = contract.writer_schema(fingerprint) else {
        return Err(match contract::by_fingerprint(fingerprint) {
            Some(other) => ModelError::OtherSchema {
                schema,
                found: other.full_name(),
                fingerprint,
            },
            None => ModelError::UnknownFingerprint {
                schema,
                fingerprint,
            },
        });
    };
    let body_error = |source| ModelError::Body {
        schema,
        fingerprint,
        source: Box::new(source),
    };
    let value = from_avro_datum(writer, &mut body, None).map_err(body_error)?;
    // apache-avro reads a string cut short by the end of input as null instead of failing,
    // so a truncated message could otherwise decode with a field silently emptied.
    if !value.validate(writer) {
        return Err(body_error(apache_avro::error::Details::Validation.into()));
    }
    if !body.is_empty() {
        return Err(ModelError::TrailingBytes {
            schema,
            count: body.len(),
        });
    }
    // Resolution is only needed when an older release wrote the message.
    if fingerprint == contract.fingerprint() {
        Ok(value)
    } else {
        value.resolve(contract.schema()).map_err(body_error)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use apache_avro::types::Value;

    use super::*;

    const V1: &str = r#"{"type":"record","name":"T","namespace":"test.evolve","fields":[
        {"name":"id","type":"string"}]}"#;
    const V2: &str = r#"{"type":"record","name":"T","namespace":"test.evolve","fields":[
        {"name":"id","type":"string"},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"count","type":"long","default":7}]}"#;

    static EVOLVED: LazyLock<ContractSchema> =
        LazyLock::new(|| ContractSchema::load("evolved", V2, &[(1, V1)]));

    fn field<'v>(value: &'v Value, name: &str) -> &'v Value {
        match value {
            Value::Record(fields) => &fields.iter().find(|(field, _)| field == name).unwrap().1,
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn messages_written_with_a_released_version_resolve_into_the_current_one() {
        let released = &EVOLVED.released()[0];
        assert_ne!(released.fingerprint(), EVOLVED.fingerprint());
        let body = to_avro_datum(
            released.schema(),
            Value::Record(vec![("id".into(), Value::String("x".into()))]),
        )
        .unwrap();
        let mut message = MAGIC.to_vec();
        message.extend(released.fingerprint().wire_bytes());
        message.extend(body);

        let value = decode_value(&EVOLVED, &message).unwrap();
        assert_eq!(field(&value, "id"), &Value::String("x".into()));
        assert_eq!(
            field(&value, "note"),
            &Value::Union(0, Box::new(Value::Null))
        );
        assert_eq!(field(&value, "count"), &Value::Long(7));
    }

    #[test]
    fn messages_written_with_the_current_version_decode_directly() {
        let value = Value::Record(vec![
            ("id".into(), Value::String("y".into())),
            (
                "note".into(),
                Value::Union(1, Box::new(Value::String("n".into()))),
            ),
            ("count".into(), Value::Long(1)),
        ]);
        let message = encode_with(&EVOLVED, value.clone()).unwrap();
        assert_eq!(decode_value(&EVOLVED, &message).unwrap(), value);
    }
}
