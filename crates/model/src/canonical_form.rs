//! Parsing Canonical Form of an Avro schema, from which the fingerprint is computed.
//!
//! Written here rather than taken from `apache_avro::Schema::canonical_form` because
//! apache-avro 0.21 keeps a logical type's wrapper object (`{"type":"long"}` for a
//! timestamp-millis field) where the Java and Python implementations write the bare
//! primitive (`"long"`). Fingerprints would then differ for every schema with a
//! timestamp, and Java/Python consumers could not match our single-object headers. This
//! module follows the spec as the Java reference implementation does, working on the
//! schema's JSON so nothing a parsed `Schema` drops (e.g. a uuid's underlying type) is lost.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// A schema JSON that has no Parsing Canonical Form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalFormError {
    /// Not JSON.
    #[error("schema is not JSON: {reason}")]
    NotJson {
        /// The parser's complaint.
        reason: String,
    },
    /// A JSON shape that is no schema.
    #[error("not a schema at {path}: {reason}")]
    Invalid {
        /// Where in the schema, as a chain of names.
        path: String,
        /// What was wrong.
        reason: &'static str,
    },
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of the schema in `schema_json`.
pub fn canonical_form(schema_json: &str) -> Result<String, CanonicalFormError> {
    let json: Value =
        serde_json::from_str(schema_json).map_err(|error| CanonicalFormError::NotJson {
            reason: error.to_string(),
        })?;
    let mut writer = Writer {
        defined: HashSet::new(),
        out: String::with_capacity(schema_json.len() / 2),
    };
    writer.schema(&json, "", "$")?;
    Ok(writer.out)
}

struct Writer {
    /// Named types already written in full; later uses are written as their full name.
    defined: HashSet<String>,
    out: String,
}

impl Writer {
    fn schema(&mut self, json: &Value, namespace: &str, path: &str) -> Result<(), Invalid> {
        match json {
            Value::String(name) => {
                let name = if PRIMITIVES.contains(&name.as_str()) {
                    name.clone()
                } else {
                    full_name(name, namespace)
                };
                self.string(&name);
                Ok(())
            }
            Value::Array(branches) => {
                self.out.push('[');
                for (index, branch) in branches.iter().enumerate() {
                    if index > 0 {
                        self.out.push(',');
                    }
                    self.schema(branch, namespace, &format!("{path}[{index}]"))?;
                }
                self.out.push(']');
                Ok(())
            }
            Value::Object(object) => self.object(object, namespace, path),
            _ => Err(invalid(
                path,
                "a schema must be a string, an array or an object",
            )),
        }
    }

    fn object(
        &mut self,
        object: &Map<String, Value>,
        namespace: &str,
        path: &str,
    ) -> Result<(), Invalid> {
        let Some(Value::String(kind)) = object.get("type") else {
            return Err(invalid(path, "\"type\" must be a string"));
        };
        match kind.as_str() {
            // [PRIMITIVES]: any other attribute, logicalType included, is stripped.
            primitive if PRIMITIVES.contains(&primitive) => {
                self.string(primitive);
                Ok(())
            }
            "record" | "error" | "enum" | "fixed" => self.named(object, kind, namespace, path),
            "array" => {
                let items = object
                    .get("items")
                    .ok_or_else(|| invalid(path, "array without \"items\""))?;
                self.out.push_str("{\"type\":\"array\",\"items\":");
                self.schema(items, namespace, &format!("{path}.items"))?;
                self.out.push('}');
                Ok(())
            }
            "map" => {
                let values = object
                    .get("values")
                    .ok_or_else(|| invalid(path, "map without \"values\""))?;
                self.out.push_str("{\"type\":\"map\",\"values\":");
                self.schema(values, namespace, &format!("{path}.values"))?;
                self.out.push('}');
                Ok(())
            }
            // {"type": "Name"} refers to a named type defined elsewhere.
            reference => {
                self.string(&full_name(reference, namespace));
                Ok(())
            }
        }
    }

    fn named(
        &mut self,
        object: &Map<String, Value>,
        kind: &str,
        enclosing_namespace: &str,
        path: &str,
    ) -> Result<(), Invalid> {
        let Some(Value::String(name)) = object.get("name") else {
            return Err(invalid(path, "named type without a string \"name\""));
        };
        let namespace = match object.get("namespace") {
            Some(Value::String(namespace)) => namespace.as_str(),
            Some(Value::Null) | None => enclosing_namespace,
            Some(_) => return Err(invalid(path, "\"namespace\" must be a string")),
        };
        let full = full_name(name, namespace);
        let path = format!("{path}<{full}>");
        // [FULLNAMES]: a name's own namespace is what it encloses.
        let own_namespace = full.rsplit_once('.').map_or("", |(space, _)| space);
        if !self.defined.insert(full.clone()) {
            self.string(&full);
            return Ok(());
        }
        // [ORDER]: name, type, then fields / symbols / size.
        self.out.push_str("{\"name\":");
        self.string(&full);
        self.out.push_str(",\"type\":");
        self.string(kind);
        match kind {
            "enum" => {
                let Some(Value::Array(symbols)) = object.get("symbols") else {
                    return Err(invalid(&path, "enum without \"symbols\""));
                };
                self.out.push_str(",\"symbols\":[");
                for (index, symbol) in symbols.iter().enumerate() {
                    let Value::String(symbol) = symbol else {
                        return Err(invalid(&path, "enum symbols must be strings"));
                    };
                    if index > 0 {
                        self.out.push(',');
                    }
                    self.string(symbol);
                }
                self.out.push(']');
            }
            "fixed" => {
                // [INTEGERS]: no quotes, no leading zeros.
                let size = match object.get("size") {
                    Some(Value::Number(size)) => size.as_u64(),
                    Some(Value::String(size)) => size.parse().ok(),
                    _ => None,
                }
                .ok_or_else(|| invalid(&path, "fixed without a whole-number \"size\""))?;
                self.out.push_str(&format!(",\"size\":{size}"));
            }
            _ => {
                let Some(Value::Array(fields)) = object.get("fields") else {
                    return Err(invalid(&path, "record without \"fields\""));
                };
                self.out.push_str(",\"fields\":[");
                for (index, field) in fields.iter().enumerate() {
                    let (Some(Value::String(field_name)), Some(field_type)) =
                        (field.get("name"), field.get("type"))
                    else {
                        return Err(invalid(
                            &path,
                            "a field needs a string \"name\" and a \"type\"",
                        ));
                    };
                    if index > 0 {
                        self.out.push(',');
                    }
                    self.out.push_str("{\"name\":");
                    self.string(field_name);
                    self.out.push_str(",\"type\":");
                    self.schema(field_type, own_namespace, &format!("{path}.{field_name}"))?;
                    self.out.push('}');
                }
                self.out.push(']');
            }
        }
        self.out.push('}');
        Ok(())
    }

    /// [STRINGS]: JSON string literal, UTF-8, no needless escapes.
    fn string(&mut self, text: &str) {
        self.out.push_str(&Value::from(text).to_string());
    }
}

type Invalid = CanonicalFormError;

fn invalid(path: &str, reason: &'static str) -> CanonicalFormError {
    CanonicalFormError::Invalid {
        path: path.to_owned(),
        reason,
    }
}

fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from the Avro project's `share/test/data/schema-tests.txt`, the vectors every
    /// implementation checks itself against.
    const SPEC_CASES: &[(&str, &str)] = &[
        (r#""null""#, r#""null""#),
        (r#"{"type":"null"}"#, r#""null""#),
        (r#"{"type":"boolean"}"#, r#""boolean""#),
        (r#"{"type":"int"}"#, r#""int""#),
        (r#"[  ]"#, r#"[]"#),
        (r#"[ "int" , {"type":"boolean"} ]"#, r#"["int","boolean"]"#),
        (
            r#"{"fields":[], "type":"record", "name":"foo"}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}"#,
            r#"{"name":"x.y.foo","type":"record","fields":[]}"#,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}"#,
            r#"{"name":"a.b.foo","type":"record","fields":[]}"#,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
        ),
        (
            r#"{"fields":[{"type":{"type":"boolean"}, "name":"f1"}], "type":"record", "name":"foo"}"#,
            r#"{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}"#,
        ),
        (
            r#"{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":"true"},
                {"order":"descending","name":"f2","doc":"Hello","type":"int"}],
                "type":"record", "name":"foo" }"#,
            r#"{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}"#,
        ),
        (
            r#"{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}"#,
            r#"{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}"#,
        ),
        (
            r#"{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}"#,
            r#"{"name":"x.y.z.foo","type":"fixed","size":32}"#,
        ),
        (
            r#"{ "items":{"type":"null"}, "type":"array"}"#,
            r#"{"type":"array","items":"null"}"#,
        ),
        (
            r#"{ "values":"string", "type":"map"}"#,
            r#"{"type":"map","values":"string"}"#,
        ),
        (
            r#"{"name":"PigValue","type":"record",
                "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}"#,
            r#"{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}"#,
        ),
    ];

    #[test]
    fn matches_the_avro_projects_canonical_form_vectors() {
        for (input, expected) in SPEC_CASES {
            assert_eq!(canonical_form(input).unwrap(), *expected, "input {input}");
        }
    }

    #[test]
    fn logical_types_reduce_to_their_bare_primitive_as_java_and_python_do() {
        let schema = r#"{"type":"record","name":"R","namespace":"n","fields":[
            {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"u","type":["null",{"type":"long","logicalType":"timestamp-millis"}]}]}"#;
        assert_eq!(
            canonical_form(schema).unwrap(),
            r#"{"name":"n.R","type":"record","fields":[{"name":"t","type":"long"},{"name":"u","type":["null","long"]}]}"#
        );
    }

    #[test]
    fn nested_names_inherit_the_namespace_and_repeat_as_full_names() {
        let schema = r#"{"type":"record","name":"Outer","namespace":"a.b","fields":[
            {"name":"x","type":{"type":"record","name":"Inner","fields":[]}},
            {"name":"y","type":"Inner"},
            {"name":"z","type":{"type":"map","values":"a.b.Inner"}}]}"#;
        assert_eq!(
            canonical_form(schema).unwrap(),
            r#"{"name":"a.b.Outer","type":"record","fields":[{"name":"x","type":{"name":"a.b.Inner","type":"record","fields":[]}},{"name":"y","type":"a.b.Inner"},{"name":"z","type":{"type":"map","values":"a.b.Inner"}}]}"#
        );
    }

    #[test]
    fn shapes_that_are_no_schema_are_named() {
        let error =
            canonical_form(r#"{"type":"record","name":"R","fields":[{"name":"f"}]}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "not a schema at $<R>: a field needs a string \"name\" and a \"type\""
        );
        assert!(matches!(
            canonical_form("{"),
            Err(CanonicalFormError::NotJson { .. })
        ));
        assert!(matches!(
            canonical_form("42"),
            Err(CanonicalFormError::Invalid { .. })
        ));
    }
}
