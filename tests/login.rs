//! `docker login` to a Google registry never breaks pulls an hour later: the real docker CLI,
//! the real Secret Service and the registry behind gcr-style token auth (tests/e2e.rs's rig).
//!
//! - `docker login HOST` with no user name asks the helper (`get`) and hands the minted token
//!   back (`store`): the helper keeps nothing, so after a token rotation `get` mints again.
//! - A pasted access token (`-u oauth2accesstoken`) is served while it can be valid, at most
//!   an hour, then removed; the token sources mint again.
//! - Keys (`_json_key`) keep today's rule: they win until `docker logout` (tests/e2e.rs).

use crate::support::peers::{Peer, need};
use crate::support::registry::*;
use crate::support::*;

fn keyring_rig(token_lifetime: u64) -> (Rig, SecretService) {
    require("docker");
    let mut rig = Rig::start_with_token_lifetime(token_lifetime);
    let ss = SecretService::start(rig.env.home.path());
    rig.env.set("DBUS_SESSION_BUS_ADDRESS", ss.address.clone());
    (rig, ss)
}

fn index(rig: &Rig) -> std::path::PathBuf {
    rig.env.path(&format!("{DATA_DIR}/stored-hosts.json"))
}

fn verbs(calls: &[HelperCall]) -> Vec<String> {
    calls.iter().map(|c| c.verb.clone()).collect()
}

#[test]
fn our_own_token_piped_into_docker_login_is_not_stored() {
    if !need(&[Peer::Docker, Peer::Registry, Peer::Keyring]) {
        return;
    }
    let (rig, _ss) = keyring_rig(3600);
    let token = rig.ok_helper(&["print-access-token"]);
    let mark = rig.mark();
    rig.docker_login("oauth2accesstoken", token.trim().as_bytes());
    let calls = rig.helper_calls_since(mark);
    assert!(verbs(&calls).contains(&"store".to_owned()), "{calls:?}");
    assert_eq!(
        rig.env.run(&["list", "--details"], b"").stdout,
        "no credentials stored with `docker login`\n",
        "nothing was stored"
    );
}

#[test]
fn a_pasted_token_is_served_while_it_can_be_valid_then_removed() {
    if !need(&[Peer::Docker, Peer::Registry, Peer::Keyring]) {
        return;
    }
    let (mut rig, _ss) = keyring_rig(3600);
    rig.seed_image("test/img:v1");
    // A token the registry accepts, from elsewhere (as `gcloud auth print-access-token` on
    // another machine would give); then this machine has no token source at all.
    let token = rig.ok_helper(&["print-access-token"]).trim().to_owned();
    std::fs::remove_dir_all(rig.env.cache_dir()).unwrap();
    rig.env.unset("GOOGLE_APPLICATION_CREDENTIALS");

    let mark = rig.mark();
    rig.docker_login("oauth2accesstoken", token.as_bytes());
    let calls = rig.helper_calls_since(mark);
    assert!(verbs(&calls).contains(&"store".to_owned()), "{calls:?}");
    let (_, user, secret) = creds(&rig.env.get(&rig.host));
    assert_eq!(
        (user.as_str(), secret.as_str()),
        ("oauth2accesstoken", token.as_str())
    );
    let manifest = rig.ok(
        "docker",
        &[
            "manifest",
            "inspect",
            "--insecure",
            &rig.image_ref("test/img:v1"),
        ],
        b"",
    );
    assert!(
        manifest.stdout.contains("schemaVersion"),
        "{}",
        manifest.stdout
    );
    let details = rig.env.run(&["list", "--details"], b"");
    assert!(
        details.stdout.contains("access token")
            && details.stdout.contains("served for 60 more min"),
        "{}",
        details.stdout
    );

    // An hour later (the stored time moved into the past): no longer served, and removed.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(index(&rig)).unwrap()).unwrap();
    let stored_at = doc[&rig.host]["stored_at"].as_u64().unwrap();
    doc[&rig.host]["stored_at"] = serde_json::json!(stored_at - 3601);
    std::fs::write(index(&rig), doc.to_string()).unwrap();
    let doctor = rig.env.run(&["doctor"], b"");
    assert!(
        doctor.stdout.contains("has expired")
            && doctor
                .stdout
                .contains(&format!("docker logout {}", rig.host)),
        "{}",
        doctor.stdout
    );
    let out = rig.env.get(&rig.host);
    assert_eq!(
        out.stdout, NOT_FOUND,
        "no source left: not found, so docker goes anonymous"
    );
    assert!(
        out.stderr.contains("has expired; removing it"),
        "{}",
        out.stderr
    );
    assert_eq!(
        rig.env.run(&["list", "--details"], b"").stdout,
        "no credentials stored with `docker login`\n"
    );
}

#[test]
fn an_expired_pasted_token_gives_way_to_a_token_source() {
    if !need(&[Peer::Docker, Peer::Registry, Peer::Keyring]) {
        return;
    }
    let (rig, _ss) = keyring_rig(3600);
    // A token the registry would reject by now, pasted more than an hour ago.
    let stored = serde_json::json!({"ServerURL": rig.host, "Username": "oauth2accesstoken", "Secret": "ya29.pasted-long-ago"});
    assert_eq!(
        rig.env.run(&["store"], stored.to_string().as_bytes()).code,
        0
    );
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(index(&rig)).unwrap()).unwrap();
    doc[&rig.host]["stored_at"] = serde_json::json!(1_000_000);
    std::fs::write(index(&rig), doc.to_string()).unwrap();
    let (_, _, secret) = creds(&rig.env.get(&rig.host));
    assert_eq!(secret, "ya29.test-1", "minted, not the stale paste");
}
