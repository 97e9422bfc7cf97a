//! Bazel's `get` request: any input gives a request or a message, never a panic; messages never
//! repeat the input; a token goes only to the host of an `https` URI without user info.
#![no_main]

use docker_credential_gcp::fuzz_api::bazel_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match bazel_request(input) {
        Err(message) => {
            assert!(!message.is_empty());
            // Positions and field names only: a value from the input never reaches stderr.
            let value: Option<serde_json::Value> = serde_json::from_str(input).ok();
            if let Some(uri) = value.as_ref().and_then(|v| v.get("uri")) {
                let text = uri.to_string();
                if text.len() > 8 {
                    assert!(!message.contains(&text), "{message:?} echoes {text:?}");
                }
            }
        }
        Ok((uri, Some(host))) => {
            assert!(
                uri.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")),
                "{uri:?}"
            );
            let authority = uri[8..].split(['/', '?', '#']).next().unwrap_or("");
            assert!(!authority.contains('@'), "{uri:?}");
            // Google's hosts are names, never bracketed addresses: the host is the authority
            // without its port and trailing dot.
            let authority = authority.to_ascii_lowercase();
            let name = authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h);
            assert_eq!(name.trim_end_matches('.'), host, "{uri:?}");
        }
        Ok((_, None)) => {}
    }
});
