//! Credentials files of every type: parsing and validation (what a mint does before any
//! request) never panic, run entirely offline, and an error never quotes a secret the file
//! holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Err(message) = docker_credential_gcp::fuzz_api::adc_file(data) else { return };
    assert!(!message.is_empty());
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(data) else { return };
    for field in ["private_key", "client_secret", "refresh_token"] {
        if let Some(secret) = doc.get(field).and_then(Value::as_str)
            && secret.len() >= 8
            && !secret.chars().all(|c| c.is_ascii_alphabetic() || c == '_' || c == ' ')
        {
            assert!(!message.contains(secret), "the error quotes {field}: {message}");
        }
    }
});
