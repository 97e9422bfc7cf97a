//! dockerd's daemon.json: `registry-mirrors`, edited as docker's JSON (see `json_file`).

use anyhow::{Result, bail};
use serde_json::{Map, Value};

use super::{MIRROR_URL, is_our_mirror};
use crate::setup::json_file;

/// Whether daemon.json's `registry-mirrors` lists mirror.gcr.io.
pub(crate) fn lists_our_mirror(root: &Map<String, Value>) -> bool {
    root.get("registry-mirrors")
        .and_then(Value::as_array)
        .is_some_and(|list| list.iter().any(is_ours))
}

fn is_ours(v: &Value) -> bool {
    v.as_str().is_some_and(is_our_mirror)
}

/// The mirror at the end of `registry-mirrors` (or, with `remove`, gone from it).
pub(super) fn edit(old: &str, remove: bool) -> Result<String> {
    if old.trim().is_empty() && remove {
        return Ok(old.to_owned());
    }
    let parsed = json_file::parse(old.as_bytes(), "daemon.json")?;
    let mut root = parsed.root;
    let list = match root.get_mut("registry-mirrors") {
        None => None,
        Some(Value::Array(list)) => Some(list),
        Some(_) => bail!("\"registry-mirrors\" is not a list; fix it by hand"),
    };
    match (list, remove) {
        (Some(list), true) => {
            list.retain(|v| !is_ours(v));
            if list.is_empty() {
                root.shift_remove("registry-mirrors");
            }
        }
        (None, true) => return Ok(old.to_owned()),
        (Some(list), false) if list.iter().any(is_ours) => return Ok(old.to_owned()),
        (Some(list), false) => list.push(Value::String(MIRROR_URL.to_owned())),
        (None, false) => {
            root.insert(
                "registry-mirrors".to_owned(),
                Value::Array(vec![Value::String(MIRROR_URL.to_owned())]),
            );
        }
    }
    Ok(String::from_utf8(json_file::render(&root)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::mirror::MIRROR_URL;

    fn mirrors_of(json: &str) -> Value {
        serde_json::from_str::<Value>(json).unwrap()["registry-mirrors"].clone()
    }

    #[test]
    fn daemon_json_gets_the_mirror_after_existing_ones_and_loses_only_ours() {
        let added = edit(
            r#"{"registry-mirrors": ["https://corp.example"], "x": 1}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            mirrors_of(&added),
            serde_json::json!(["https://corp.example", MIRROR_URL])
        );
        assert_eq!(edit(&added, false).unwrap(), added, "idempotent");
        let removed = edit(&added, true).unwrap();
        assert_eq!(
            mirrors_of(&removed),
            serde_json::json!(["https://corp.example"])
        );
        let fresh = edit("", false).unwrap();
        assert_eq!(mirrors_of(&fresh), serde_json::json!([MIRROR_URL]));
        assert_eq!(edit("", true).unwrap(), "");
        assert!(edit(r#"{"registry-mirrors": "x"}"#, false).is_err());
    }
}
