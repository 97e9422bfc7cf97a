//! Self-signed JWTs: a service-account key signs its own access token, with no token endpoint
//! at all (Google APIs accept them; AIP-4111).
//!
//! The token is what docker-credential-gcr 2.1.26 and later send for a key by default (its
//! `credhelper/helper.go` asks `cloud.google.com/go/auth`'s `DetectDefault` for
//! `UseSelfSignedJWT`; the JWT itself is built by that library's `selfSignedTokenProvider`
//! and `internal/jwt`): header `{"alg":"RS256","typ":"JWT","kid":KEY_ID}`, claims
//! `{"iss":EMAIL,"scope":SCOPES,"exp":NOW+3600,"iat":NOW,"aud":"","sub":EMAIL}` in that order
//! (the scopes space-separated; `aud` always present, empty when no audience is asked for, as
//! gcr asks none), each part base64url without padding, signed RSASSA-PKCS1-v1_5 with SHA-256.
//! gcr's scope is `devstorage.read_write`; ours is the identity's (cloud-platform unless a rule
//! or the kubelet provider says otherwise).

use anyhow::{Result, anyhow};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;

use crate::util::secret::Secret;

/// How long a self-signed token lives, as gcr's library makes it.
pub(crate) const LIFETIME_SECS: u64 = 3600;

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// The claims in the order gcr's library writes them (`internal/jwt.Claims`).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    exp: u64,
    iat: u64,
    aud: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    sub: &'a str,
}

/// What a self-signed token is made of.
pub(crate) struct Signer<'a> {
    pub(crate) email: &'a str,
    /// `private_key_id` (empty if the key has none).
    pub(crate) key_id: &'a str,
    /// `private_key`: PEM, PKCS#8 (as Google writes keys) or PKCS#1.
    pub(crate) private_key: &'a Secret<String>,
    /// Space-separated.
    pub(crate) scope: &'a str,
}

impl Signer<'_> {
    /// The signed JWT, issued at `now` (seconds since the epoch), and when it expires. Errors
    /// name what is wrong with the key, never any of it.
    pub(crate) fn sign(&self, now: u64) -> Result<(Secret<String>, u64)> {
        let der = pem_body(self.private_key.expose())?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(&der)
            .or_else(|_| ring::signature::RsaKeyPair::from_der(&der))
            .map_err(|e| anyhow!("the private_key is not a usable RSA key ({e})"))?;
        let exp = now + LIFETIME_SECS;
        let header = Header {
            alg: "RS256",
            typ: "JWT",
            kid: self.key_id,
        };
        let claims = Claims {
            iss: self.email,
            scope: self.scope,
            exp,
            iat: now,
            aud: "",
            sub: self.email,
        };
        let mut jwt = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?));
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            jwt.as_bytes(),
            &mut signature,
        )
        .map_err(|_| anyhow!("signing the JWT with the private_key failed"))?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(&signature));
        Ok((Secret::new(jwt), exp))
    }
}

/// The DER inside a PEM `PRIVATE KEY` or `RSA PRIVATE KEY` block.
fn pem_body(pem: &str) -> Result<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN ") || !l.ends_with("PRIVATE KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END "))
        .collect();
    if body.is_empty() {
        return Err(anyhow!(
            "the private_key is not a PEM private key (no BEGIN PRIVATE KEY block)"
        ));
    }
    STANDARD
        .decode(body)
        .map_err(|_| anyhow!("the private_key's PEM block is not valid base64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret<String> {
        let pem = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-sa-key.pem"),
        )
        .unwrap();
        Secret::new(pem)
    }

    fn part(jwt: &str, i: usize) -> Vec<u8> {
        URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(i).unwrap())
            .unwrap()
    }

    #[test]
    fn the_token_is_the_jwt_gcr_sends_signed_with_the_key() {
        let key = key();
        let signer = Signer {
            email: "builder@p.iam.gserviceaccount.com",
            key_id: "0123abcd",
            private_key: &key,
            scope: "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/devstorage.read_write",
        };
        let (jwt, exp) = signer.sign(1_700_000_000).unwrap();
        let jwt = jwt.expose();
        assert_eq!(exp, 1_700_003_600);
        assert_eq!(jwt.split('.').count(), 3);
        assert!(!jwt.contains('='), "no padding");
        assert_eq!(
            String::from_utf8(part(jwt, 0)).unwrap(),
            r#"{"alg":"RS256","typ":"JWT","kid":"0123abcd"}"#
        );
        assert_eq!(
            String::from_utf8(part(jwt, 1)).unwrap(),
            r#"{"iss":"builder@p.iam.gserviceaccount.com","scope":"https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/devstorage.read_write","exp":1700003600,"iat":1700000000,"aud":"","sub":"builder@p.iam.gserviceaccount.com"}"#
        );
        let public = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/test-sa-key.pub.der"),
        )
        .unwrap();
        let signed = jwt.rsplit_once('.').unwrap().0;
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            public,
        )
        .verify(signed.as_bytes(), &part(jwt, 2))
        .expect("signed with the key");
    }

    #[test]
    fn a_bad_key_is_named_without_quoting_it() {
        for (pem, needle) in [
            ("not a key", "no BEGIN PRIVATE KEY"),
            (
                "-----BEGIN PRIVATE KEY-----\n!!secret!!\n-----END PRIVATE KEY-----\n",
                "not valid base64",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
                "not a usable RSA key",
            ),
        ] {
            let key = Secret::new(pem.to_owned());
            let signer = Signer {
                email: "a@b",
                key_id: "",
                private_key: &key,
                scope: "s",
            };
            let e = format!("{:#}", signer.sign(1).unwrap_err());
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains("secret") && !e.contains("c2VjcmV0"), "{e}");
        }
    }
}
