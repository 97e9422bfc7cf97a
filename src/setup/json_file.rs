//! Reading and writing docker's JSON config files (config.json, daemon.json) the way docker
//! does: key order preserved, tab indentation, a final newline.
//!
//! A key given twice in one object is read as Go's encoding/json (and so docker) reads it:
//! two objects are merged, anything else is the last value. Nothing the user wrote is dropped
//! silently; [`parse`] reports which keys were merged.

use std::fmt;

use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::util::text;

/// A parsed config file: its top-level object and the keys that appeared twice.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) root: Map<String, Value>,
    pub(crate) merged_keys: Vec<String>,
}

/// Parses a config file's bytes (empty or blank is an empty object). `what` names the file in
/// errors, which give the line and column of malformed JSON.
pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Parsed> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Parsed {
            root: Map::new(),
            merged_keys: Vec::new(),
        });
    }
    match serde_json::from_slice::<Merged>(bytes) {
        Ok(Merged {
            value: Value::Object(root),
            merged_keys,
        }) => Ok(Parsed { root, merged_keys }),
        Ok(_) => bail!("{what} does not hold a JSON object; not touching it"),
        Err(e) => Err(anyhow!(
            "{what} is not valid JSON ({}); fix or move it, it was not changed",
            text::json_error(&e)
        )),
    }
}

/// `map` as the docker CLI writes JSON: tab indentation and a final newline.
pub(crate) fn render(map: &Map<String, Value>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    map.serialize(&mut ser)?;
    out.push(b'\n');
    Ok(out)
}

/// A JSON value whose duplicate object keys were merged as Go reads them.
struct Merged {
    value: Value,
    merged_keys: Vec<String>,
}

impl<'de> Deserialize<'de> for Merged {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Merged, D::Error> {
        d.deserialize_any(MergedVisitor)
    }
}

struct MergedVisitor;

fn leaf(value: Value) -> Merged {
    Merged {
        value,
        merged_keys: Vec::new(),
    }
}

impl<'de> Visitor<'de> for MergedVisitor {
    type Value = Merged;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Merged, E> {
        Ok(leaf(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Merged, E> {
        Ok(leaf(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Merged, E> {
        Ok(leaf(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Merged, E> {
        Number::from_f64(v)
            .map(|n| leaf(Value::Number(n)))
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Merged, E> {
        Ok(leaf(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Merged, E> {
        Ok(leaf(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Merged, E> {
        Ok(leaf(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Merged, E> {
        Ok(leaf(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Merged, D::Error> {
        Merged::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Merged, A::Error> {
        let mut items = Vec::new();
        let mut merged_keys = Vec::new();
        while let Some(item) = seq.next_element::<Merged>()? {
            items.push(item.value);
            merged_keys.extend(item.merged_keys);
        }
        Ok(Merged {
            value: Value::Array(items),
            merged_keys,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Merged, A::Error> {
        let mut map = Map::new();
        let mut merged_keys = Vec::new();
        while let Some((key, item)) = access.next_entry::<String, Merged>()? {
            merged_keys.extend(item.merged_keys);
            match (map.get_mut(&key), item.value) {
                (Some(Value::Object(existing)), Value::Object(more)) => {
                    merge(existing, more);
                    merged_keys.push(key);
                }
                (Some(slot), value) => {
                    *slot = value;
                    merged_keys.push(key);
                }
                (None, value) => {
                    map.insert(key, value);
                }
            }
        }
        Ok(Merged {
            value: Value::Object(map),
            merged_keys,
        })
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
            Value::Object(p.root),
            serde_json::json!({"credHelpers": {"gcr.io": "gcp", "quay.io": "quay", "us.gcr.io": "gcp"}, "x": 2})
        );
        assert_eq!(p.merged_keys, ["credHelpers", "x"]);
        let nested = parse(br#"{"a": {"b": {"c": 1}, "b": {"d": 2}}}"#, "c").unwrap();
        assert_eq!(
            Value::Object(nested.root),
            serde_json::json!({"a": {"b": {"c": 1, "d": 2}}})
        );
        assert_eq!(nested.merged_keys, ["b"]);
    }
}
