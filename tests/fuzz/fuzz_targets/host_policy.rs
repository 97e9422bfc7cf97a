//! The host policy: normalising never panics, is idempotent, and nothing outside Google's
//! registry suffixes is ever classified as a Google registry. The same input read as a URI
//! from Bazel: only `https`, without user info, to the hosts of the URI policy.
#![no_main]

use docker_credential_gcp::fuzz_api::{host_policy, uri_policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    check_uri(input);
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

/// Artifact Registry's formats as the URI policy lists them.
const FORMATS: [&str; 8] = ["docker", "maven", "npm", "python", "go", "apt", "yum", "kfp"];

fn check_uri(input: &str) {
    let Some((host, path, google)) = uri_policy(input) else {
        return;
    };
    assert!(path.starts_with('/'), "{input:?}: path {path:?}");
    assert!(!path.contains(['?', '#']), "{input:?}: path {path:?}");
    if !google {
        return;
    }
    assert!(
        input.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")),
        "not https: {input:?}"
    );
    let authority = input[8..].split(['/', '?', '#']).next().unwrap_or("");
    assert!(!authority.contains('@'), "user info accepted: {input:?}");
    assert!(
        !input.contains(|c: char| c == '\\' || c.is_whitespace() || c.is_control()),
        "{input:?}"
    );
    let h = host.as_str();
    let ar = FORMATS.iter().any(|f| {
        h.strip_suffix(&format!("-{f}.pkg.dev"))
            .is_some_and(|r| !r.is_empty() && !r.contains('.'))
    });
    let ok = ar
        || h == "gcr.io"
        || h.ends_with(".gcr.io")
        || (h.starts_with("docker.") && h.ends_with(".rep.pkg.dev"))
        || h == "storage.googleapis.com"
        || h.ends_with(".storage.googleapis.com")
        || h == "artifactregistry.googleapis.com";
    assert!(ok, "{input:?} accepted as {h:?}");
    assert!(!h.contains(['@', '/', '\\', '?', '#', '%', ' ']), "{h:?}");
}
