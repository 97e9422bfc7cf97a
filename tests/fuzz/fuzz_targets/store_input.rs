//! `store` input: any bytes give a validated host or a one-line error, never a panic, and the
//! answer never depends on the secret (so an error cannot echo it).
#![no_main]

use docker_credential_gcp::fuzz_api::{host_policy, store_input};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match store_input(input) {
        Ok(host) => assert_eq!(host_policy(&host).map(|(h, _, _)| h), Some(host)),
        Err(message) => assert!(!message.is_empty()),
    }
    // Same document, same-length secret of other characters: the same answer. (Limited to
    // secrets that need no JSON escaping, so error positions cannot shift.)
    let Ok(Value::Object(mut doc)) = serde_json::from_str::<Value>(input) else {
        return;
    };
    let Some(secret) = doc.get("Secret").and_then(Value::as_str).map(str::to_owned) else {
        return;
    };
    if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return;
    }
    let original = serde_json::to_string(&doc).unwrap();
    let other: String = secret
        .bytes()
        .map(|b| if b == b'z' { 'y' } else { 'z' })
        .collect();
    doc.insert("Secret".into(), Value::String(other));
    let replaced = serde_json::to_string(&doc).unwrap();
    assert_eq!(
        store_input(&original),
        store_input(&replaced),
        "the answer depends on the secret"
    );
});
