//! Credentials files of every type: parsing and validation (what a mint does before any
//! request) never panic, run entirely offline, and an error never quotes a secret the file
//! holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const SECRETS: [&str; 3] = ["private_key", "client_secret", "refresh_token"];

fuzz_target!(|data: &[u8]| {
    let Err(message) = docker_credential_gcp::fuzz_api::adc_file(data) else {
        return;
    };
    assert!(!message.is_empty());
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for field in SECRETS {
        if let Some(secret) = doc.get(field).and_then(Value::as_str)
            && secret.len() >= 8
            && !secret
                .chars()
                .all(|c| c.is_ascii_alphabetic() || c == '_' || c == ' ')
            && !in_public_text(&doc, secret)
        {
            assert!(
                !message.contains(secret),
                "the error quotes {field}: {message}"
            );
        }
    }
});

/// Whether `secret` also occurs in a part of the file an error may quote (a key, or a value
/// that is not a secret, such as an unknown `type`): then finding it in the message proves
/// nothing.
fn in_public_text(doc: &Map<String, Value>, secret: &str) -> bool {
    fn walk(value: &Value, secret: &str) -> bool {
        match value {
            Value::String(text) => text.contains(secret),
            Value::Array(items) => items.iter().any(|item| walk(item, secret)),
            Value::Object(map) => map
                .iter()
                .any(|(key, item)| key.contains(secret) || walk(item, secret)),
            _ => false,
        }
    }
    doc.iter().any(|(key, value)| {
        key.contains(secret) || (!SECRETS.contains(&key.as_str()) && walk(value, secret))
    })
}
