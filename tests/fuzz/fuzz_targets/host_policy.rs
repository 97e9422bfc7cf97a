//! The host policy: normalising never panics, is idempotent, and nothing outside Google's
//! registry suffixes is ever classified as a Google registry.
#![no_main]

use docker_credential_gcp::fuzz_api::host_policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Some((normalised, host, google)) = host_policy(input) else {
        return;
    };
    assert_eq!(
        host_policy(&normalised),
        Some((normalised.clone(), host.clone(), google)),
        "idempotent for {input:?}"
    );
    if google {
        let h = host.as_str();
        let ok = h == "gcr.io"
            || h.ends_with(".gcr.io")
            || h.ends_with("-docker.pkg.dev")
            || (h.starts_with("docker.") && h.ends_with(".rep.pkg.dev"));
        assert!(ok, "{input:?} accepted as {h:?}");
        assert!(!h.contains(['@', '/', '\\', '?', '#', '%', ' ']), "{h:?}");
        assert!(
            !input.contains('\\'),
            "a backslash form was accepted: {input:?}"
        );
    }
});
