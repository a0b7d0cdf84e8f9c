//! The quick path of [`RecordFields::parse`]: a scanner for the JSON the Table API writes.
//!
//! It handles what records are made of — objects, arrays, strings (with any escape),
//! `null`, `true`, `false` — and gives up (`None`) on everything else: a number, a
//! control character or an unpaired surrogate in a string, a bad escape, nesting deeper
//! than 100, trailing text, anything malformed. [`RecordFields::parse`] then parses the
//! text with serde_json, which reads numbers as a `Value` does and words the errors. So
//! when the scanner answers, its answer is the one serde_json gives (the tests compare the
//! two on generated records); it only answers faster, by not going through serde's visitor
//! machinery for every token and by finding the end of a string eight bytes at a time.

use std::borrow::Cow;

use super::field::{
    A_JSON_ARRAY, A_JSON_OBJECT, DISPLAY_VALUE_NOT_SCALAR, FieldShape, FieldShapeError, FieldText,
    NEITHER_VALUE_NOR_DISPLAY, VALUE_NOT_SCALAR,
};
use super::record::RecordFields;

/// Deeper than this, the scanner leaves the text to serde_json (whose limit is 128).
const MAX_DEPTH: usize = 100;

/// `Some(fields)` exactly when serde_json would parse `json` into an object and
/// [`RecordFields::parse`] would read these fields from it; `None`: ask serde_json.
pub(super) fn scan_record<'a>(
    json: &'a str,
    keep: &impl Fn(&str) -> bool,
) -> Option<RecordFields<'a>> {
    let mut scanner = Scanner {
        text: json,
        bytes: json.as_bytes(),
        at: 0,
    };
    let mut record = RecordFields::with_capacity(64);
    scanner.skip_whitespace();
    scanner.expect(b'{')?;
    scanner.skip_whitespace();
    if scanner.peek()? == b'}' {
        scanner.at += 1;
    } else {
        loop {
            scanner.skip_whitespace();
            scanner.expect(b'"')?;
            let name = scanner.string()?;
            scanner.skip_whitespace();
            scanner.expect(b':')?;
            scanner.skip_whitespace();
            if keep(&name) {
                let field = scanner.field()?;
                record.insert(name, field);
            } else {
                scanner.skip_value(1)?;
            }
            scanner.skip_whitespace();
            match scanner.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    scanner.skip_whitespace();
    (scanner.at == scanner.bytes.len()).then_some(record)
}

/// Which key of a field object was read.
#[derive(Clone, Copy)]
enum PairKey {
    Value,
    DisplayValue,
    Other,
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        let end = self.at.checked_add(rest.len())?;
        (self.bytes.get(self.at..end)? == rest).then(|| self.at = end)
    }

    /// The string whose opening quote was just read.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.at;
        self.at = find_special(self.bytes, self.at)?;
        if self.bytes[self.at] == b'"' {
            // Both ends are ASCII quotes, so the slice is on char boundaries.
            let text = self.text.get(start..self.at)?;
            self.at += 1;
            return Some(Cow::Borrowed(text));
        }
        let mut owned = String::from(self.text.get(start..self.at)?);
        loop {
            match self.next()? {
                b'"' => return Some(Cow::Owned(owned)),
                b'\\' => self.escape(&mut owned)?,
                // A control character: serde_json refuses it.
                _ => return None,
            }
            let run = self.at;
            self.at = find_special(self.bytes, self.at)?;
            owned.push_str(self.text.get(run..self.at)?);
        }
    }

    /// One escape sequence after its backslash, appended to `out`.
    fn escape(&mut self, out: &mut String) -> Option<()> {
        let unescaped = match self.next()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                match first {
                    0xD800..=0xDBFF => {
                        self.literal(b"\\u")?;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return None;
                        }
                        let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        char::from_u32(code)?
                    }
                    0xDC00..=0xDFFF => return None,
                    code => char::from_u32(code)?,
                }
            }
            _ => return None,
        };
        out.push(unescaped);
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let end = self.at.checked_add(4)?;
        let digits = self.bytes.get(self.at..end)?;
        self.at = end;
        digits.iter().try_fold(0u32, |code, &digit| {
            Some(code * 16 + char::from(digit).to_digit(16)?)
        })
    }

    /// A top-level field's value, read as `read_field_value` reads it.
    fn field(&mut self) -> Option<Result<FieldText<'a>, FieldShapeError>> {
        let plain = |value| {
            Some(Ok(FieldText {
                value,
                display_value: None,
                shape: FieldShape::Plain,
            }))
        };
        match self.peek()? {
            b'{' => {
                self.at += 1;
                self.pair()
            }
            b'[' => {
                self.skip_value(1)?;
                Some(Err(FieldShapeError {
                    found: A_JSON_ARRAY,
                }))
            }
            _ => plain(self.scalar()?),
        }
    }

    /// A scalar: its text, `None` inside for null and `""`. Numbers are left to serde_json.
    fn scalar(&mut self) -> Option<Option<Cow<'a, str>>> {
        match self.next()? {
            b'"' => {
                let text = self.string()?;
                Some((!text.is_empty()).then_some(text))
            }
            b'n' => self.literal(b"ull").map(|()| None),
            b't' => self.literal(b"rue").map(|()| Some(Cow::Borrowed("true"))),
            b'f' => self.literal(b"alse").map(|()| Some(Cow::Borrowed("false"))),
            _ => None,
        }
    }

    /// A field object after its `{`: `{"value", "display_value", ...}`.
    fn pair(&mut self) -> Option<Result<FieldText<'a>, FieldShapeError>> {
        // `None`: the key is absent; `Some(Err)`: present but not a scalar.
        let mut value: Option<Result<Option<Cow<'a, str>>, &'static str>> = None;
        let mut display_value = None;
        self.skip_whitespace();
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                self.skip_whitespace();
                self.expect(b'"')?;
                let key = self.pair_key()?;
                self.skip_whitespace();
                self.expect(b':')?;
                self.skip_whitespace();
                match key {
                    PairKey::Value => value = Some(self.inner_scalar()?),
                    PairKey::DisplayValue => display_value = Some(self.inner_scalar()?),
                    PairKey::Other => self.skip_value(2)?,
                }
                self.skip_whitespace();
                match self.next()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        let shape_error = |found| Some(Err(FieldShapeError { found }));
        if value.is_none() && display_value.is_none() {
            return shape_error(NEITHER_VALUE_NOR_DISPLAY);
        }
        let value = match value {
            None => None,
            Some(Ok(text)) => text,
            Some(Err(_)) => return shape_error(VALUE_NOT_SCALAR),
        };
        let display_value = match display_value {
            None => None,
            Some(Ok(text)) => text,
            Some(Err(_)) => return shape_error(DISPLAY_VALUE_NOT_SCALAR),
        };
        Some(Ok(FieldText {
            value,
            display_value,
            shape: FieldShape::Pair,
        }))
    }

    /// A key inside a field object, after its opening quote. Nearly every one is `value`,
    /// `display_value` or `link`, recognised without searching for the string's end.
    fn pair_key(&mut self) -> Option<PairKey> {
        let rest = self.bytes.get(self.at..)?;
        for (text, key) in [
            (&b"value\""[..], PairKey::Value),
            (&b"display_value\""[..], PairKey::DisplayValue),
            (&b"link\""[..], PairKey::Other),
        ] {
            if rest.starts_with(text) {
                self.at += text.len();
                return Some(key);
            }
        }
        Some(match self.string()?.as_ref() {
            "value" => PairKey::Value,
            "display_value" => PairKey::DisplayValue,
            _ => PairKey::Other,
        })
    }

    /// `value` or `display_value` inside a field object: a scalar, or which non-scalar.
    fn inner_scalar(&mut self) -> Option<Result<Option<Cow<'a, str>>, &'static str>> {
        match self.peek()? {
            b'[' => self.skip_value(3).map(|()| Err(A_JSON_ARRAY)),
            b'{' => self.skip_value(3).map(|()| Err(A_JSON_OBJECT)),
            _ => self.scalar().map(Ok),
        }
    }

    /// Checks and passes over one value at nesting `depth`.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            open @ (b'[' | b'{') => {
                self.at += 1;
                let close = if open == b'[' { b']' } else { b'}' };
                self.skip_whitespace();
                if self.peek()? == close {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.skip_whitespace();
                    if open == b'{' {
                        self.expect(b'"')?;
                        self.string()?;
                        self.skip_whitespace();
                        self.expect(b':')?;
                        self.skip_whitespace();
                    }
                    self.skip_value(depth + 1)?;
                    self.skip_whitespace();
                    match self.next()? {
                        b',' => continue,
                        byte if byte == close => return Some(()),
                        _ => return None,
                    }
                }
            }
            _ => self.scalar().map(drop),
        }
    }
}

/// Position of the first `"`, `\` or control character at or after `from`, eight bytes at
/// a time while eight remain.
fn find_special(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        // Bytes below 0x20 (borrowing), equal to '"', equal to '\'. Only the lowest flagged
        // byte is exact, which is the one wanted.
        let special = (word.wrapping_sub(ONES * 0x20) & !word & HIGH)
            | zero_byte(word ^ (ONES * u64::from(b'"')))
            | zero_byte(word ^ (ONES * u64::from(b'\\')));
        if special != 0 {
            return Some(at + special.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    bytes
        .get(at..)?
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
        .map(|offset| at + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_value_all_record_is_read_by_the_scanner_itself() {
        let json = serde_json::json!({
            "sys_id": {"display_value": "5302c7465a884170652eaff0c0295d49", "value": "5302c7465a884170652eaff0c0295d49"},
            "comments": {"display_value": "2024-08-21 12:40:00 - Mira Popescu (Additional comments)\nStill failing", "value": ""},
            "assigned_to": {"display_value": "Tara Popescu", "link": "https://acme.service-now.com/api/now/table/sys_user/0939", "value": "0939"},
            "short_description": {"display_value": "Zürich ✓ \"quoted\"", "value": "Zürich ✓ \"quoted\""},
            "u_root_cause": {"display_value": "Database lock contention", "value": "Database lock contention"},
            "watch_list": ["a", {"b": null}],
            "active": {"display_value": "false", "value": false},
        })
        .to_string();
        let keep = |key: &str| key != "u_root_cause";
        let scanned = scan_record(&json, &keep).expect("the scanner reads Table API records");
        let parsed = RecordFields::parse_with_serde_json(&json, keep).unwrap();
        assert_eq!(scanned, parsed);
        assert_eq!(scanned.len(), 6);
        // Numbers are left to serde_json.
        assert!(scan_record(r#"{"a": {"value": 1}}"#, &keep).is_none());
    }

    #[test]
    fn the_first_special_byte_is_found_wherever_it_is() {
        let text = "abcdefghijklmnopqrstuvwxyz0123456789";
        for special in ["\"", "\\", "\n", "\u{1}"] {
            for at in 0..text.len() {
                let mut bytes = text.as_bytes().to_vec();
                bytes.insert(at, special.as_bytes()[0]);
                assert_eq!(find_special(&bytes, 0), Some(at), "{special:?} at {at}");
            }
        }
        // UTF-8 continuation bytes (0x80 and up) are never special.
        assert_eq!(find_special("日本語 ✓ café".as_bytes(), 0), None);
    }
}
