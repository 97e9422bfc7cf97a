//! The config editor's property: parse (repeated keys merged as docker reads them) → add our
//! entries → render → parse keeps every foreign key and value, in order and byte for byte
//! (numbers as written, even beyond f64's range), and the result is valid JSON.
#![no_main]

use std::fmt;

use docker_credential_gcp::fuzz_api::{add_cred_helpers, parse_config};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON object's members in order, each value as its exact text.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Members, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

fn members(json: &[u8]) -> Vec<(String, String)> {
    let Members(members) = serde_json::from_slice(json).expect("a JSON object");
    members
        .into_iter()
        .map(|(k, v)| (k, v.get().to_owned()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let hosts = vec!["gcr.io".to_owned(), "us-docker.pkg.dev".to_owned()];
    let Some(rendered) = add_cred_helpers(data, &hosts) else {
        return;
    };
    let parsed = parse_config(data).expect("accepted input parses");
    let before = members(&parsed);
    let after = members(&rendered);
    let foreign_before: Vec<_> = before.iter().filter(|(k, _)| k != "credHelpers").collect();
    let foreign_after: Vec<_> = after.iter().filter(|(k, _)| k != "credHelpers").collect();
    assert_eq!(
        foreign_before, foreign_after,
        "foreign keys, values (as written) and order are kept"
    );
    let helpers_of = |m: &[(String, String)]| {
        m.iter()
            .find(|(k, _)| k == "credHelpers")
            .map(|(_, v)| members(v.as_bytes()))
    };
    let helpers = helpers_of(&after).expect("credHelpers is an object");
    let helper = |host: &str| helpers.iter().find(|(k, _)| k == host).map(|(_, v)| v.clone());
    if let Some(old) = before
        .iter()
        .find(|(k, _)| k == "credHelpers")
        .filter(|(_, v)| v.starts_with('{'))
        .map(|(_, v)| members(v.as_bytes()))
    {
        for (host, value) in &old {
            if !hosts.contains(host) {
                assert_eq!(helper(host).as_ref(), Some(value), "other helpers are kept");
            }
        }
    }
    for host in &hosts {
        assert_eq!(helper(host).as_deref(), Some("\"gcp\""));
    }
});
