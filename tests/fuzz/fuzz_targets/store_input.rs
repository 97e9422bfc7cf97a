//! `store` input: any bytes give a validated host or a one-line error, never a panic, and the
//! error never echoes the secret.
#![no_main]

use docker_credential_gcp::fuzz_api::{normalise, store_input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    match store_input(input) {
        Ok(host) => assert_eq!(normalise(&host).map(|r| r.to_string()), Some(host)),
        Err(message) => {
            assert!(!message.is_empty());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(input)
                && let Some(secret) = v.get("Secret").and_then(|s| s.as_str())
                && secret.len() >= 8
            {
                assert!(!message.contains(secret), "the error echoes the secret");
            }
        }
    }
});
