//! A whole Table API record read straight from its JSON text.
//!
//! [`RecordFields::parse`] walks the JSON once and keeps, for each top-level key the caller
//! wants, what [`read_field`](super::read_field) would read from it — the stored and display
//! values, borrowed from the text where it has no escapes — without building a
//! `serde_json::Value` tree (maps of maps, an owned `String` per key and value). Keys the
//! caller does not want (an exclusion policy's) are skipped unread: their values are checked
//! to be JSON and nothing else is kept of them.
//!
//! It reads exactly as parsing into a `Value` and calling `read_field` would:
//! [`RecordFields::from_map`] is that reading, and the tests hold the two to the same result
//! for generated records, including malformed JSON (the same parser error) and fields of
//! every shape. Nested keys need no exclusion of their own: `read_field` reads only
//! `value` and `display_value` inside a field object, which a policy cannot exclude, and
//! a nested object or array reads as a shape error whatever it holds.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::field::{
    A_JSON_ARRAY, A_JSON_OBJECT, DISPLAY_VALUE_NOT_SCALAR, FieldShape, FieldShapeError, FieldText,
    NEITHER_VALUE_NOR_DISPLAY, VALUE_NOT_SCALAR, number_text, read_field_value,
};
use super::record_scan::scan_record;

/// One field as read: its texts, or why it is not a Table API field.
type ReadField<'a> = Result<FieldText<'a>, FieldShapeError>;

/// Why a payload is not a record.
#[derive(Debug, thiserror::Error)]
pub enum RecordParseError {
    /// Not JSON: serde_json's complaint (a position, never content).
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not an object of fields.
    #[error("the JSON is {found}, not an object")]
    NotObject {
        /// The kind of JSON value: `null`, `boolean`, `number`, `string` or `array`.
        found: &'static str,
    },
}

/// The fields of one record, by name: each read as [`read_field`](super::read_field) reads
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFields<'a> {
    /// In the order of the JSON, one entry per name: a repeated key keeps its first
    /// position and its last value, as a parsed `serde_json::Map` (an `IndexMap`) keeps it.
    fields: Vec<(Cow<'a, str>, ReadField<'a>)>,
    /// Open addressing over `fields`: each slot is a position in `fields` plus one, 0 when
    /// empty; the length is a power of two at least twice the number of fields. Cheaper than
    /// a `HashMap` (no SipHash) or a sorted list (no sort) for a few dozen short keys.
    slots: Vec<u32>,
}

impl<'a> RecordFields<'a> {
    /// Parses `json`, a record's JSON object, keeping the top-level keys for which `keep` is
    /// true. The whole text must be JSON (the same checks and errors as
    /// `serde_json::from_str::<Value>`), including the values of keys that are not kept.
    ///
    /// A quick scanner reads what the Table API writes (strings, objects, `null`, booleans);
    /// anything else (a number, say, or malformed JSON) is read by
    /// [`parse_with_serde_json`](Self::parse_with_serde_json), which words the errors.
    pub fn parse(json: &'a str, keep: impl Fn(&str) -> bool) -> Result<Self, RecordParseError> {
        match scan_record(json, &keep) {
            Some(record) => Ok(record),
            None => Self::parse_with_serde_json(json, keep),
        }
    }

    /// [`parse`](Self::parse) through serde_json's deserializer only: every JSON text,
    /// serde_json's own errors.
    pub fn parse_with_serde_json(
        json: &'a str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Self, RecordParseError> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let top = TopLevel { keep: &keep }.deserialize(&mut deserializer)?;
        deserializer.end()?;
        top.map_err(|found| RecordParseError::NotObject { found })
    }

    /// The same reading over an already parsed object, through
    /// [`read_field`](super::read_field): what [`parse`](Self::parse) is tested against.
    pub fn from_map(map: &'a Map<String, Value>) -> Self {
        let mut record = Self::default();
        for (name, value) in map {
            record.insert(Cow::Borrowed(name.as_str()), read_field_value(Some(value)));
        }
        record
    }

    /// Field `name`, read as [`read_field`](super::read_field) reads it (absent when the
    /// record has no such key, or it was not kept).
    pub fn read(&self, name: &str) -> Result<FieldText<'_>, FieldShapeError> {
        match self.find(name) {
            Err(_) => Ok(FieldText {
                value: None,
                display_value: None,
                shape: FieldShape::Absent,
            }),
            Ok(position) => match &self.fields[position].1 {
                Ok(text) => Ok(FieldText {
                    value: text.value.as_deref().map(Cow::Borrowed),
                    display_value: text.display_value.as_deref().map(Cow::Borrowed),
                    shape: text.shape,
                }),
                Err(error) => Err(*error),
            },
        }
    }

    /// Every field name kept, in the order of the JSON.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(name, _)| name.as_ref())
    }

    /// How many fields were kept.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether no field was kept.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub(super) fn with_capacity(fields: usize) -> Self {
        Self {
            fields: Vec::with_capacity(fields),
            slots: Vec::new(),
        }
    }

    /// Adds a field; a name seen before keeps its position and takes the new value.
    pub(super) fn insert(&mut self, name: Cow<'a, str>, field: ReadField<'a>) {
        if (self.fields.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        match self.find(&name) {
            Ok(position) => self.fields[position].1 = field,
            Err(slot) => {
                self.fields.push((name, field));
                // Positions are below the slot count, which fits memory far before u32 ends.
                self.slots[slot] = u32::try_from(self.fields.len()).unwrap_or(u32::MAX);
            }
        }
    }

    /// `Ok(position)` of `name` in `fields`, or `Err(slot)`: the empty slot where it goes.
    fn find(&self, name: &str) -> Result<usize, usize> {
        let mask = self.slots.len().wrapping_sub(1);
        if self.slots.is_empty() {
            return Err(0);
        }
        let mut slot = key_hash(name) as usize & mask;
        loop {
            match self.slots[slot] {
                0 => return Err(slot),
                entry => {
                    let position = entry as usize - 1;
                    if self.fields[position].0 == name {
                        return Ok(position);
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(128);
        self.slots.clear();
        self.slots.resize(len, 0);
        let mask = len - 1;
        for (position, (name, _)) in self.fields.iter().enumerate() {
            let mut slot = key_hash(name) as usize & mask;
            while self.slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = u32::try_from(position + 1).unwrap_or(u32::MAX);
        }
    }
}

/// A quick hash of a key from its length and its first and last eight bytes (column names
/// differ there). Collisions only cost probes, since `find` compares whole names; and the
/// keys are the record's own column names, so a payload crafted to collide slows its own
/// record a little, nothing more.
fn key_hash(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let word = |chunk: &[u8]| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        u64::from_le_bytes(word)
    };
    let (head, tail) = match bytes.len() {
        0..=8 => (word(bytes), 0),
        len => (word(&bytes[..8]), word(&bytes[len - 8..])),
    };
    let mixed =
        (head ^ tail.rotate_left(31) ^ bytes.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    mixed ^ (mixed >> 29)
}

/// A string borrowed from the JSON text when it has no escapes, owned otherwise.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// Any JSON value, checked and dropped. Unlike serde's `IgnoredAny` (which serde_json
/// skips without a nesting limit) it descends through `deserialize_any`, so the value is
/// held to the same nesting limit as when it is parsed into a `Value`.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

/// The top-level value: the kept fields of an object, or the kind of anything else.
struct TopLevel<'k, K> {
    keep: &'k K,
}

impl<'de, K: Fn(&str) -> bool> DeserializeSeed<'de> for TopLevel<'_, K> {
    type Value = Result<RecordFields<'de>, &'static str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, K: Fn(&str) -> bool> Visitor<'de> for TopLevel<'_, K> {
    type Value = Result<RecordFields<'de>, &'static str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of fields")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err("boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err("number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err("number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err("number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err("string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(Err("array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // A Table API record has a few dozen fields.
        let mut record = RecordFields::with_capacity(64);
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            if (self.keep)(&name) {
                let field = map.next_value_seed(FieldSeed)?;
                record.insert(name, field);
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(Ok(record))
    }
}

/// One field's value, read as [`read_field_value`] reads it.
struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = ReadField<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn plain<'a, E>(value: Option<Cow<'a, str>>) -> Result<ReadField<'a>, E> {
    Ok(Ok(FieldText {
        value,
        display_value: None,
        shape: FieldShape::Plain,
    }))
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = ReadField<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Table API field")
    }
    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Self::Value, E> {
        plain(Some(bool_text(flag)))
    }
    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Self::Value, E> {
        plain(number_cow(Number::from(number)))
    }
    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Self::Value, E> {
        plain(number_cow(Number::from(number)))
    }
    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Self::Value, E> {
        plain(float_cow(number))
    }
    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        plain((!text.is_empty()).then_some(Cow::Borrowed(text)))
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        plain((!text.is_empty()).then(|| Cow::Owned(text.to_owned())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        plain(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(Err(FieldShapeError {
            found: A_JSON_ARRAY,
        }))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // `None`: the key is absent; `Some(Err)`: present but not a scalar.
        let mut value: Option<Scalar<'de>> = None;
        let mut display_value: Option<Scalar<'de>> = None;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_ref() {
                "value" => value = Some(map.next_value()?),
                "display_value" => display_value = Some(map.next_value()?),
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        let shape_error = |found| Ok(Err(FieldShapeError { found }));
        if value.is_none() && display_value.is_none() {
            return shape_error(NEITHER_VALUE_NOR_DISPLAY);
        }
        let value = match value {
            None => None,
            Some(Scalar(Ok(text))) => text,
            Some(Scalar(Err(_))) => return shape_error(VALUE_NOT_SCALAR),
        };
        let display_value = match display_value {
            None => None,
            Some(Scalar(Ok(text))) => text,
            Some(Scalar(Err(_))) => return shape_error(DISPLAY_VALUE_NOT_SCALAR),
        };
        Ok(Ok(FieldText {
            value,
            display_value,
            shape: FieldShape::Pair,
        }))
    }
}

/// The text of a scalar inside a field object; `Err` names a non-scalar.
struct Scalar<'a>(Result<Option<Cow<'a, str>>, &'static str>);

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON scalar")
    }
    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Self::Value, E> {
        Ok(Scalar(Ok(Some(bool_text(flag)))))
    }
    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Self::Value, E> {
        Ok(Scalar(Ok(number_cow(Number::from(number)))))
    }
    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Self::Value, E> {
        Ok(Scalar(Ok(number_cow(Number::from(number)))))
    }
    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Self::Value, E> {
        Ok(Scalar(Ok(float_cow(number))))
    }
    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar(
            Ok((!text.is_empty()).then_some(Cow::Borrowed(text))),
        ))
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Scalar(Ok(
            (!text.is_empty()).then(|| Cow::Owned(text.to_owned()))
        )))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar(Ok(None)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(Scalar(Err(A_JSON_ARRAY)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_map(map)?;
        Ok(Scalar(Err(A_JSON_OBJECT)))
    }
}

fn bool_text(flag: bool) -> Cow<'static, str> {
    Cow::Borrowed(if flag { "true" } else { "false" })
}

fn number_cow(number: Number) -> Option<Cow<'static, str>> {
    Some(Cow::Owned(number_text(&number)))
}

/// A float as a parsed `Value` holds it: a number, or null where it is not finite (which
/// serde_json's parser never yields; kept for exactness).
fn float_cow(number: f64) -> Option<Cow<'static, str>> {
    Number::from_f64(number).and_then(number_cow)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// The reference reading: a `Value` tree, the kept keys only, `read_field` on each.
    fn reference(
        json: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, ReadField<'static>)>, String> {
        let value: Value = serde_json::from_str(json).map_err(|error| error.to_string())?;
        let Value::Object(mut map) = value else {
            return Err("not an object".into());
        };
        map.retain(|key, _| keep(key));
        Ok(owned(&RecordFields::from_map(&map)))
    }

    /// [`RecordFields::parse`], checked to agree with its serde_json-only path.
    fn fast(
        json: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, ReadField<'static>)>, String> {
        let serde_only = read_result(RecordFields::parse_with_serde_json(json, &keep));
        let quick = read_result(RecordFields::parse(json, &keep));
        assert_eq!(quick, serde_only, "{json}");
        quick
    }

    fn read_result(
        parsed: Result<RecordFields<'_>, RecordParseError>,
    ) -> Result<Vec<(String, ReadField<'static>)>, String> {
        match parsed {
            Ok(fields) => Ok(owned(&fields)),
            Err(RecordParseError::Json(error)) => Err(error.to_string()),
            Err(RecordParseError::NotObject { .. }) => Err("not an object".into()),
        }
    }

    fn owned(fields: &RecordFields<'_>) -> Vec<(String, ReadField<'static>)> {
        fields
            .names()
            .map(|name| {
                let field = fields.read(name).map(|text| FieldText {
                    value: text.value.map(|v| Cow::Owned(v.into_owned())),
                    display_value: text.display_value.map(|v| Cow::Owned(v.into_owned())),
                    shape: text.shape,
                });
                (name.to_owned(), field)
            })
            .collect()
    }

    #[test]
    fn fields_of_every_shape_read_as_read_field_reads_them() {
        let json = json!({
            "state": {"display_value": "In Progress", "value": "2"},
            "assigned_to": {"display_value": "Fred", "link": "https://x/u1", "value": "u1"},
            "plain": "abc", "empty": "", "null": null, "flag": true, "count": 10,
            "float": 3.0, "half": 0.5, "big": 18446744073709551615u64, "neg": -7,
            "list": ["a", {"b": 1}], "link_only": {"link": "x"},
            "nested": {"value": {"deep": "x"}}, "nested_label": {"value": "x", "display_value": [1]},
            "null_pair": {"value": null, "display_value": ""},
            "escaped": {"value": "a\"b\\n", "display_value": "caf\u{e9} \u{1F600}\n"},
            "u_custom": {"value": "1", "display_value": "One", "display_value_internal": "x"},
        })
        .to_string();
        // Escapes and whitespace as other writers put them.
        let spaced = " {\n\t\"a\" : { \"value\" : \"caf\\u00E9 \\ud83d\\ude00 \\/\\b\\f\\r\" ,\r\n \"display_value\":null } ,\"b\":[ ] , \"c\" : { } } ";
        assert_eq!(fast(spaced, |_| true), reference(spaced, |_| true));
        assert_eq!(
            RecordFields::parse(spaced, |_| true)
                .unwrap()
                .read("a")
                .unwrap()
                .value
                .as_deref(),
            Some("caf\u{e9} \u{1F600} /\u{8}\u{c}\r")
        );
        assert_eq!(fast(&json, |_| true), reference(&json, |_| true));
        let keep = |key: &str| !key.starts_with('n');
        assert_eq!(fast(&json, keep), reference(&json, keep));
    }

    #[test]
    fn a_repeated_key_reads_as_its_last_occurrence() {
        let json = r#"{"a": "1", "b": "x", "a": {"value": "2"}}"#;
        let fields = RecordFields::parse(json, |_| true).unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields.read("a").unwrap().value.as_deref(), Some("2"));
        assert_eq!(fast(json, |_| true), reference(json, |_| true));
    }

    #[test]
    fn json_that_is_no_object_or_no_json_fails_as_the_value_parser_does() {
        for json in [
            "[1]",
            "\"text\"",
            "null",
            "1.5",
            "true",
            "{\"a\": }",
            "{\"a\": 1,}",
            "{\"a\": 1} x",
            "{\"a\": \"\\ud800\"}",
            "",
        ] {
            assert_eq!(fast(json, |_| true), reference(json, |_| true), "{json}");
        }
        assert!(matches!(
            RecordFields::parse("[1, 2]", |_| true),
            Err(RecordParseError::NotObject { found: "array" })
        ));
    }

    #[test]
    fn values_of_skipped_keys_are_held_to_the_same_nesting_limit() {
        let deep = format!("{{\"skipped\": {}{}}}", "[".repeat(200), "]".repeat(200));
        let skip = |key: &str| key != "skipped";
        assert!(reference(&deep, skip).is_err());
        assert_eq!(fast(&deep, skip), reference(&deep, skip));
    }

    fn scalar() -> BoxedStrategy<Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e20f64..1e20).prop_map(Value::from),
            Just(Value::from(2.0)),
            "[a-z0-9 ]{0,6}".prop_map(Value::String),
            "\\PC{0,8}".prop_map(Value::String),
            Just(Value::String(String::new())),
        ]
        .boxed()
    }

    fn field() -> impl Strategy<Value = Value> {
        let nested = scalar().prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,6}", inner, 0..3)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        });
        prop_oneof![
            3 => (scalar(), scalar(), prop::option::of("[a-z:/]{0,8}")).prop_map(|(v, d, link)| {
                let mut object = Map::new();
                object.insert("display_value".into(), d);
                if let Some(link) = link {
                    object.insert("link".into(), Value::String(link));
                }
                object.insert("value".into(), v);
                Value::Object(object)
            }),
            1 => (prop::option::of(nested.clone()), prop::option::of(nested.clone()))
                .prop_map(|(v, d)| {
                    let mut object = Map::new();
                    if let Some(v) = v { object.insert("value".into(), v); }
                    if let Some(d) = d { object.insert("display_value".into(), d); }
                    Value::Object(object)
                }),
            1 => nested,
        ]
    }

    proptest! {
        #[test]
        fn generated_records_read_as_through_a_value_tree(
            fields in prop::collection::vec(("[a-z_.]{1,10}|u_[a-z]{1,4}|sys_id", field()), 0..12),
            drop in "[a-z]",
            cut in 0usize..400,
            mutation in (0usize..400, prop::sample::select(vec![
                "\"", "\\", "{", "}", "[", "]", ",", ":", " ", "\n", "\\u00e9", "\\ud83d\\ude00",
                "\\ud800", "\\x", "1", "null", "\u{1}", "é",
            ])),
        ) {
            let mut json = String::from("{");
            for (index, (name, value)) in fields.iter().enumerate() {
                if index > 0 { json.push(','); }
                json.push_str(&Value::String(name.clone()).to_string());
                json.push(':');
                json.push_str(&value.to_string());
            }
            json.push('}');
            let keep = |key: &str| !key.contains(drop.as_str());
            prop_assert_eq!(fast(&json, keep), reference(&json, keep));
            // Cut short anywhere (on a char boundary): the same parser error.
            let mut end = cut.min(json.len());
            while !json.is_char_boundary(end) { end -= 1; }
            let truncated = &json[..end];
            prop_assert_eq!(fast(truncated, keep), reference(truncated, keep));
            // Something JSON-significant put anywhere: still the same reading or error.
            let (at, insert) = mutation;
            let mut at = at.min(json.len());
            while !json.is_char_boundary(at) { at -= 1; }
            let mutated = format!("{}{insert}{}", &json[..at], &json[at..]);
            prop_assert_eq!(fast(&mutated, keep), reference(&mutated, keep));
        }
    }
}
