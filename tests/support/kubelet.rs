//! The kubelet's side of the image credential provider protocol, written from the kubelet's
//! source so that tests can hold the provider to the kubelet's own rules. Each function names
//! the kubelet function it follows. The sources, in the Kubernetes repositories at the versions
//! named:
//!
//! - kubernetes/kubernetes `pkg/credentialprovider/plugin/plugin.go` (1.33 at commit 01302639,
//!   and a ≥ 1.34 version with `cacheType`): `RegisterCredentialProviderPlugins`,
//!   `newPluginProvider`, `pluginProvider.provide`, `isImageAllowed`, `getCachedCredentials`,
//!   `serviceAccountProvider.getServiceAccountData`, `execPlugin.ExecPlugin`, `runPlugin`,
//!   `encodeRequest`, `decodeResponse`, `parseRegistry`, `mergeEnvVars`;
//! - `pkg/credentialprovider/plugin/config.go` (commit fde22c3f): `readCredentialProviderConfig`,
//!   `decode`, `validateCredentialProviderConfig`, `validateServiceAccountAnnotationKeys`;
//! - `pkg/credentialprovider/keyring.go`: `BasicDockerKeyring.Add`, `BasicDockerKeyring.Lookup`,
//!   `providersDockerKeyring.Lookup`, `ParseSchemelessURL`, `SplitURL`, `URLsMatchStr`,
//!   `URLsMatch`;
//! - k8s.io/kubelet `pkg/apis/credentialprovider/{v1,v1beta1,v1alpha1}/types.go` and
//!   `config/v1/types.go` (v0.33.0 without `cacheType`, v0.34.0 and later with it);
//! - k8s.io/apimachinery `runtime/serializer/json/json.go` `Serializer.unmarshal` (strict mode:
//!   sigs.k8s.io/json `UnmarshalStrict`, case-sensitive, no duplicate or unknown fields),
//!   `apis/meta/v1/duration.go` `Duration.UnmarshalJSON`, `api/validate/content/kube.go`
//!   `IsLabelKey` (= `IsQualifiedName`), `util/validation/validation.go` `IsDNS1123Subdomain`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::go;
use super::{BIN, Reply, Server};

pub(crate) const RESPONSE_GROUP: &str = "credentialprovider.kubelet.k8s.io";
pub(crate) const CONFIG_GROUP: &str = "kubelet.config.k8s.io";
pub(crate) const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha1"];

// ---------------------------------------------------------------------------------------------
// JSON as the strict decoder sees it: objects keep every key in order, duplicates included.

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Json, E> {
                Ok(serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::String(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Json, E> {
                Ok(Json::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    entries.push(entry);
                }
                Ok(Json::Object(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// One JSON document and nothing after it (Go's `json.Unmarshal` rejects trailing data).
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Json, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))
}

/// The fields of a JSON object decoded strictly into a Go struct with exactly `known` JSON
/// names (sigs.k8s.io/json `UnmarshalStrict`: `CaseSensitive`, `DisallowDuplicateFields`,
/// `DisallowUnknownFields`). `null` decodes to the zero value, as in Go.
fn strict_fields<'a>(
    v: &'a Json,
    known: &[&str],
    at: &str,
) -> Result<BTreeMap<&'a str, &'a Json>, String> {
    let entries = match v {
        Json::Object(entries) => entries,
        Json::Null => return Ok(BTreeMap::new()),
        other => return Err(format!("{at}: expected an object, got {other:?}")),
    };
    let mut fields = BTreeMap::new();
    for (k, value) in entries {
        if !known.contains(&k.as_str()) {
            return Err(format!("{at}: unknown field {k:?}"));
        }
        if fields.insert(k.as_str(), value).is_some() {
            return Err(format!("{at}: duplicate field {k:?}"));
        }
    }
    Ok(fields)
}

/// A Go `map[string]T`: string keys, no duplicates (strict decoding), `null` is empty.
fn strict_map<'a>(v: &'a Json, at: &str) -> Result<Vec<(&'a str, &'a Json)>, String> {
    let entries = match v {
        Json::Object(entries) => entries,
        Json::Null => return Ok(Vec::new()),
        other => return Err(format!("{at}: expected an object, got {other:?}")),
    };
    let mut seen = std::collections::HashSet::new();
    for (k, _) in entries {
        if !seen.insert(k) {
            return Err(format!("{at}: duplicate key {k:?}"));
        }
    }
    Ok(entries.iter().map(|(k, v)| (k.as_str(), v)).collect())
}

fn string(v: Option<&&Json>, at: &str) -> Result<String, String> {
    match v {
        None | Some(Json::Null) => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("{at}: expected a string, got {other:?}")),
    }
}

fn strings(v: Option<&&Json>, at: &str) -> Result<Vec<String>, String> {
    match v {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => items
            .iter()
            .map(|i| string(Some(&i), at))
            .collect::<Result<_, _>>(),
        Some(other) => Err(format!("{at}: expected a list of strings, got {other:?}")),
    }
}

fn optional_bool(v: Option<&&Json>, at: &str) -> Result<Option<bool>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(format!("{at}: expected a boolean, got {other:?}")),
    }
}

/// A `*metav1.Duration`: absent or `null` is nil; otherwise a JSON string that
/// `time.ParseDuration` accepts (`Duration.UnmarshalJSON`). Nanoseconds.
fn optional_duration(v: Option<&&Json>, at: &str) -> Result<Option<i128>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => go::parse_duration(s)
            .map(Some)
            .map_err(|e| format!("{at}: {e}")),
        Some(other) => Err(format!("{at}: expected a duration string, got {other:?}")),
    }
}

/// `schema.ParseGroupVersion`: "" → empty, "v1" → core group, "g/v" → group g; more slashes
/// are an error.
fn parse_group_version(api_version: &str) -> Result<(String, String), String> {
    match api_version.split('/').collect::<Vec<_>>()[..] {
        [""] => Ok((String::new(), String::new())),
        [v] => Ok((String::new(), v.to_owned())),
        [g, v] => Ok((g.to_owned(), v.to_owned())),
        _ => Err(format!("unexpected GroupVersion string: {api_version}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The response (k8s.io/kubelet pkg/apis/credentialprovider/*/types.go: the same fields in v1,
// v1beta1 and v1alpha1).

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AuthConfig {
    pub(crate) username: String,
    pub(crate) password: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) cache_key_type: String,
    /// `None` when absent or null: the provider's `defaultCacheDuration` applies.
    pub(crate) cache_duration_ns: Option<i128>,
    /// In the order the plugin wrote them.
    pub(crate) auth: Vec<(String, AuthConfig)>,
}

/// What `execPlugin.ExecPlugin` accepts on stdout (after a zero exit), for a provider
/// configured with `api_version`:
/// 1. `json.DefaultMetaFactory.Interpret`: one JSON object whose `apiVersion` parses as a
///    group/version; `gvk.GroupVersion().String()` must equal the provider's apiVersion.
/// 2. `decodeResponse`: the strict universal decoder (unknown fields, duplicate keys and
///    wrongly cased names are errors; `cacheDuration` must be a Go duration string), then
///    `gvk.Kind == "CredentialProviderResponse"` and the group
///    `credentialprovider.kubelet.k8s.io`.
pub(crate) fn decode_response(stdout: &[u8], api_version: &str) -> Result<Response, String> {
    let doc = parse_json(stdout).map_err(|e| format!("error reading GVK from response: {e}"))?;
    let Json::Object(top) = &doc else {
        return Err("error reading GVK from response: not an object".into());
    };
    // Interpret uses plain encoding/json: the last of repeated keys wins.
    let meta = |k: &str| {
        top.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v)
            .cloned()
    };
    let got_version = match meta("apiVersion") {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s,
        Some(other) => return Err(format!("error reading GVK from response: {other:?}")),
    };
    let (group, version) = parse_group_version(&got_version)?;
    let got = if group.is_empty() {
        version.clone()
    } else {
        format!("{group}/{version}")
    };
    if got != api_version {
        return Err(format!(
            "apiVersion from credential plugin response did not match expected apiVersion:{api_version}, actual apiVersion:{got}"
        ));
    }
    // decodeResponse: the strict universal decoder.
    let fields = strict_fields(
        &doc,
        &[
            "kind",
            "apiVersion",
            "cacheKeyType",
            "cacheDuration",
            "auth",
        ],
        "response",
    )?;
    let kind = string(fields.get("kind"), "kind")?;
    if kind.is_empty() {
        return Err("Object 'Kind' is missing".into());
    }
    if !(group == RESPONSE_GROUP && VERSIONS.contains(&version.as_str())) {
        return Err(format!(
            "no kind {kind:?} is registered for version {got:?}"
        ));
    }
    if kind != "CredentialProviderResponse" {
        return Err(format!(
            "failed to decode CredentialProviderResponse, unexpected Kind: {kind:?}"
        ));
    }
    let mut auth = Vec::new();
    if let Some(entries) = fields.get("auth") {
        for (key, entry) in strict_map(entries, "auth")? {
            let at = format!("auth[{key:?}]");
            let e = strict_fields(entry, &["username", "password"], &at)?;
            auth.push((
                key.to_owned(),
                AuthConfig {
                    username: string(e.get("username"), &at)?,
                    password: string(e.get("password"), &at)?,
                },
            ));
        }
    }
    Ok(Response {
        api_version: got,
        kind,
        cache_key_type: string(fields.get("cacheKeyType"), "cacheKeyType")?,
        cache_duration_ns: optional_duration(fields.get("cacheDuration"), "cacheDuration")?,
        auth,
    })
}

/// `encodeRequest`: the internal request encoded in the provider's apiVersion (kind and
/// apiVersion first, as Go's encoder writes the embedded TypeMeta). Only v1 has
/// `serviceAccountToken` and `serviceAccountAnnotations`, both omitempty.
pub(crate) fn encode_request(
    api_version: &str,
    image: &str,
    token: &str,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut v = serde_json::Map::new();
    v.insert("kind".into(), "CredentialProviderRequest".into());
    v.insert("apiVersion".into(), api_version.into());
    v.insert("image".into(), image.into());
    if api_version.ends_with("/v1") {
        if !token.is_empty() {
            v.insert("serviceAccountToken".into(), token.into());
        }
        if !annotations.is_empty() {
            v.insert(
                "serviceAccountAnnotations".into(),
                serde_json::json!(annotations),
            );
        }
    }
    serde_json::Value::Object(v).to_string().into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Image matching (keyring.go).

/// `ParseSchemelessURL`: `url.Parse("https://" + s)` → (host with port, path).
pub(crate) fn parse_schemeless_url(s: &str) -> Result<(String, String), String> {
    go::url_parse(&format!("https://{s}"))
}

/// `SplitURL`: `net.SplitHostPort(u.Host)`, falling back to the whole host and port "" when
/// that fails; the host split at every dot.
fn split_url(host: &str) -> (Vec<String>, String) {
    let (h, port) = go::split_host_port(host).unwrap_or((host.to_owned(), String::new()));
    (h.split('.').map(str::to_owned).collect(), port)
}

/// `URLsMatchStr(glob, target)` → `URLsMatch`: ports equal as strings (both empty counts as
/// equal; a port on one side only never matches), equal label counts, the glob's path a string
/// prefix of the target's, and every label matched by `filepath.Match`. A bad pattern is an
/// error, which every caller treats as "no match".
pub(crate) fn urls_match_str(glob: &str, target: &str) -> Result<bool, String> {
    let (glob_host, glob_path) = parse_schemeless_url(glob)?;
    let (target_host, target_path) = parse_schemeless_url(target)?;
    let (glob_labels, glob_port) = split_url(&glob_host);
    let (target_labels, target_port) = split_url(&target_host);
    if glob_port != target_port || glob_labels.len() != target_labels.len() {
        return Ok(false);
    }
    if !target_path.starts_with(&glob_path) {
        return Ok(false);
    }
    for (g, t) in glob_labels.iter().zip(&target_labels) {
        if !go::filepath_match(g, t)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The credentials a pull of `image` is offered from one provider's answer:
/// `BasicDockerKeyring.Add` (each key prefixed with `https://` unless it has a scheme, parsed
/// with `url.Parse` and skipped if that fails, a leading `/v1/` or `/v2/` dropped, indexed by
/// host plus path; the index deduplicated and reverse-sorted) then
/// `BasicDockerKeyring.Lookup` (every index key that `URLsMatchStr(key, image)`; the Docker
/// Hub fallback does not concern Google images). Returns (index key, credentials).
pub(crate) fn keyring_lookup(
    answer: &[(String, AuthConfig)],
    image: &str,
) -> Vec<(String, AuthConfig)> {
    let mut creds: BTreeMap<String, Vec<AuthConfig>> = BTreeMap::new();
    for (loc, auth) in answer {
        let value = if loc.starts_with("https://") || loc.starts_with("http://") {
            loc.clone()
        } else {
            format!("https://{loc}")
        };
        let Ok((host, path)) = go::url_parse(&value) else {
            continue;
        };
        let path = if path.starts_with("/v2/") || path.starts_with("/v1/") {
            path[3..].to_owned()
        } else {
            path
        };
        let key = if !path.is_empty() && path != "/" {
            host + &path
        } else {
            host
        };
        creds.entry(key).or_default().push(auth.clone());
    }
    let mut out = Vec::new();
    for (key, list) in creds.iter().rev() {
        if urls_match_str(key, image) == Ok(true) {
            out.extend(list.iter().map(|a| (key.clone(), a.clone())));
        }
    }
    out
}

/// `parseRegistry`: the text before the first `/`.
pub(crate) fn parse_registry(image: &str) -> &str {
    image.split('/').next().unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// The CredentialProviderConfig (config.go, k8s.io/kubelet config/v1/types.go).

/// Which kubelet's rules apply: 1.33 has `tokenAttributes` without `cacheType`; from 1.34
/// `cacheType` exists and is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    V1_33,
    V1_34Plus,
}

#[derive(Debug, Clone)]
pub(crate) struct TokenAttributes {
    pub(crate) audience: String,
    pub(crate) cache_type: String,
    pub(crate) require_service_account: Option<bool>,
    pub(crate) required_keys: Vec<String>,
    pub(crate) optional_keys: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Provider {
    pub(crate) name: String,
    pub(crate) match_images: Vec<String>,
    pub(crate) default_cache_duration_ns: Option<i128>,
    pub(crate) api_version: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) token_attributes: Option<TokenAttributes>,
}

/// `readCredentialProviderConfig` → `decode` for one file: the strict universal decoder (JSON
/// here; YAML is decoded to the same rules), kind `CredentialProviderConfig` in group
/// `kubelet.config.k8s.io` at v1alpha1, v1beta1 or v1; only the v1 type has
/// `tokenAttributes`, and only from 1.34 does that have `cacheType`. Provider names repeated
/// across files are rejected by `readCredentialProviderConfig`; within one file that is
/// `validate_config`'s job.
pub(crate) fn decode_config(bytes: &[u8], release: Release) -> Result<Vec<Provider>, String> {
    let doc = parse_json(bytes)?;
    let top = strict_fields(&doc, &["kind", "apiVersion", "providers"], "config")?;
    let api_version = string(top.get("apiVersion"), "apiVersion")?;
    let kind = string(top.get("kind"), "kind")?;
    let (group, version) = parse_group_version(&api_version)?;
    if kind.is_empty() {
        return Err("Object 'Kind' is missing".into());
    }
    if group != CONFIG_GROUP || !VERSIONS.contains(&version.as_str()) {
        return Err(format!(
            "no kind {kind:?} is registered for version {api_version:?}"
        ));
    }
    if kind != "CredentialProviderConfig" {
        return Err(format!("failed to decode {kind:?} (wrong Kind)"));
    }
    let mut provider_fields = vec![
        "name",
        "matchImages",
        "defaultCacheDuration",
        "apiVersion",
        "args",
        "env",
    ];
    if version == "v1" {
        provider_fields.push("tokenAttributes");
    }
    let mut token_fields = vec![
        "serviceAccountTokenAudience",
        "requireServiceAccount",
        "requiredServiceAccountAnnotationKeys",
        "optionalServiceAccountAnnotationKeys",
    ];
    if release == Release::V1_34Plus {
        token_fields.push("cacheType");
    }
    let providers = match top.get("providers") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items.iter().collect(),
        Some(other) => return Err(format!("providers: expected a list, got {other:?}")),
    };
    let mut out = Vec::new();
    for (i, p) in providers.into_iter().enumerate() {
        let at = format!("providers[{i}]");
        let f = strict_fields(p, &provider_fields, &at)?;
        let env = match f.get("env") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(items)) => items
                .iter()
                .map(|e| {
                    let e = strict_fields(e, &["name", "value"], &format!("{at}.env"))?;
                    Ok((
                        string(e.get("name"), "name")?,
                        string(e.get("value"), "value")?,
                    ))
                })
                .collect::<Result<_, String>>()?,
            Some(other) => return Err(format!("{at}.env: expected a list, got {other:?}")),
        };
        let token_attributes = match f.get("tokenAttributes") {
            None | Some(Json::Null) => None,
            Some(t) => {
                let at = format!("{at}.tokenAttributes");
                let t = strict_fields(t, &token_fields, &at)?;
                Some(TokenAttributes {
                    audience: string(t.get("serviceAccountTokenAudience"), &at)?,
                    cache_type: string(t.get("cacheType"), &at)?,
                    require_service_account: optional_bool(t.get("requireServiceAccount"), &at)?,
                    required_keys: strings(t.get("requiredServiceAccountAnnotationKeys"), &at)?,
                    optional_keys: strings(t.get("optionalServiceAccountAnnotationKeys"), &at)?,
                })
            }
        };
        out.push(Provider {
            name: string(f.get("name"), &at)?,
            match_images: strings(f.get("matchImages"), &at)?,
            default_cache_duration_ns: optional_duration(f.get("defaultCacheDuration"), &at)?,
            api_version: string(f.get("apiVersion"), &at)?,
            args: strings(f.get("args"), &at)?,
            env,
            token_attributes,
        });
    }
    Ok(out)
}

/// `validateCredentialProviderConfig(config, saTokenForCredentialProviders)`, every rule, each
/// failure one message (the kubelet aggregates them and exits). `gate` is the
/// KubeletServiceAccountTokenForCredentialProviders feature gate. `cacheType` is checked from
/// 1.34 (the 1.33 type has no such field).
pub(crate) fn validate_config(providers: &[Provider], gate: bool, release: Release) -> Vec<String> {
    let mut errs = Vec::new();
    if providers.is_empty() {
        errs.push("providers: at least 1 item in plugins is required".to_owned());
    }
    let mut seen = Vec::new();
    for p in providers {
        let n = &p.name;
        if n.contains('/') {
            errs.push(format!("name {n:?}: provider name cannot contain '/'"));
        }
        if n.contains(' ') {
            errs.push(format!("name {n:?}: provider name cannot contain spaces"));
        }
        if n == "." || n == ".." {
            errs.push(format!("name {n:?}: provider name cannot be {n:?}"));
        }
        if seen.contains(&n) {
            errs.push(format!("name {n:?}: Duplicate value"));
        }
        seen.push(n);
        if p.api_version.is_empty() {
            errs.push("apiVersion: Required value".to_owned());
        } else if !VERSIONS
            .iter()
            .any(|v| p.api_version == format!("{RESPONSE_GROUP}/{v}"))
        {
            errs.push(format!("apiVersion {:?}: Unsupported value", p.api_version));
        }
        if p.match_images.is_empty() {
            errs.push("matchImages: at least 1 item in matchImages is required".to_owned());
        }
        for m in &p.match_images {
            if let Err(e) = parse_schemeless_url(m) {
                errs.push(format!("matchImages {m:?}: match image is invalid: {e}"));
            }
        }
        match p.default_cache_duration_ns {
            None => errs.push("defaultCacheDuration: Required value".to_owned()),
            Some(d) if d < 0 => {
                errs.push("defaultCacheDuration: must be greater than or equal to 0".to_owned())
            }
            Some(_) => {}
        }
        let Some(t) = &p.token_attributes else {
            continue;
        };
        if !gate {
            errs.push("tokenAttributes: tokenAttributes is not supported when KubeletServiceAccountTokenForCredentialProviders feature gate is disabled".to_owned());
        }
        if t.audience.is_empty() {
            errs.push("tokenAttributes.serviceAccountTokenAudience: Required value".to_owned());
        }
        if t.require_service_account.is_none() {
            errs.push("tokenAttributes.requireServiceAccount: Required value".to_owned());
        }
        if p.api_version != format!("{RESPONSE_GROUP}/v1") {
            errs.push(format!(
                "tokenAttributes: tokenAttributes is only supported for {RESPONSE_GROUP}/v1 API version"
            ));
        }
        if t.require_service_account == Some(false) && !t.required_keys.is_empty() {
            errs.push("tokenAttributes.requiredServiceAccountAnnotationKeys: requireServiceAccount cannot be false when requiredServiceAccountAnnotationKeys is set".to_owned());
        }
        errs.extend(validate_annotation_keys(
            "requiredServiceAccountAnnotationKeys",
            &t.required_keys,
        ));
        errs.extend(validate_annotation_keys(
            "optionalServiceAccountAnnotationKeys",
            &t.optional_keys,
        ));
        if t.required_keys.iter().any(|k| t.optional_keys.contains(k)) {
            errs.push(
                "tokenAttributes: annotation keys cannot be both required and optional".to_owned(),
            );
        }
        if release == Release::V1_34Plus {
            match t.cache_type.as_str() {
                "" => errs.push("tokenAttributes.cacheType: cacheType is required to be set when tokenAttributes is specified".to_owned()),
                "ServiceAccount" | "Token" => {}
                other => errs.push(format!("tokenAttributes.cacheType {other:?}: Unsupported value")),
            }
        }
    }
    errs
}

/// `validateServiceAccountAnnotationKeys`: each key a qualified name once lower-cased
/// (`IsQualifiedName(strings.ToLower(k))`), no key twice.
fn validate_annotation_keys(field: &str, keys: &[String]) -> Vec<String> {
    let mut errs = Vec::new();
    let mut seen = Vec::new();
    for k in keys {
        if !is_qualified_name(&k.to_lowercase()) {
            errs.push(format!(
                "tokenAttributes.{field} {k:?}: not a qualified name"
            ));
        }
        if seen.contains(&k) {
            errs.push(format!("tokenAttributes.{field} {k:?}: Duplicate value"));
        }
        seen.push(k);
    }
    errs
}

/// `IsQualifiedName` (`content.IsLabelKey`): `name` or `prefix/name`; the prefix a DNS-1123
/// subdomain (`IsDNS1123Subdomain`: at most 253 characters, dot-separated labels of
/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`); the name 1 to 63 characters of
/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
pub(crate) fn is_qualified_name(value: &str) -> bool {
    let parts: Vec<&str> = value.split('/').collect();
    let (prefix, name) = match parts[..] {
        [name] => (None, name),
        [prefix, name] => (Some(prefix), name),
        _ => return false,
    };
    let dns_label = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(dns_label));
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && alnum(name.chars().next())
        && alnum(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    prefix_ok && name_ok
}

/// Reads a shipped example config.
pub(crate) fn example_config(file: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("packaging/kubelet")
            .join(file),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Running the plugin (plugin.go) and the kubelet's cache and keyring around it.

/// A pod as the kubelet sees it for an image pull.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pod {
    pub(crate) namespace: String,
    /// `None`: a pod without a service account (a static pod).
    pub(crate) service_account: Option<String>,
    pub(crate) service_account_uid: String,
    /// Every annotation of the service account (the kubelet passes on only the listed ones).
    pub(crate) annotations: BTreeMap<String, String>,
    /// The token the API server would mint for the configured audience.
    pub(crate) token: String,
}

/// One run of the plugin.
#[derive(Debug)]
pub(crate) struct Exec {
    pub(crate) request: String,
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    /// `ExecPlugin`'s result: the decoded response, or the error the kubelet logs.
    pub(crate) result: Result<Response, String>,
}

/// A kubelet with one provider from a config: its plugin directory, its cache, its runs.
pub(crate) struct Kubelet {
    pub(crate) provider: Provider,
    bin_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    args: Vec<String>,
    cache: HashMap<(String, String), Vec<(String, AuthConfig)>>,
    pub(crate) execs: Vec<Exec>,
}

impl Kubelet {
    /// `RegisterCredentialProviderPlugins` for a provider: the binary must be at
    /// `<bin dir>/<name>` (`exec.LookPath`); here that is a symlink to the built helper, as
    /// the install step of docs/kubelet.md makes it.
    pub(crate) fn new(provider: Provider) -> Kubelet {
        let bin_dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(BIN, bin_dir.path().join(&provider.name)).unwrap();
        let env = provider.env.clone();
        let args = provider.args.clone();
        Kubelet {
            provider,
            bin_dir,
            env,
            args,
            cache: HashMap::new(),
            execs: Vec::new(),
        }
    }

    /// A test-only change to the provider's env (a stand-in's address, a temporary directory
    /// instead of a system path): replaces the variable if the config sets it, else adds it.
    pub(crate) fn set_env(&mut self, name: &str, value: &str) -> &mut Kubelet {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A test-only argument after the config's args (a stand-in's URL).
    pub(crate) fn add_args(&mut self, args: &[&str]) -> &mut Kubelet {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    fn plugin_path(&self) -> PathBuf {
        self.bin_dir.path().join(&self.provider.name)
    }

    /// `execPlugin.ExecPlugin`: `<bin dir>/<name> args...` with the request on stdin, under a
    /// one-minute deadline (`runPlugin`). The environment is the provider's `env` and nothing
    /// else, as under `env -i` (the kubelet adds its own environment first, `mergeEnvVars`;
    /// under systemd that has no HOME, and the plugin must not need any of it). A non-zero
    /// exit is an error carrying stderr; on success stderr is dropped and stdout decoded.
    pub(crate) fn exec(
        &mut self,
        image: &str,
        token: &str,
        annotations: &BTreeMap<String, String>,
    ) -> &Exec {
        let request = encode_request(&self.provider.api_version, image, token, annotations);
        let mut cmd = Command::new(self.plugin_path());
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("exec the plugin");
        let mut stdin = child.stdin.take().unwrap();
        let input = request.clone();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = {
            let done = done.clone();
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    if done.load(std::sync::atomic::Ordering::SeqCst) {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                // SAFETY: kill(2) on the child we spawned, which has not been reaped yet
                // (wait_with_output is still blocked on it).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                true
            })
        };
        let out = child.wait_with_output().unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let timed_out = watchdog.join().unwrap();
        writer.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let result = if timed_out {
            Err(format!(
                "error execing credential provider plugin {} for image {image}: context deadline exceeded: {stderr}",
                self.provider.name
            ))
        } else if !out.status.success() {
            Err(format!(
                "error execing credential provider plugin {} for image {image}: {}: {stderr}",
                self.provider.name, out.status
            ))
        } else {
            decode_response(&out.stdout, &self.provider.api_version)
        };
        self.execs.push(Exec {
            request: String::from_utf8(request).unwrap(),
            code: out.status.code(),
            stdout,
            stderr,
            result,
        });
        self.execs.last().unwrap()
    }

    /// `pluginProvider.provide(image, pod)`: the DockerConfig this provider contributes.
    /// - `isImageAllowed`: some `matchImages` entry `URLsMatchStr`-matches the image, else
    ///   nothing (and no run);
    /// - service-account-token mode (`tokenAttributes`; the gate is taken as on): a pod without
    ///   a service account gets nothing when `requireServiceAccount`, else runs without a token;
    ///   `getServiceAccountData` passes on only the listed annotations and gives up when a
    ///   required one is missing; the cache key includes the service account;
    /// - `getCachedCredentials`: the image, then `parseRegistry(image)`, then the global key;
    /// - after a run: the answer is dropped when a password equals the pod's token unless
    ///   `cacheType` is Token (≥ 1.34), or when `cacheKeyType` is not Image, Registry or Global;
    ///   `cacheDuration` 0 is not cached, absent means `defaultCacheDuration` (0: not cached).
    pub(crate) fn provide(&mut self, image: &str, pod: &Pod) -> Vec<(String, AuthConfig)> {
        let allowed = self
            .provider
            .match_images
            .iter()
            .any(|m| urls_match_str(m, image) == Ok(true));
        if !allowed {
            return Vec::new();
        }
        let mut token = String::new();
        let mut annotations = BTreeMap::new();
        let mut sa_key = String::new();
        if let Some(t) = self.provider.token_attributes.clone() {
            match &pod.service_account {
                None if t.require_service_account == Some(true) => return Vec::new(),
                None => {}
                Some(sa) => {
                    for k in &t.required_keys {
                        match pod.annotations.get(k) {
                            Some(v) => annotations.insert(k.clone(), v.clone()),
                            None => return Vec::new(),
                        };
                    }
                    for k in &t.optional_keys {
                        if let Some(v) = pod.annotations.get(k) {
                            annotations.insert(k.clone(), v.clone());
                        }
                    }
                    token = pod.token.clone();
                    sa_key = format!(
                        "{}/{sa}/{}/{annotations:?}{}",
                        pod.namespace,
                        pod.service_account_uid,
                        if t.cache_type == "Token" { &token } else { "" }
                    );
                }
            }
        }
        for base in [image, parse_registry(image), "<global>"] {
            if let Some(hit) = self.cache.get(&(base.to_owned(), sa_key.clone())) {
                return hit.clone();
            }
        }
        let cache_type = self
            .provider
            .token_attributes
            .as_ref()
            .map(|t| t.cache_type.clone())
            .unwrap_or_default();
        let default_duration = self.provider.default_cache_duration_ns.unwrap_or(0);
        let Ok(response) = self.exec(image, &token, &annotations).result.clone() else {
            return Vec::new();
        };
        if !token.is_empty()
            && cache_type != "Token"
            && response.auth.iter().any(|(_, a)| a.password == token)
        {
            return Vec::new();
        }
        let base = match response.cache_key_type.as_str() {
            "Image" => image,
            "Registry" => parse_registry(image),
            "Global" => "<global>",
            _ => return Vec::new(),
        };
        let cached = match response.cache_duration_ns {
            Some(0) => false,
            None => default_duration > 0,
            Some(_) => true,
        };
        if cached {
            self.cache
                .insert((base.to_owned(), sa_key), response.auth.clone());
        }
        response.auth
    }

    /// `providersDockerKeyring.Lookup`: this provider's DockerConfig added to a fresh
    /// `BasicDockerKeyring`, then looked up for the image: the credentials the pull will try.
    pub(crate) fn lookup(&mut self, image: &str, pod: &Pod) -> Vec<(String, AuthConfig)> {
        let answer = self.provide(image, pod);
        keyring_lookup(&answer, image)
    }
}

// ---------------------------------------------------------------------------------------------
// Google stand-ins for the pod's identity.

/// STS that federates exactly `pod_token` for `audience` into `ya29.federated-pod`; anything
/// else is refused with `invalid_grant`, whose description quotes the subject token it got
/// (whole, and cut short as an excerpt would cut it), to prove the provider never repeats it.
pub(crate) fn pod_sts(pod_token: &'static str, audience: &'static str) -> Server {
    Server::start(move |req| {
        let form = req.form();
        let f = |k: &str| form.get(k).cloned().unwrap_or_default();
        if f("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange"
            && f("subject_token") == pod_token
            && f("subject_token_type") == "urn:ietf:params:oauth:token-type:jwt"
            && f("audience") == audience
            && f("scope") == "https://www.googleapis.com/auth/cloud-platform"
        {
            Reply::json(
                200,
                serde_json::json!({"access_token": "ya29.federated-pod", "expires_in": 3600, "token_type": "Bearer"}),
            )
        } else {
            Reply::json(
                400,
                serde_json::json!({"error": "invalid_grant", "error_description": format!("bad subject {}", f("subject_token"))}),
            )
        }
    })
}

/// IAM Credentials: impersonates `gsa` for the federated pod token.
pub(crate) fn pod_iam(gsa: &'static str) -> Server {
    Server::start(move |req| {
        let path = format!("/v1/projects/-/serviceAccounts/{gsa}:generateAccessToken");
        if req.path() == path && req.header("authorization") == Some("Bearer ya29.federated-pod") {
            Reply::json(
                200,
                serde_json::json!({"accessToken": "ya29.impersonated-gsa", "expireTime": "2126-01-01T00:00:00Z"}),
            )
        } else {
            Reply::json(
                403,
                serde_json::json!({"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}}),
            )
        }
    })
}
