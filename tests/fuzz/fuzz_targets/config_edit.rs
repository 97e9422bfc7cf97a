//! The config editor's property: parse (repeated keys merged as docker reads them) → add our
//! entries → render → parse keeps every foreign key and value, in order, and the result is
//! valid JSON.
#![no_main]

use docker_credential_gcp::fuzz_api::{add_cred_helpers, parse_config};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let hosts = vec!["gcr.io".to_owned(), "us-docker.pkg.dev".to_owned()];
    let Some(rendered) = add_cred_helpers(data, &hosts) else {
        return;
    };
    let parsed = parse_config(data).expect("accepted input parses");
    let Ok(Value::Object(before)) = serde_json::from_slice::<Value>(&parsed) else {
        panic!("accepted input that is not a JSON object");
    };
    let Ok(Value::Object(after)) = serde_json::from_slice::<Value>(&rendered) else {
        panic!("rendered output is not a JSON object");
    };
    let foreign_before: Vec<_> = before.iter().filter(|(k, _)| *k != "credHelpers").collect();
    let foreign_after: Vec<_> = after.iter().filter(|(k, _)| *k != "credHelpers").collect();
    assert_eq!(
        foreign_before, foreign_after,
        "foreign keys, values and order are kept"
    );
    let helpers = after["credHelpers"]
        .as_object()
        .expect("credHelpers is an object");
    if let Some(Value::Object(old)) = before.get("credHelpers") {
        for (host, helper) in old {
            if !hosts.contains(host) {
                assert_eq!(helpers.get(host), Some(helper), "other helpers are kept");
            }
        }
    }
    for host in &hosts {
        assert_eq!(helpers[host], "gcp");
    }
});
