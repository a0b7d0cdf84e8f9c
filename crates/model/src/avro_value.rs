//! Conversion between the Rust types and Avro generic values.
//!
//! The Rust types serialize with serde as SEI's entity JSON (RFC 3339 times), so Avro
//! (timestamp-millis longs, `["null", T]` unions) needs its own mapping; keeping it
//! explicit, rather than a second serde representation, lets every mismatch name the
//! field it happened in.

use std::collections::{BTreeMap, HashMap};

use apache_avro::schema::SchemaKind;
use apache_avro::types::Value;
use chrono::{DateTime, Utc};

/// An Avro value that does not fit the Rust field it was meant for.
///
/// `path` names the field, dotted through nested records (`priority.label`,
/// `custom_fields.u_team.value`). Only value kinds are reported, never the values, since
/// records carry user data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The record has no such field.
    #[error("field `{path}` is missing")]
    Missing {
        /// Dotted path of the field.
        path: String,
    },
    /// The value has another Avro type than the field needs.
    #[error("field `{path}` should be {expected}, found {found}")]
    WrongType {
        /// Dotted path of the field.
        path: String,
        /// What the field needs.
        expected: &'static str,
        /// The Avro kind found.
        found: String,
    },
    /// A timestamp that `chrono` cannot represent.
    #[error("field `{path}` holds timestamp {millis} ms, outside the representable range")]
    TimestampOutOfRange {
        /// Dotted path of the field.
        path: String,
        /// The timestamp-millis value.
        millis: i64,
    },
    /// An enum symbol the Rust type does not know.
    #[error("field `{path}` holds unknown symbol `{symbol}`")]
    UnknownSymbol {
        /// Dotted path of the field.
        path: String,
        /// The symbol found.
        symbol: String,
    },
}

impl ValueError {
    fn wrong_type(expected: &'static str, found: &Value) -> Self {
        Self::WrongType {
            path: String::new(),
            expected,
            found: format!("{:?}", SchemaKind::from(found)),
        }
    }

    /// Puts `field` in front of the path, as the error travels out of a nested value.
    pub(crate) fn within(self, field: &str) -> Self {
        let prefix = |path: String| {
            if path.is_empty() {
                field.to_owned()
            } else {
                format!("{field}.{path}")
            }
        };
        match self {
            Self::Missing { path } => Self::Missing { path: prefix(path) },
            Self::WrongType {
                path,
                expected,
                found,
            } => Self::WrongType {
                path: prefix(path),
                expected,
                found,
            },
            Self::TimestampOutOfRange { path, millis } => Self::TimestampOutOfRange {
                path: prefix(path),
                millis,
            },
            Self::UnknownSymbol { path, symbol } => Self::UnknownSymbol {
                path: prefix(path),
                symbol,
            },
        }
    }
}

/// A Rust value that has an Avro form in the contract's schemas.
pub trait ToAvro {
    /// The Avro generic value, shaped as the schema expects.
    fn to_avro(&self) -> Value;
}

/// A Rust value that can be rebuilt from its Avro form.
pub trait FromAvro: Sized {
    /// Rebuilds the value, naming the field that does not fit.
    fn from_avro(value: Value) -> Result<Self, ValueError>;
}

impl ToAvro for String {
    fn to_avro(&self) -> Value {
        Value::String(self.clone())
    }
}

impl FromAvro for String {
    fn from_avro(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::String(text) => Ok(text),
            other => Err(ValueError::wrong_type("string", &other)),
        }
    }
}

impl ToAvro for i64 {
    fn to_avro(&self) -> Value {
        Value::Long(*self)
    }
}

impl FromAvro for i64 {
    fn from_avro(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Long(number) => Ok(number),
            // Avro promotes int to long when a writer used int.
            Value::Int(number) => Ok(i64::from(number)),
            other => Err(ValueError::wrong_type("long", &other)),
        }
    }
}

impl ToAvro for i32 {
    fn to_avro(&self) -> Value {
        Value::Int(*self)
    }
}

impl FromAvro for i32 {
    fn from_avro(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Int(number) => Ok(number),
            other => Err(ValueError::wrong_type("int", &other)),
        }
    }
}

impl ToAvro for bool {
    fn to_avro(&self) -> Value {
        Value::Boolean(*self)
    }
}

impl FromAvro for bool {
    fn from_avro(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Boolean(flag) => Ok(flag),
            other => Err(ValueError::wrong_type("boolean", &other)),
        }
    }
}

/// Times travel as timestamp-millis: sub-millisecond precision is dropped on encoding
/// (ServiceNow's own times have whole seconds).
impl ToAvro for DateTime<Utc> {
    fn to_avro(&self) -> Value {
        Value::TimestampMillis(self.timestamp_millis())
    }
}

impl FromAvro for DateTime<Utc> {
    fn from_avro(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::TimestampMillis(millis) | Value::Long(millis) => {
                DateTime::from_timestamp_millis(millis).ok_or(ValueError::TimestampOutOfRange {
                    path: String::new(),
                    millis,
                })
            }
            other => Err(ValueError::wrong_type("timestamp-millis", &other)),
        }
    }
}

/// Every optional field of the contract is `["null", T]`, null first so that `null`
/// can be its default: `None` is branch 0, `Some` branch 1.
impl<T: ToAvro> ToAvro for Option<T> {
    fn to_avro(&self) -> Value {
        match self {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(inner) => Value::Union(1, Box::new(inner.to_avro())),
        }
    }
}

impl<T: FromAvro> FromAvro for Option<T> {
    fn from_avro(value: Value) -> Result<Self, ValueError> {
        let inner = match value {
            Value::Union(_, inner) => *inner,
            other => other,
        };
        match inner {
            Value::Null => Ok(None),
            other => T::from_avro(other).map(Some),
        }
    }
}

impl<T: ToAvro> ToAvro for Vec<T> {
    fn to_avro(&self) -> Value {
        Value::Array(self.iter().map(ToAvro::to_avro).collect())
    }
}

impl<T: FromAvro> FromAvro for Vec<T> {
    fn from_avro(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(index, item)| T::from_avro(item).map_err(|e| e.within(&index.to_string())))
                .collect(),
            other => Err(ValueError::wrong_type("array", &other)),
        }
    }
}

/// Maps are `BTreeMap`s in Rust so JSON output and equality do not depend on hash order.
impl<T: ToAvro> ToAvro for BTreeMap<String, T> {
    fn to_avro(&self) -> Value {
        Value::Map(
            self.iter()
                .map(|(key, value)| (key.clone(), value.to_avro()))
                .collect::<HashMap<_, _>>(),
        )
    }
}

impl<T: FromAvro> FromAvro for BTreeMap<String, T> {
    fn from_avro(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Map(entries) => entries
                .into_iter()
                .map(|(key, value)| match T::from_avro(value) {
                    Ok(value) => Ok((key, value)),
                    Err(error) => Err(error.within(&key)),
                })
                .collect(),
            other => Err(ValueError::wrong_type("map", &other)),
        }
    }
}

/// Builds an Avro record value from fields in schema order.
pub(crate) fn record<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    )
}

/// The fields of a decoded Avro record, taken out one by one by name.
#[derive(Debug)]
pub(crate) struct RecordFields {
    fields: Vec<(String, Value)>,
}

impl RecordFields {
    pub(crate) fn new(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Record(fields) => Ok(Self { fields }),
            other => Err(ValueError::wrong_type("record", &other)),
        }
    }

    /// Removes field `name` and converts it; errors name the field.
    pub(crate) fn take<T: FromAvro>(&mut self, name: &str) -> Result<T, ValueError> {
        let position = self
            .fields
            .iter()
            .position(|(field, _)| field == name)
            .ok_or_else(|| ValueError::Missing {
                path: name.to_owned(),
            })?;
        let (_, value) = self.fields.swap_remove(position);
        T::from_avro(value).map_err(|error| error.within(name))
    }
}

/// Declares a contract record: the struct (with serde for entity JSON) plus its Avro
/// mapping (apache-avro `Value`s both ways, and the direct binary encoding of
/// [`crate::avro_binary`]), from one field list, so the Rust field names and order cannot
/// drift from the Avro ones.
///
/// Fields must be listed in the `.avsc` order; a raw identifier (`r#type`) maps to the
/// Avro name without `r#`, as serde does.
macro_rules! avro_record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                pub $field:ident : $ty:ty
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $(
                $(#[$field_meta])*
                pub $field: $ty,
            )*
        }

        impl $crate::avro_value::ToAvro for $name {
            fn to_avro(&self) -> apache_avro::types::Value {
                $crate::avro_value::record([
                    $(
                        (
                            stringify!($field).trim_start_matches("r#"),
                            $crate::avro_value::ToAvro::to_avro(&self.$field),
                        ),
                    )*
                ])
            }
        }

        impl $crate::avro_binary::EncodeAvro for $name {
            fn encode_avro(&self, out: &mut Vec<u8>) {
                $(
                    $crate::avro_binary::EncodeAvro::encode_avro(&self.$field, out);
                )*
            }
        }

        impl $crate::avro_value::FromAvro for $name {
            fn from_avro(
                value: apache_avro::types::Value,
            ) -> Result<Self, $crate::avro_value::ValueError> {
                let mut fields = $crate::avro_value::RecordFields::new(value)?;
                Ok(Self {
                    $(
                        $field: fields.take(stringify!($field).trim_start_matches("r#"))?,
                    )*
                })
            }
        }
    };
}

pub(crate) use avro_record;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_errors_name_the_full_field_path() {
        let error = ValueError::wrong_type("string", &Value::Long(1))
            .within("label")
            .within("priority");
        assert_eq!(
            error.to_string(),
            "field `priority.label` should be string, found Long"
        );
    }

    #[test]
    fn option_accepts_both_a_union_and_a_bare_null() {
        let some: Option<String> =
            FromAvro::from_avro(Value::Union(1, Box::new(Value::String("x".into())))).unwrap();
        assert_eq!(some.as_deref(), Some("x"));
        let none: Option<String> = FromAvro::from_avro(Value::Null).unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn timestamps_outside_chrono_range_are_reported_not_wrapped() {
        let error = <DateTime<Utc>>::from_avro(Value::TimestampMillis(i64::MAX)).unwrap_err();
        assert!(matches!(
            error,
            ValueError::TimestampOutOfRange {
                millis: i64::MAX,
                ..
            }
        ));
    }
}
