//! The host policy: normalising never panics, is idempotent, and nothing outside Google's
//! registry suffixes is ever classified as a Google registry.
#![no_main]

use docker_credential_gcp::fuzz_api::{HostClass, classify, normalise};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let Some(registry) = normalise(input) else { return };
    assert_eq!(normalise(&registry.to_string()).as_ref(), Some(&registry), "idempotent for {input:?}");
    if classify(&registry, &[]) == HostClass::Google {
        let h = registry.host.as_str();
        let google = h == "gcr.io"
            || h.ends_with(".gcr.io")
            || h.ends_with("-docker.pkg.dev")
            || (h.starts_with("docker.") && h.ends_with(".rep.pkg.dev"));
        assert!(google, "{input:?} accepted as {h:?}");
        assert!(!h.contains(['@', '/', ':', '?', '#', '%', ' ']), "{h:?}");
    }
});
