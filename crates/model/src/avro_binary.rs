//! Avro binary encoding written and read directly from the Rust types, without building
//! apache-avro's generic `Value` trees.
//!
//! The contract's records are flat and simple (strings, longs, ints, booleans,
//! timestamp-millis, `["null", T]` unions, one enum, arrays of strings and maps of small
//! records), so their binary form is a handful of rules from the Avro specification:
//!
//! - `int` and `long`: zig-zag, then a little-endian base-128 varint;
//! - `string`: its byte length as a `long`, then the UTF-8 bytes;
//! - `boolean`: one byte, 0 or 1; `enum`: the symbol's index as an `int`;
//! - union: the branch index as a `long`, then the branch's value (`null` has no bytes);
//! - array and map: blocks of `count` items (map items are a `string` key then the value),
//!   ended by a block of count 0; nowstream writes everything in one block, as apache-avro does;
//! - record: its fields one after the other, in the schema's order.
//!
//! Why not apache-avro for the hot path: building its `Value`, validating it against the
//! schema and resolving the schema's names again for every record cost about ten times the
//! encoding itself (docs/performance.md). apache-avro stays the reference: the schemas,
//! fingerprints, compatibility checks and decoding of released versions use it, and tests
//! compare every record type's bytes with what apache-avro writes for the same value
//! ([`AvroRecord::encode_with_apache_avro`](crate::AvroRecord::encode_with_apache_avro)).
//!
//! The field order comes from [`avro_record!`](crate::avro_value), which declares each
//! struct's fields in `.avsc` order once for both directions; those tests fail if a
//! struct and its schema drift apart.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// A value with a direct Avro binary form (see the [module docs](self)).
pub trait EncodeAvro {
    /// Appends the value's Avro binary encoding to `out`.
    fn encode_avro(&self, out: &mut Vec<u8>);
}

/// Appends a `long` (or an `int`: for values in its range the bytes are the same).
pub fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag > 0x7F {
        out.push((zigzag as u8 & 0x7F) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// Appends a length or count, as a `long`.
fn write_len(out: &mut Vec<u8>, len: usize) {
    // A Rust allocation never holds more than isize::MAX bytes or items.
    write_long(out, i64::try_from(len).unwrap_or(i64::MAX));
}

/// Appends a `string` (or `bytes`): length, then the bytes.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    write_len(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

impl EncodeAvro for String {
    fn encode_avro(&self, out: &mut Vec<u8>) {
        write_str(out, self);
    }
}

impl EncodeAvro for i64 {
    fn encode_avro(&self, out: &mut Vec<u8>) {
        write_long(out, *self);
    }
}

impl EncodeAvro for i32 {
    fn encode_avro(&self, out: &mut Vec<u8>) {
        write_long(out, i64::from(*self));
    }
}

impl EncodeAvro for bool {
    fn encode_avro(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

/// timestamp-millis: sub-millisecond parts are dropped, as in [`ToAvro`](crate::avro_value::ToAvro).
impl EncodeAvro for DateTime<Utc> {
    fn encode_avro(&self, out: &mut Vec<u8>) {
        write_long(out, self.timestamp_millis());
    }
}

/// `["null", T]`: branch 0 for `None`, branch 1 then the value for `Some`.
impl<T: EncodeAvro> EncodeAvro for Option<T> {
    fn encode_avro(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(inner) => {
                // Branch index 1 as a zig-zag long.
                out.push(2);
                inner.encode_avro(out);
            }
        }
    }
}

impl<T: EncodeAvro> EncodeAvro for Vec<T> {
    fn encode_avro(&self, out: &mut Vec<u8>) {
        if !self.is_empty() {
            write_len(out, self.len());
            for item in self {
                item.encode_avro(out);
            }
        }
        out.push(0);
    }
}

/// Entries in key order: any order decodes to the same map; apache-avro writes hash order.
impl<T: EncodeAvro> EncodeAvro for BTreeMap<String, T> {
    fn encode_avro(&self, out: &mut Vec<u8>) {
        if !self.is_empty() {
            write_len(out, self.len());
            for (key, value) in self {
                write_str(out, key);
                value.encode_avro(out);
            }
        }
        out.push(0);
    }
}

/// A cursor over an Avro binary body, for the records read on a hot path (the raw record).
///
/// Every method returns `None` on anything unexpected (the body ends early, a varint is too
/// long, a length is negative, a string is not UTF-8): the caller then decodes the message
/// again with apache-avro, whose error says what was wrong, so a fast read never has to
/// reproduce apache-avro's error messages.
#[derive(Debug)]
pub(crate) struct BodyReader<'a> {
    rest: &'a [u8],
}

impl<'a> BodyReader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Self { rest: body }
    }

    /// Whether every byte was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// A `long`: as apache-avro reads one, at most 10 varint bytes.
    pub(crate) fn long(&mut self) -> Option<i64> {
        let mut zigzag = 0u64;
        for (index, &byte) in self.rest.iter().enumerate().take(10) {
            zigzag |= u64::from(byte & 0x7F) << (index * 7);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[index + 1..];
                return Some(if zigzag & 1 == 0 {
                    (zigzag >> 1) as i64
                } else {
                    !(zigzag >> 1) as i64
                });
            }
        }
        None
    }

    /// An `int` (an enum index, say): a `long` that must fit 32 bits.
    pub(crate) fn int(&mut self) -> Option<i32> {
        i32::try_from(self.long()?).ok()
    }

    /// A `string`, borrowed from the body.
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.long()?).ok()?;
        if len > self.rest.len() {
            return None;
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        std::str::from_utf8(bytes).ok()
    }

    /// The branch of a `["null", T]` union: `Some(false)` for null, `Some(true)` for `T`.
    pub(crate) fn present(&mut self) -> Option<bool> {
        match self.long()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// A timestamp-millis.
    pub(crate) fn timestamp_millis(&mut self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.long()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_bytes(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_long(&mut out, value);
        out
    }

    #[test]
    fn longs_are_zig_zag_varints_as_the_avro_specification_lists_them() {
        assert_eq!(long_bytes(0), [0x00]);
        assert_eq!(long_bytes(-1), [0x01]);
        assert_eq!(long_bytes(1), [0x02]);
        assert_eq!(long_bytes(-64), [0x7F]);
        assert_eq!(long_bytes(64), [0x80, 0x01]);
        assert_eq!(long_bytes(i64::MAX).len(), 10);
        for value in [0, 1, -1, 63, -64, 64, 1 << 40, i64::MIN, i64::MAX] {
            assert_eq!(BodyReader::new(&long_bytes(value)).long(), Some(value));
        }
    }

    #[test]
    fn a_reader_refuses_what_it_cannot_read_instead_of_guessing() {
        assert_eq!(BodyReader::new(&[0x80]).long(), None);
        assert_eq!(BodyReader::new(&[0xFF; 11]).long(), None);
        // A 3-byte string with 2 bytes left; a negative length; bytes that are not UTF-8.
        assert_eq!(BodyReader::new(&[0x06, b'a', b'b']).str(), None);
        assert_eq!(BodyReader::new(&[0x01, b'a']).str(), None);
        assert_eq!(BodyReader::new(&[0x04, 0xC3, 0x28]).str(), None);
        assert_eq!(BodyReader::new(&[0x04]).present(), None);
        let mut reader = BodyReader::new(&[0x06, b'h', 0xC3, 0xA9, 0x02]);
        assert_eq!(reader.str(), Some("h\u{e9}"));
        assert_eq!(reader.present(), Some(true));
        assert!(reader.is_empty());
    }
}
