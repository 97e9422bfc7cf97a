//! Reading and writing docker's JSON config files (config.json, daemon.json) the way docker
//! does: key order preserved, tab indentation, a final newline.
//!
//! A key given twice in one object is read as Go's encoding/json (and so docker) reads it:
//! two objects are merged, anything else is the last value. Nothing the user wrote is dropped
//! silently; [`parse`] reports which keys were merged.
//!
//! Every number is written back exactly as it was read (`-0`, `15E2`, `1.0`, `1e400`,
//! `18446744073709551616`): other programs read these files with their own number rules, and
//! dockerd refuses `-0.0` where it accepted `-0`. The editing code sees a [`Document`], a
//! serde_json map (numbers as the nearest `f64`/`u64`/`i64`) that also remembers each number's
//! text by its place in the tree; [`render`] writes that text wherever the number is still
//! there, unchanged. serde_json's `arbitrary_precision` would keep the text too, but it is a
//! crate-wide switch (every `Value` in the program, yup-oauth2's own parsing) and it still
//! rewrites `15E2` as `15e+2`.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

use anyhow::{Result, anyhow, bail};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use crate::util::text;

/// A parsed config file: its top-level object and the keys that appeared twice.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) root: Document,
    pub(crate) merged_keys: Vec<String>,
}

/// A config file's top-level object (use it as a [`Map`]), with the text of every number as
/// the file wrote it.
#[derive(Debug, Default)]
pub(crate) struct Document {
    map: Map<String, Value>,
    numbers: HashMap<Vec<Step>, Literal>,
}

/// One step from the top-level object to a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Step {
    Key(String),
    Index(usize),
}

/// A number as written, and the value the editing code sees for it.
#[derive(Debug)]
struct Literal {
    seen_as: Number,
    text: String,
}

impl Deref for Document {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Map<String, Value> {
        &self.map
    }
}

impl DerefMut for Document {
    fn deref_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.map
    }
}

impl Document {
    /// The map alone, for reading (the numbers' texts matter only to [`render`]).
    pub(crate) fn into_map(self) -> Map<String, Value> {
        self.map
    }
}

impl From<Document> for Value {
    fn from(doc: Document) -> Value {
        Value::Object(doc.map)
    }
}

/// Parses a config file's bytes (empty or blank is an empty object). `what` names the file in
/// errors, which give the line and column of malformed JSON.
pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Parsed> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Parsed {
            root: Document::default(),
            merged_keys: Vec::new(),
        });
    }
    // The whole file is checked first (syntax, UTF-8, trailing data); numbers are taken as
    // text, so one beyond f64's range is read too.
    let raw: &RawValue = serde_json::from_slice(bytes).map_err(|e| malformed(what, &e, None))?;
    if !raw.get().starts_with('{') {
        bail!("{what} does not hold a JSON object; not touching it");
    }
    let mut reader = Reader {
        input: bytes,
        path: Vec::new(),
        numbers: HashMap::new(),
        merged_keys: Vec::new(),
    };
    let value = reader
        .value(raw)
        .map_err(|(e, at)| malformed(what, &e, Some(position(bytes, at))))?;
    let Value::Object(map) = value else {
        bail!("{what} does not hold a JSON object; not touching it");
    };
    Ok(Parsed {
        root: Document {
            map,
            numbers: reader.numbers,
        },
        merged_keys: reader.merged_keys,
    })
}

fn malformed(what: &str, e: &serde_json::Error, start: Option<(usize, usize)>) -> anyhow::Error {
    let described = text::json_error(e);
    // An error inside one value is counted from where that value starts (`start`).
    let described = match start {
        None => described,
        Some((line, column)) => {
            let (line, column) = if e.line() == 1 {
                (line, column + e.column() - 1)
            } else {
                (line + e.line() - 1, e.column())
            };
            described.replace(
                &format!("at line {} column {}", e.line(), e.column()),
                &format!("at line {line} column {column}"),
            )
        }
    };
    anyhow!("{what} is not valid JSON ({described}); fix or move it, it was not changed")
}

/// Line and column (from 1, in bytes) of byte `offset` in `input`.
fn position(input: &[u8], offset: usize) -> (usize, usize) {
    let before = &input[..offset.min(input.len())];
    let line = 1 + before.iter().filter(|b| **b == b'\n').count();
    let column = 1 + before.iter().rev().take_while(|b| **b != b'\n').count();
    (line, column)
}

/// Builds the tree from the checked text, one level at a time: each object or array is read
/// as raw members, so a number reaches us as its text.
struct Reader<'a> {
    input: &'a [u8],
    path: Vec<Step>,
    numbers: HashMap<Vec<Step>, Literal>,
    merged_keys: Vec<String>,
}

type Failure = (serde_json::Error, usize);

impl Reader<'_> {
    fn value(&mut self, raw: &RawValue) -> Result<Value, Failure> {
        let text = raw.get();
        // `raw` borrows from the input: its offset there places an error.
        let at = (text.as_ptr() as usize).saturating_sub(self.input.as_ptr() as usize);
        let fail = |e| (e, at);
        match text.as_bytes().first() {
            Some(b'{') => {
                let Members(members) = serde_json::from_str(text).map_err(fail)?;
                self.object(members)
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text).map_err(fail)?;
                let mut values = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    self.path.push(Step::Index(i));
                    let value = self.value(item);
                    self.path.pop();
                    values.push(value?);
                }
                Ok(Value::Array(values))
            }
            Some(b'-' | b'0'..=b'9') => {
                let seen_as = nearest(text);
                self.numbers.insert(
                    self.path.clone(),
                    Literal {
                        seen_as: seen_as.clone(),
                        text: text.to_owned(),
                    },
                );
                Ok(Value::Number(seen_as))
            }
            _ => serde_json::from_str(text).map_err(fail),
        }
    }

    fn object(&mut self, members: Vec<(String, &RawValue)>) -> Result<Value, Failure> {
        let mut map = Map::new();
        for (key, raw) in members {
            self.path.push(Step::Key(key.clone()));
            let value = self.value(raw);
            self.path.pop();
            match (map.get_mut(&key), value?) {
                (Some(Value::Object(existing)), Value::Object(more)) => {
                    merge(existing, more);
                    self.merged_keys.push(key);
                }
                (Some(slot), value) => {
                    *slot = value;
                    self.merged_keys.push(key);
                }
                (None, value) => {
                    map.insert(key, value);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

/// The value the editing code sees for a number: serde_json's reading, or the largest finite
/// `f64` of its sign for one beyond that range (its text is what gets written back).
fn nearest(text: &str) -> Number {
    serde_json::from_str::<Number>(text).unwrap_or_else(|_| {
        let edge = if text.starts_with('-') {
            f64::MIN
        } else {
            f64::MAX
        };
        Number::from_f64(edge).unwrap_or_else(|| Number::from(0u8))
    })
}

/// An object's members in file order, repeats included, each value still raw.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Members<'a>, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = access.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

/// Go merges a repeated object into the same map: existing keys stay, repeated ones are
/// overwritten by the later value (objects merge again, recursively).
fn merge(into: &mut Map<String, Value>, more: Map<String, Value>) {
    for (k, v) in more {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (Some(slot), v) => *slot = v,
            (None, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// `doc` as the docker CLI writes JSON: tab indentation and a final newline; every number the
/// editing left in its place is written as the file had it.
pub(crate) fn render(doc: &Document) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    let top = Written {
        path: Vec::new(),
        numbers: &doc.numbers,
    };
    top.object(&doc.map, &mut ser)?;
    out.push(b'\n');
    Ok(out)
}

/// Where a value being written sits, and the numbers' texts to write.
struct Written<'a> {
    path: Vec<Step>,
    numbers: &'a HashMap<Vec<Step>, Literal>,
}

/// A value at its place, serialized with its numbers' texts.
struct Placed<'a> {
    value: &'a Value,
    at: Written<'a>,
}

impl Written<'_> {
    fn child(&self, step: Step) -> Written<'_> {
        let mut path = self.path.clone();
        path.push(step);
        Written {
            path,
            numbers: self.numbers,
        }
    }

    fn object<S: Serializer>(&self, map: &Map<String, Value>, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(Some(map.len()))?;
        for (key, value) in map {
            let at = self.child(Step::Key(key.clone()));
            out.serialize_entry(key, &Placed { value, at })?;
        }
        out.end()
    }
}

impl Serialize for Placed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Object(map) => self.at.object(map, s),
            Value::Array(items) => {
                let mut out = s.serialize_seq(Some(items.len()))?;
                for (i, value) in items.iter().enumerate() {
                    let at = self.at.child(Step::Index(i));
                    out.serialize_element(&Placed { value, at })?;
                }
                out.end()
            }
            Value::Number(n) => match self.at.numbers.get(&self.at.path) {
                Some(literal) if literal.seen_as == *n => {
                    RawValue::from_string(literal.text.clone())
                        .map_err(serde::ser::Error::custom)?
                        .serialize(s)
                }
                _ => n.serialize(s),
            },
            other => other.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_uses_tabs_and_keeps_key_order() {
        let p = parse(br#"{"z":1,"a":{"y":true,"b":null},"m":[1,"x"]}"#, "c.json").unwrap();
        let text = String::from_utf8(render(&p.root).unwrap()).unwrap();
        assert_eq!(
            text,
            "{\n\t\"z\": 1,\n\t\"a\": {\n\t\t\"y\": true,\n\t\t\"b\": null\n\t},\n\t\"m\": [\n\t\t1,\n\t\t\"x\"\n\t]\n}\n"
        );
    }

    #[test]
    fn numbers_survive_a_rewrite() {
        // Found by the config_edit fuzz target: without serde_json's float_roundtrip, a large
        // number could come back as a different f64 after render and re-parse.
        let text = r#"{"n": [0, 2333333333333333333333333333333333333333333330000000000000000000000000000, 0.1, 1e-300, 18446744073709551615, -9223372036854775808]}"#;
        let rendered = render(&parse(text.as_bytes(), "c").unwrap().root).unwrap();
        let before: Value = serde_json::from_str(text).unwrap();
        let after: Value = serde_json::from_slice(&rendered).unwrap();
        assert_eq!(before, after);
    }

    /// Number texts that serde_json alone would write differently (or refuse), and ordinary
    /// ones.
    const LITERALS: &[&str] = &[
        "-0",
        "-0.0",
        "0",
        "0.0",
        "-1",
        "5",
        "1.0",
        "1.00",
        "0.1",
        "15E2",
        "15e2",
        "1.5e+3",
        "1E-2",
        "2e0",
        "1e400",
        "-1e400",
        "1e-400",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "100000000000000000000000000000000000000000",
        "123456789012345678901234567890.123456789012345678901234567890e-3",
        "3.141592653589793238462643383279",
    ];

    fn round_trip(text: &str) -> String {
        String::from_utf8(render(&parse(text.as_bytes(), "c").unwrap().root).unwrap()).unwrap()
    }

    #[test]
    fn every_number_is_written_back_as_written() {
        for lit in LITERALS {
            let text = format!(
                r#"{{"n": {lit}, "a": [{lit}, "x", {lit}], "o": {{"p": {{"q": {lit}}}}}}}"#
            );
            let out = round_trip(&text);
            let expected = format!(
                "{{\n\t\"n\": {lit},\n\t\"a\": [\n\t\t{lit},\n\t\t\"x\",\n\t\t{lit}\n\t],\n\t\"o\": {{\n\t\t\"p\": {{\n\t\t\t\"q\": {lit}\n\t\t}}\n\t}}\n}}\n"
            );
            assert_eq!(out, expected, "{lit}");
        }
    }

    #[test]
    fn numbers_keep_their_text_through_an_edit_around_them() {
        let text = r#"{"shutdown-timeout": -0, "registry-mirrors": ["https://a"], "max-concurrent-downloads": 3E0, "x": {"y": 1.10}}"#;
        let mut doc = parse(text.as_bytes(), "c").unwrap().root;
        doc.shift_remove("registry-mirrors");
        doc.insert("debug".to_owned(), Value::Bool(true));
        doc["x"]
            .as_object_mut()
            .unwrap()
            .insert("z".to_owned(), serde_json::json!(2.50));
        let out = String::from_utf8(render(&doc).unwrap()).unwrap();
        assert_eq!(
            out,
            "{\n\t\"shutdown-timeout\": -0,\n\t\"max-concurrent-downloads\": 3E0,\n\t\"x\": {\n\t\t\"y\": 1.10,\n\t\t\"z\": 2.5\n\t},\n\t\"debug\": true\n}\n"
        );
    }

    #[test]
    fn a_number_the_edit_changed_is_written_anew() {
        let mut doc = parse(br#"{"n": 1.50, "a": [7E0, 8E0]}"#, "c").unwrap().root;
        doc["n"] = serde_json::json!(2);
        doc["a"].as_array_mut().unwrap().remove(0);
        let out = String::from_utf8(render(&doc).unwrap()).unwrap();
        // 8E0 moved to index 0, where 7E0 was: a different value, so written as serde_json does.
        assert_eq!(out, "{\n\t\"n\": 2,\n\t\"a\": [\n\t\t8.0\n\t]\n}\n");
    }

    #[test]
    fn a_repeated_key_keeps_the_text_of_the_value_read_last() {
        let out = round_trip(r#"{"n": 1.0, "o": {"a": 1E1}, "n": 1.000, "o": {"b": 2E1}}"#);
        assert_eq!(
            out,
            "{\n\t\"n\": 1.000,\n\t\"o\": {\n\t\t\"a\": 1E1,\n\t\t\"b\": 2E1\n\t}\n}\n"
        );
    }

    #[test]
    fn an_error_inside_a_value_is_placed_in_the_file() {
        // A lone surrogate passes the syntax check and fails when the string is decoded.
        let e = parse(b"{\n  \"a\": [1,\n    \"x\\ud800\"]}", "c.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("syntax error at line 3 column 13"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn any_json_number_survives_a_rewrite(
            lit in "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,40})?([eE][+-]?[0-9]{1,5})?"
        ) {
            let out = round_trip(&format!("{{\"n\": {lit}}}"));
            proptest::prop_assert_eq!(out, format!("{{\n\t\"n\": {lit}\n}}\n"));
        }
    }

    #[test]
    fn malformed_files_are_errors_with_a_position() {
        let e = parse(b"{\n  \"auths\": {,\n}", "c.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("syntax error at line 2 column 13"), "{e}");
        assert!(parse(b"[1]", "c.json").is_err());
        assert!(parse(b" \n", "c.json").unwrap().root.is_empty());
    }

    #[test]
    fn repeated_objects_merge_as_docker_reads_them() {
        let p = parse(
            br#"{"credHelpers": {"gcr.io": "gcloud", "quay.io": "quay"}, "x": 1, "credHelpers": {"us.gcr.io": "gcp", "gcr.io": "gcp"}, "x": 2}"#,
            "c",
        )
        .unwrap();
        assert_eq!(
            Value::from(p.root),
            serde_json::json!({"credHelpers": {"gcr.io": "gcp", "quay.io": "quay", "us.gcr.io": "gcp"}, "x": 2})
        );
        assert_eq!(p.merged_keys, ["credHelpers", "x"]);
        let nested = parse(br#"{"a": {"b": {"c": 1}, "b": {"d": 2}}}"#, "c").unwrap();
        assert_eq!(
            Value::from(nested.root),
            serde_json::json!({"a": {"b": {"c": 1, "d": 2}}})
        );
        assert_eq!(nested.merged_keys, ["b"]);
    }
}
