//! The `identities` setting: which Google identity serves which registry address.
//!
//! An ordered list of rules in the config file. The first rule whose `match` covers an address
//! chooses the identity; an address no rule covers uses the token sources in order
//! (`token_sources`), as without rules. Each rule is parsed and checked on its own: a bad rule
//! is reported (in the settings' problems, which stderr, `config` and `doctor` show) and
//! skipped, and the others still apply. The patterns themselves belong to the host policy
//! ([`hosts::parse_pattern`]), which refuses any that would name a host it does not serve.
//!
//! This module only reads and matches: it touches no file and no network. `config`, `doctor`
//! and the kubelet provider check every rule ([`parse`]); the cached `get` skims the rules'
//! text for their patterns and checks only the rules that cover its address ([`choose`]).

use std::path::PathBuf;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::SourceKind;
use crate::hosts::{self, ExtraHost, Pattern, Registry};

/// The OAuth scope of registry tokens (accepted by Container Registry and Artifact Registry).
pub(crate) const SCOPE_CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Pulls only: Artifact Registry accepts it for reads and refuses uploads.
pub(crate) const SCOPE_READ_ONLY: &str = "https://www.googleapis.com/auth/cloud-platform.read-only";
/// Where a scope written without a URL (`cloud-platform.read-only`) lives.
const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";

/// One valid rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    /// The rule's `name`, or `#N` for the N-th rule in the list (from 1).
    pub(crate) label: String,
    pub(crate) patterns: Vec<Pattern>,
    pub(crate) source: RuleSource,
    /// The OAuth scopes, space-separated as they are sent; `None`: the caller's default
    /// (cloud-platform, or `kubelet_scopes` in the kubelet provider).
    pub(crate) scope: Option<String>,
    /// Sign a JWT with the service-account key instead of asking a token endpoint.
    pub(crate) self_signed_jwt: bool,
}

/// Where a rule's token comes from: exactly one per rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RuleSource {
    /// `credentials_file`: any credentials file the `adc` source reads.
    CredentialsFile(PathBuf),
    /// `source`: one of the token sources, as `token_sources` names them.
    Source(SourceKind),
    /// `gcloud_configuration`: gcloud run with that named configuration.
    GcloudConfiguration(String),
    /// `impersonate_service_account`.
    Impersonate(Impersonation),
}

/// A service account impersonated with the token of a base identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Impersonation {
    pub(crate) service_account: String,
    /// `projects/-/serviceAccounts/EMAIL`, in the order of the chain.
    pub(crate) delegates: Vec<String>,
    /// The IAM Credentials API (`iam_endpoint`; `None`: Google's).
    pub(crate) endpoint: Option<String>,
    /// `via`: the rule whose source gives the base token; `None`: the token sources in order.
    pub(crate) via: Option<Via>,
}

/// The rule an impersonation is made over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Via {
    pub(crate) name: String,
    pub(crate) rule: Box<Rule>,
}

impl Rule {
    /// Whether this rule covers `registry` (with the repository `path` a caller passed).
    pub(crate) fn matches(&self, registry: &Registry, path: Option<&str>) -> bool {
        self.patterns.iter().any(|p| p.matches(registry, path))
    }

    /// The source in words, for `config`, `doctor` and messages.
    pub(crate) fn describe(&self) -> String {
        let mut text = match &self.source {
            RuleSource::CredentialsFile(path) => format!("credentials_file {}", path.display()),
            RuleSource::Source(kind) => format!("source {}", kind.name()),
            RuleSource::GcloudConfiguration(name) => format!("gcloud configuration {name}"),
            RuleSource::Impersonate(imp) => {
                let mut t = format!("impersonate {}", imp.service_account);
                if !imp.delegates.is_empty() {
                    t.push_str(&format!(" (delegates {})", imp.delegates.join(", ")));
                }
                match &imp.via {
                    Some(via) => t.push_str(&format!(" over rule {}", via.name)),
                    None => t.push_str(" over the token sources"),
                }
                t
            }
        };
        if self.self_signed_jwt {
            text.push_str(", self-signed JWT");
        }
        if let Some(scope) = &self.scope {
            text.push_str(&format!(", scopes {}", scope.replace(' ', ",")));
        }
        text
    }

    /// Everything that selects this rule's identity, as one string (for its lock's name).
    pub(crate) fn identity(&self) -> String {
        format!(
            "{:?}|jwt={}|scope={}",
            self.source,
            self.self_signed_jwt,
            self.scope.as_deref().unwrap_or("")
        )
    }

    fn is_impersonation(&self) -> bool {
        matches!(self.source, RuleSource::Impersonate(_))
    }

    /// The patterns as written back (`gcr.io, *.gcr.io`), or a note when there are none.
    pub(crate) fn patterns_text(&self) -> String {
        if self.patterns.is_empty() {
            return "(no addresses: a base for impersonation)".to_owned();
        }
        self.patterns
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The rule that chooses the identity for `registry`: the first that covers it.
pub(crate) fn select<'r>(
    rules: &'r [Rule],
    registry: &Registry,
    path: Option<&str>,
) -> Option<&'r Rule> {
    rules.iter().find(|r| r.matches(registry, path))
}

/// Whether some rule tells repositories of `registry` apart by path, so that one identity's
/// answer for this host must not be reused for another repository.
pub(crate) fn splits_by_path(rules: &[Rule], registry: &Registry) -> bool {
    rules
        .iter()
        .flat_map(|r| &r.patterns)
        .any(|p| p.path().is_some() && p.matches_host(registry))
}

/// The Google registry hosts among `hosts` (docker's `credHelpers` keys, say) grouped by the
/// rule that serves them, in the order of the rules; the hosts no rule covers come last, with
/// `None` (the token sources in order). Groups without hosts are left out.
pub(crate) fn group_hosts<'r>(
    rules: &'r [Rule],
    hosts: &[String],
    declared: &[ExtraHost],
) -> Vec<(Option<&'r Rule>, Vec<String>)> {
    let mut groups: Vec<(Option<&Rule>, Vec<String>)> = rules
        .iter()
        .map(Some)
        .chain([None])
        .map(|r| (r, Vec::new()))
        .collect();
    for host in hosts {
        let Some(registry) = hosts::normalise(host)
            .filter(|r| hosts::classify(r, declared) == hosts::HostClass::Google)
        else {
            continue;
        };
        let place = select(rules, &registry, hosts::path_of(host))
            .and_then(|rule| rules.iter().position(|r| std::ptr::eq(r, rule)))
            .unwrap_or(rules.len());
        groups[place].1.push(host.clone());
    }
    groups.retain(|(_, hosts)| !hosts.is_empty());
    groups
}

/// The `identities` rules as written, read loosely from the config file's text (strings
/// borrowed from it) and not yet checked; or what the value is instead of a list.
pub(crate) type Listed<'a> = Result<Vec<Loose<'a>>, &'static str>;

/// A JSON value read loosely, as the rules' checks need it: strings (borrowed from the config
/// file's text unless they hold escapes), booleans and the structure. Checking a rule can then
/// say exactly what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Loose<'a> {
    Text(Cow<'a, str>),
    Bool(bool),
    Number,
    Null,
    List(Vec<Loose<'a>>),
    Object(Vec<(Cow<'a, str>, Loose<'a>)>),
}

/// The keys a rule may have.
const KEYS: [&str; 11] = [
    "name",
    "match",
    "credentials_file",
    "impersonate_service_account",
    "delegates",
    "via",
    "iam_endpoint",
    "gcloud_configuration",
    "source",
    "scopes",
    "self_signed_jwt",
];

/// A string key, borrowed from the file where it has no escapes.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Loose<'de>, E> {
                Ok(Loose::Bool(b))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Loose<'de>, E> {
                Ok(Loose::Number)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Loose<'de>, E> {
                Ok(Loose::Number)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Loose<'de>, E> {
                Ok(Loose::Number)
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Loose<'de>, E> {
                Ok(Loose::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Loose<'de>, E> {
                Ok(Loose::Text(Cow::Owned(s.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Loose<'de>, E> {
                Ok(Loose::Null)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Loose<'de>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Loose::List(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Loose<'de>, A::Error> {
                let mut entries = Vec::new();
                while let Some(Key(key)) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Loose::Object(entries))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The rules in `raw` (the `identities` value as the config file holds it), read loosely in
/// one pass over its text, or what the value is instead of a list.
pub(crate) fn listed(raw: &RawValue) -> Listed<'_> {
    match serde_json::from_str(raw.get()) {
        Ok(Loose::List(rules)) => Ok(rules),
        Ok(other) => Err(other.kind()),
        // A raw value is valid JSON; nothing else can fail here.
        Err(_) => Err("unreadable"),
    }
}

impl Loose<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Loose::Text(_) => "a string",
            Loose::Bool(_) => "a boolean",
            Loose::Number => "a number",
            Loose::Null => "null",
            Loose::List(_) => "a list",
            Loose::Object(_) => "an object",
        }
    }

    /// A rule's value of `key`, if given (and not null).
    fn get(&self, key: &str) -> Option<&Loose<'_>> {
        match self {
            Loose::Object(keys) => keys
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .filter(|v| !matches!(v, Loose::Null)),
            _ => None,
        }
    }

    /// A rule's `name` when it is a string.
    fn name(&self) -> Option<&str> {
        match self.get("name") {
            Some(Loose::Text(name)) => Some(name.as_ref()),
            _ => None,
        }
    }

    /// A rule's `match` patterns as written (a list, or a comma-separated string); those that
    /// are no string are left out here and refused when the rule is checked.
    fn patterns(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self.get("match") {
            Some(Loose::Text(s)) => (Some(s.as_ref()), None),
            Some(Loose::List(items)) => (None, Some(items)),
            _ => (None, None),
        };
        one.into_iter()
            .flat_map(hosts::split_list)
            .chain(many.into_iter().flatten().filter_map(|item| match item {
                Loose::Text(s) => Some(s.as_ref()),
                _ => None,
            }))
    }
}

/// The typed keys of a rule, once each key's type is checked.
struct RawRule {
    name: Option<String>,
    patterns: Vec<String>,
    credentials_file: Option<String>,
    impersonate_service_account: Option<String>,
    delegates: Option<Vec<String>>,
    via: Option<String>,
    iam_endpoint: Option<String>,
    gcloud_configuration: Option<String>,
    source: Option<String>,
    scopes: Option<Vec<String>>,
    self_signed_jwt: bool,
}

impl RawRule {
    /// Each key of `written` with the type it must have; the first problem in words.
    fn check(written: &Loose<'_>) -> Result<RawRule, String> {
        let Loose::Object(keys) = written else {
            return Err(format!(
                "a rule is an object with `match` and a source, not {}",
                written.kind()
            ));
        };
        for (i, (key, _)) in keys.iter().enumerate() {
            if !KEYS.contains(&key.as_ref()) {
                return Err(format!(
                    "unknown key `{key}` (a rule has {})",
                    KEYS.join(", ")
                ));
            }
            if keys[..i].iter().any(|(k, _)| k == key) {
                return Err(format!("key `{key}` is given twice"));
            }
        }
        let text = |key: &str| match written.get(key) {
            None => Ok(None),
            Some(Loose::Text(s)) => Ok(Some(s.to_string())),
            Some(other) => Err(format!("`{key}` must be a string, not {}", other.kind())),
        };
        let list = |key: &str| match written.get(key) {
            None => Ok(None),
            Some(Loose::Text(s)) => Ok(Some(hosts::split_list(s).map(str::to_owned).collect())),
            Some(Loose::List(items)) => items
                .iter()
                .map(|i| match i {
                    Loose::Text(s) => Ok(s.trim().to_owned()),
                    _ => Err(format!("`{key}` must be a list of strings")),
                })
                .filter(|s| !s.as_ref().is_ok_and(String::is_empty))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(format!(
                "`{key}` must be a list of strings or a comma-separated string, not {}",
                other.kind()
            )),
        };
        let self_signed_jwt = match written.get("self_signed_jwt") {
            None => false,
            Some(Loose::Bool(b)) => *b,
            Some(other) => {
                return Err(format!(
                    "`self_signed_jwt` must be true or false, not {}",
                    other.kind()
                ));
            }
        };
        Ok(RawRule {
            name: text("name")?,
            patterns: list("match")?.unwrap_or_default(),
            credentials_file: text("credentials_file")?,
            impersonate_service_account: text("impersonate_service_account")?,
            delegates: list("delegates")?,
            via: text("via")?,
            iam_endpoint: text("iam_endpoint")?,
            gcloud_configuration: text("gcloud_configuration")?,
            source: text("source")?,
            scopes: list("scopes")?,
            self_signed_jwt,
        })
    }
}

/// The `identities` rules read in full: the valid ones in order, and one line per bad one
/// (`identities #3 (name): what is wrong; the rule is skipped`).
#[derive(Debug, Default)]
pub(crate) struct Rules {
    pub(crate) valid: Vec<Rule>,
    pub(crate) problems: Vec<String>,
}

fn not_a_list(kind: &str) -> String {
    format!("identities: must be a list of rules (JSON objects), not {kind}; ignored")
}

/// Checks every rule (for `config`, `doctor`, the kubelet provider).
pub(crate) fn parse(raw: &RawValue, declared: &[ExtraHost]) -> Rules {
    let listed = listed(raw);
    let written = match &listed {
        Ok(written) => written,
        Err(kind) => {
            return Rules {
                valid: Vec::new(),
                problems: vec![not_a_list(kind)],
            };
        }
    };
    let mut rules = Rules::default();
    for i in 0..written.len() {
        match full(&written[..], i, declared) {
            Ok(rule) => rules.valid.push(rule),
            Err(why) => rules.problems.push(skipped(&written[..], i, &why)),
        }
    }
    rules
}

/// The rule that chooses the identity for an address: the first rule that covers it and is
/// valid. Only the rules whose patterns cover the address are read and checked (and the rules
/// they impersonate over), so the cached `get` pays for a skim over the rules' text and a
/// comparison per pattern, not for reading every rule; `config` and `doctor` check them all.
/// The problems are those of the rules checked.
pub(crate) fn choose(
    raw: &RawValue,
    declared: &[ExtraHost],
    registry: &Registry,
    path: Option<&str>,
) -> (Option<Rule>, Vec<String>) {
    match skim(raw.get()) {
        Some(skimmed) => choose_in(&skimmed[..], declared, registry, path),
        None => match &listed(raw) {
            Ok(written) => choose_in(&written[..], declared, registry, path),
            Err(kind) => (None, vec![not_a_list(kind)]),
        },
    }
}

fn choose_in<'a>(
    list: &(impl RuleList<'a> + ?Sized),
    declared: &[ExtraHost],
    registry: &Registry,
    path: Option<&str>,
) -> (Option<Rule>, Vec<String>) {
    let mut problems = Vec::new();
    for i in 0..list.count() {
        if !list.covers(i, registry, path) {
            continue;
        }
        match full(list, i, declared) {
            Ok(rule) if rule.matches(registry, path) => return (Some(rule), problems),
            Ok(_) => {}
            Err(why) => problems.push(skipped(list, i, &why)),
        }
    }
    (None, problems)
}

/// The rules as [`full`] reads them: each rule, its name, and whether its patterns as written
/// cover an address.
trait RuleList<'a> {
    fn count(&self) -> usize;
    fn rule(&self, i: usize) -> Cow<'_, Loose<'a>>;
    fn name(&self, i: usize) -> Option<Cow<'_, str>>;
    fn covers(&self, i: usize, registry: &Registry, path: Option<&str>) -> bool;
}

/// Every rule read loosely.
impl<'a> RuleList<'a> for [Loose<'a>] {
    fn count(&self) -> usize {
        self.len()
    }

    fn rule(&self, i: usize) -> Cow<'_, Loose<'a>> {
        Cow::Borrowed(&self[i])
    }

    fn name(&self, i: usize) -> Option<Cow<'_, str>> {
        self[i].name().map(Cow::Borrowed)
    }

    fn covers(&self, i: usize, registry: &Registry, path: Option<&str>) -> bool {
        self[i]
            .patterns()
            .any(|p| hosts::pattern_covers(p, registry, path))
    }
}

/// The rules skimmed: a rule is read only when it is needed.
impl<'a> RuleList<'a> for [Skimmed<'a>] {
    fn count(&self) -> usize {
        self.len()
    }

    fn rule(&self, i: usize) -> Cow<'_, Loose<'a>> {
        // A skimmed rule is an element of a list that serde read as JSON: it reads again.
        Cow::Owned(serde_json::from_str(self[i].text).unwrap_or(Loose::Null))
    }

    fn name(&self, i: usize) -> Option<Cow<'_, str>> {
        let rule = &self[i];
        if rule.plain {
            return rule.name.map(Cow::Borrowed);
        }
        match self.rule(i) {
            Cow::Owned(loose) => loose.name().map(|n| Cow::Owned(n.to_owned())),
            Cow::Borrowed(_) => None,
        }
    }

    fn covers(&self, i: usize, registry: &Registry, path: Option<&str>) -> bool {
        let rule = &self[i];
        if !rule.plain {
            return self
                .rule(i)
                .patterns()
                .any(|p| hosts::pattern_covers(p, registry, path));
        }
        let Some(value) = rule.patterns else {
            return false;
        };
        let covers = |p: &str| hosts::pattern_covers(p, registry, path);
        if let Some(one) = plain_string(value) {
            return hosts::split_list(one).any(covers);
        }
        match plain_list_any(value, covers) {
            Some(any) => any,
            None => self
                .rule(i)
                .patterns()
                .any(|p| hosts::pattern_covers(p, registry, path)),
        }
    }
}

fn skipped<'a>(list: &(impl RuleList<'a> + ?Sized), i: usize, why: &str) -> String {
    let label = match list.name(i) {
        Some(n) => format!("#{} ({n})", i + 1),
        None => format!("#{}", i + 1),
    };
    format!("identities {label}: {why}; the rule is skipped")
}

/// Rule `i` checked: valid on its own, its name not used by an earlier rule, and the rule it
/// impersonates over (`via`) a valid rule of that name that does not impersonate itself.
fn full<'a>(
    list: &(impl RuleList<'a> + ?Sized),
    i: usize,
    declared: &[ExtraHost],
) -> Result<Rule, String> {
    let (mut rule, via) = parse_rule(&list.rule(i), i, declared, &earlier_names(list, i))?;
    if let (RuleSource::Impersonate(imp), Some(name)) = (&mut rule.source, via) {
        let not_valid = || format!("via names {name:?}, which is not a valid rule's name");
        let j = (0..list.count())
            .find(|&j| list.name(j).as_deref() == Some(name.as_str()))
            .ok_or_else(not_valid)?;
        let (base, _) = parse_rule(&list.rule(j), j, declared, &earlier_names(list, j))
            .map_err(|_| not_valid())?;
        if base.is_impersonation() {
            return Err(format!(
                "via names rule {name:?}, which impersonates too (one level only)"
            ));
        }
        imp.via = Some(Via {
            name,
            rule: Box::new(base),
        });
    }
    Ok(rule)
}

fn earlier_names<'l, 'a>(list: &'l (impl RuleList<'a> + ?Sized), i: usize) -> Vec<Cow<'l, str>> {
    (0..i).filter_map(|j| list.name(j)).collect()
}

/// One rule as [`skim`] found it.
struct Skimmed<'a> {
    /// The rule's text: an element of the list.
    text: &'a str,
    /// Whether `name` and `patterns` say all there is: no escapes in the rule's keys or in its
    /// name, `name` at most once and a string, `match` at most once. Otherwise (or when the
    /// `match` value is not a string or a list of strings without escapes) the rule is read
    /// with serde when it matters.
    plain: bool,
    name: Option<&'a str>,
    /// The `match` value's text.
    patterns: Option<&'a str>,
}

/// A skim over the rules' text (a JSON list that serde has already read as JSON) that finds
/// each rule's text, `name` and `match` without building anything, for the cached `get`.
/// Whatever it does not read plainly (an escape, a repeated key, another type) it leaves to
/// serde, rule by rule ([`Skimmed::plain`]); so it never misses a rule that covers an address
/// (property-tested against reading every rule). `None` for anything but a list: serde
/// decides then.
fn skim(text: &str) -> Option<Vec<Skimmed<'_>>> {
    let b = text.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = ws(b, i + 1);
    let mut rules = Vec::new();
    if b.get(i) == Some(&b']') {
        return Some(rules);
    }
    loop {
        let start = i;
        let mut rule = Skimmed {
            text: "",
            plain: true,
            name: None,
            patterns: None,
        };
        if b.get(i) == Some(&b'{') {
            i = ws(b, i + 1);
            while b.get(i) != Some(&b'}') {
                let key_end = string_end(b, i)?;
                let key = &text[i + 1..key_end - 1];
                i = ws(b, key_end);
                if b.get(i) != Some(&b':') {
                    return None;
                }
                let value_start = ws(b, i + 1);
                i = value_end(b, value_start)?;
                let value = &text[value_start..i];
                let escaped = key.contains('\\');
                if escaped || (key == "name" && rule.name.is_some()) {
                    rule.plain = false;
                } else if key == "name" {
                    rule.name = plain_string(value);
                    rule.plain &= rule.name.is_some();
                } else if key == "match" {
                    rule.plain &= rule.patterns.is_none();
                    rule.patterns = Some(value);
                }
                i = ws(b, i);
                match b.get(i) {
                    Some(b',') => i = ws(b, i + 1),
                    Some(b'}') => {}
                    _ => return None,
                }
            }
            i += 1;
        } else {
            // Not an object: it covers nothing (checking it says what it is).
            i = value_end(b, i)?;
        }
        rule.text = &text[start..i];
        rules.push(rule);
        i = ws(b, i);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b']') => return Some(rules),
            _ => return None,
        }
    }
}

/// Past the JSON whitespace at `i`.
fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Past the string that starts at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        let at = j + b.get(j..)?.iter().position(|c| *c == b'"' || *c == b'\\')?;
        if b[at] == b'"' {
            return Some(at + 1);
        }
        j = at + 2;
    }
}

/// Past the JSON value that starts at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let end = (i..b.len())
                .find(|&j| matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(b.len());
            (end > i).then_some(end)
        }
    }
}

/// The content of a JSON string without escapes.
fn plain_string(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// Whether `f` holds for a string of `value`, a list of strings without escapes; `None` when
/// `value` is anything else.
fn plain_list_any(value: &str, mut f: impl FnMut(&str) -> bool) -> Option<bool> {
    let b = value.as_bytes();
    if b.first() != Some(&b'[') {
        return None;
    }
    let mut i = ws(b, 1);
    if b.get(i) == Some(&b']') {
        return (i + 1 == b.len()).then_some(false);
    }
    let mut any = false;
    loop {
        let end = string_end(b, i)?;
        let item = &value[i + 1..end - 1];
        if item.contains('\\') {
            return None;
        }
        any = any || f(item);
        i = ws(b, end);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b']') => return (i + 1 == b.len()).then_some(any),
            _ => return None,
        }
    }
}

/// One rule on its own, and the name of the rule it impersonates over (resolved later).
fn parse_rule(
    written: &Loose<'_>,
    i: usize,
    declared: &[ExtraHost],
    earlier_names: &[Cow<'_, str>],
) -> Result<(Rule, Option<String>), String> {
    // A rule holds no secret (paths, e-mails, host names), so the messages may quote it.
    let raw = RawRule::check(written)?;
    let label = match &raw.name {
        Some(name) => {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !ok {
                return Err(format!(
                    "name {name:?}: use letters, digits, `-`, `_` and `.`"
                ));
            }
            if earlier_names.iter().any(|n| n == name) {
                return Err(format!("name {name:?} is used by an earlier rule"));
            }
            name.clone()
        }
        None => format!("#{}", i + 1),
    };
    let patterns = raw
        .patterns
        .iter()
        .map(|p| hosts::parse_pattern(p, declared))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("match {e}"))?;
    if patterns.is_empty() && raw.name.is_none() {
        return Err(
            "no `match` patterns (only a named rule may have none, as a base for `via`)".to_owned(),
        );
    }
    let chosen = [
        raw.credentials_file.is_some(),
        raw.impersonate_service_account.is_some(),
        raw.gcloud_configuration.is_some(),
        raw.source.is_some(),
    ]
    .iter()
    .filter(|c| **c)
    .count();
    if chosen != 1 {
        return Err(format!(
            "give exactly one of credentials_file, impersonate_service_account, \
             gcloud_configuration or source ({chosen} given)"
        ));
    }
    let impersonating = raw.impersonate_service_account.is_some();
    for (given, key) in [
        (raw.delegates.is_some(), "delegates"),
        (raw.via.is_some(), "via"),
        (raw.iam_endpoint.is_some(), "iam_endpoint"),
    ] {
        if given && !impersonating {
            return Err(format!("{key} belongs to impersonate_service_account"));
        }
    }
    let mut via = None;
    let source = if let Some(path) = raw.credentials_file {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(format!(
                "credentials_file {:?} must be an absolute path",
                path.display()
            ));
        }
        RuleSource::CredentialsFile(path)
    } else if let Some(name) = raw.source {
        let kind = SourceKind::parse(&name.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("source {name:?} is not adc, gcloud or metadata"))?;
        RuleSource::Source(kind)
    } else if let Some(name) = raw.gcloud_configuration {
        let ok = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(format!(
                "gcloud_configuration {name:?} is not a configuration name (lower-case letters, digits and `-`, starting with a letter)"
            ));
        }
        RuleSource::GcloudConfiguration(name)
    } else {
        let email = raw.impersonate_service_account.unwrap_or_default();
        if !hosts::is_service_account_email(&email) {
            return Err(format!(
                "impersonate_service_account {email:?} is not a service account e-mail (NAME@PROJECT.iam.gserviceaccount.com)"
            ));
        }
        let delegates = raw
            .delegates
            .iter()
            .flatten()
            .map(|d| delegate(d))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(endpoint) = &raw.iam_endpoint
            && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
        {
            return Err(format!("iam_endpoint {endpoint:?} is not an http(s) URL"));
        }
        via = raw.via;
        RuleSource::Impersonate(Impersonation {
            service_account: email,
            delegates,
            endpoint: raw.iam_endpoint,
            via: None,
        })
    };
    let key_file = matches!(
        source,
        RuleSource::CredentialsFile(_) | RuleSource::Source(SourceKind::Adc)
    );
    if raw.self_signed_jwt && !key_file {
        return Err(
            "self_signed_jwt needs a service-account key (credentials_file, or source adc)"
                .to_owned(),
        );
    }
    let scope = raw
        .scopes
        .as_ref()
        .map(|s| parse_scopes(&s.iter().map(String::as_str).collect::<Vec<_>>()))
        .transpose()?;
    let gcloud = matches!(
        source,
        RuleSource::GcloudConfiguration(_) | RuleSource::Source(SourceKind::Gcloud)
    );
    if scope.is_some() && gcloud {
        return Err("scopes cannot be chosen for gcloud's tokens (gcloud decides them)".to_owned());
    }
    Ok((
        Rule {
            label,
            patterns,
            source,
            scope,
            self_signed_jwt: raw.self_signed_jwt,
        },
        via,
    ))
}

/// A delegate as `generateAccessToken` takes it: `projects/-/serviceAccounts/EMAIL`, written
/// as that or as the e-mail alone.
fn delegate(text: &str) -> Result<String, String> {
    let email = text
        .strip_prefix("projects/-/serviceAccounts/")
        .unwrap_or(text);
    if hosts::is_service_account_email(email) {
        Ok(format!("projects/-/serviceAccounts/{email}"))
    } else {
        Err(format!("delegate {text:?} is not a service account e-mail"))
    }
}

/// OAuth scopes from a list: each a URL, or a name under `https://www.googleapis.com/auth/`
/// (`cloud-platform.read-only`). Returns them space-separated, as OAuth sends them.
pub(crate) fn parse_scopes(items: &[&str]) -> Result<String, String> {
    if items.is_empty() {
        return Err("scopes is empty".to_owned());
    }
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let scope = if item.starts_with("https://") {
            item.to_string()
        } else if !item.is_empty()
            && item
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            format!("{SCOPE_PREFIX}{item}")
        } else {
            return Err(format!(
                "scope {item:?} is neither an https URL nor a name such as cloud-platform.read-only"
            ));
        };
        if scope.contains(|c: char| c.is_whitespace() || c == ',' || c.is_control()) {
            return Err(format!("scope {item:?} holds a space or comma"));
        }
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    Ok(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The rules as the config file reader hands them over.
    fn raw(doc: &Value) -> Box<RawValue> {
        RawValue::from_string(doc.to_string()).unwrap()
    }

    fn rules(doc: Value) -> (Vec<Rule>, Vec<String>) {
        rules_with(doc, &[])
    }

    fn rules_with(doc: Value, declared: &[ExtraHost]) -> (Vec<Rule>, Vec<String>) {
        let Rules { valid, problems } = parse(&raw(&doc), declared);
        (valid, problems)
    }

    /// An absolute path to a key file on this OS (`/k.json` is relative on Windows).
    fn key(name: &str) -> String {
        std::env::temp_dir()
            .join(name)
            .to_string_lossy()
            .into_owned()
    }

    fn reg(s: &str) -> Registry {
        hosts::normalise(s).unwrap()
    }

    #[test]
    fn the_first_matching_rule_wins_and_unmatched_addresses_get_none() {
        let (rules, problems) = rules(serde_json::json!([
            {"match": ["us-docker.pkg.dev/team-a/*"], "credentials_file": key("a.json")},
            {"match": ["us-docker.pkg.dev", "*.gcr.io"], "credentials_file": key("b.json")},
            {"match": "gcr.io, europe-docker.pkg.dev", "source": "metadata"},
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        let pick = |host: &str, path: Option<&str>| {
            select(&rules, &reg(host), path).map(|r| r.label.as_str())
        };
        assert_eq!(pick("us-docker.pkg.dev", Some("/team-a/app")), Some("#1"));
        assert_eq!(pick("us-docker.pkg.dev", Some("/team-b/app")), Some("#2"));
        assert_eq!(pick("us-docker.pkg.dev", None), Some("#2"));
        assert_eq!(pick("eu.gcr.io", None), Some("#2"));
        assert_eq!(pick("gcr.io", None), Some("#3"));
        assert_eq!(pick("europe-docker.pkg.dev:443", None), Some("#3"));
        assert_eq!(pick("asia-docker.pkg.dev", None), None);
        assert!(splits_by_path(&rules, &reg("us-docker.pkg.dev")));
        assert!(!splits_by_path(&rules, &reg("gcr.io")));
    }

    #[test]
    fn each_source_is_read_with_its_options() {
        let (rules, problems) = rules(serde_json::json!([
            {"name": "ci-key", "match": ["gcr.io"], "credentials_file": key("k.json"), "self_signed_jwt": true, "scopes": ["cloud-platform.read-only"]},
            {"match": ["us.gcr.io"], "gcloud_configuration": "work"},
            {"match": ["eu.gcr.io"], "source": "GCLOUD"},
            {"match": ["asia.gcr.io"], "impersonate_service_account": "pusher@p.iam.gserviceaccount.com",
             "delegates": ["mid@p.iam.gserviceaccount.com"], "via": "ci-key", "iam_endpoint": "https://iamcredentials.example.com"},
            {"match": ["us-docker.pkg.dev"], "impersonate_service_account": "puller@p.iam.gserviceaccount.com"},
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(rules[0].label, "ci-key");
        assert!(rules[0].self_signed_jwt);
        assert_eq!(rules[0].scope.as_deref(), Some(SCOPE_READ_ONLY));
        assert_eq!(
            rules[1].source,
            RuleSource::GcloudConfiguration("work".into())
        );
        assert_eq!(rules[2].source, RuleSource::Source(SourceKind::Gcloud));
        match &rules[3].source {
            RuleSource::Impersonate(imp) => {
                assert_eq!(
                    imp.delegates,
                    ["projects/-/serviceAccounts/mid@p.iam.gserviceaccount.com"]
                );
                assert_eq!(
                    imp.via,
                    Some(Via {
                        name: "ci-key".into(),
                        rule: Box::new(rules[0].clone())
                    })
                );
                assert_eq!(
                    imp.endpoint.as_deref(),
                    Some("https://iamcredentials.example.com")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&rules[4].source, RuleSource::Impersonate(imp) if imp.via.is_none()));
        assert_eq!(
            rules[3].describe(),
            "impersonate pusher@p.iam.gserviceaccount.com (delegates projects/-/serviceAccounts/mid@p.iam.gserviceaccount.com) over rule ci-key"
        );
    }

    #[test]
    fn a_bad_rule_is_reported_and_skipped_without_breaking_the_others() {
        let cases = [
            (
                serde_json::json!({"match": ["gcr.io.evil.com"], "source": "adc"}),
                "a rule cannot add hosts",
            ),
            (
                serde_json::json!({"match": ["*"], "source": "adc"}),
                "must stay inside",
            ),
            (serde_json::json!({"match": ["gcr.io"]}), "exactly one of"),
            (
                serde_json::json!({"match": ["gcr.io"], "source": "adc", "credentials_file": "/k"}),
                "(2 given)",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "source": "keychain"}),
                "not adc, gcloud or metadata",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "credential_file": "/k"}),
                "unknown key `credential_file`",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "credentials_file": "k.json"}),
                "absolute path",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "gcloud_configuration": "Work Stuff"}),
                "not a configuration name",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "impersonate_service_account": "sa@evil.com"}),
                "not a service account",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "impersonate_service_account": "a@p.iam.gserviceaccount.com", "delegates": ["x/y"]}),
                "delegate \"x/y\"",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "impersonate_service_account": "a@p.iam.gserviceaccount.com", "via": "nobody"}),
                "not a valid rule's name",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "source": "adc", "delegates": ["a@p.iam.gserviceaccount.com"]}),
                "delegates belongs to",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "source": "metadata", "self_signed_jwt": true}),
                "needs a service-account key",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "source": "gcloud", "scopes": ["cloud-platform"]}),
                "gcloud decides",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "source": "adc", "scopes": ["a b"]}),
                "neither an https URL",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "source": "adc", "scopes": []}),
                "scopes is empty",
            ),
            (serde_json::json!({"source": "adc"}), "no `match` patterns"),
            (
                serde_json::json!({"name": "a b", "match": ["gcr.io"], "source": "adc"}),
                "name \"a b\"",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "source": "adc", "self_signed_jwt": "yes"}),
                "`self_signed_jwt` must be true or false, not a string",
            ),
            (serde_json::json!("gcr.io=adc"), "not a string"),
        ];
        for (bad, needle) in cases {
            let (rules, problems) = rules(serde_json::json!([
                {"match": ["us.gcr.io"], "source": "adc"},
                bad.clone(),
                {"match": ["eu.gcr.io"], "source": "metadata"},
            ]));
            assert_eq!(rules.len(), 2, "{bad}: {problems:?}");
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(
                problems[0].contains(needle) && problems[0].starts_with("identities #2"),
                "{bad}: expected {needle:?} in {}",
                problems[0]
            );
            assert_eq!(select(&rules, &reg("eu.gcr.io"), None).unwrap().label, "#3");
        }
        let (rules, problems) = rules(serde_json::json!({"match": "gcr.io"}));
        assert!(rules.is_empty() && problems[0].contains("must be a list"));
        let (chosen, problems) = choose(&raw(&serde_json::json!("x")), &[], &reg("gcr.io"), None);
        assert!(chosen.is_none() && problems[0].contains("must be a list"));
    }

    #[test]
    fn impersonation_is_made_over_a_named_rule_that_does_not_impersonate() {
        let (rules, problems) = rules(serde_json::json!([
            {"name": "broken", "match": ["x.example"], "source": "adc"},
            {"name": "imp", "match": ["us.gcr.io"], "impersonate_service_account": "a@p.iam.gserviceaccount.com"},
            {"match": ["eu.gcr.io"], "impersonate_service_account": "b@p.iam.gserviceaccount.com", "via": "imp"},
            {"match": ["gcr.io"], "impersonate_service_account": "c@p.iam.gserviceaccount.com", "via": "broken"},
            {"name": "base", "credentials_file": key("k.json")},
            {"name": "base", "match": ["asia.gcr.io"], "source": "adc"},
            {"match": ["asia.gcr.io"], "impersonate_service_account": "d@p.iam.gserviceaccount.com", "via": "base"},
        ]));
        let labels: Vec<&str> = rules.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["imp", "base", "#7"], "{problems:?}");
        assert_eq!(problems.len(), 4, "{problems:?}");
        let said = |start: &str, needle: &str| {
            problems
                .iter()
                .any(|p| p.starts_with(start) && p.contains(needle))
        };
        assert!(said("identities #3:", "one level only"), "{problems:?}");
        assert!(
            said("identities #4:", "not a valid rule's name"),
            "{problems:?}"
        );
        assert!(
            said("identities #6 (base):", "used by an earlier rule"),
            "{problems:?}"
        );
        match &rules[2].source {
            RuleSource::Impersonate(imp) => {
                let via = imp.via.as_ref().unwrap();
                assert_eq!((via.name.as_str(), &*via.rule), ("base", &rules[1]));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            rules[1].patterns.is_empty(),
            "a base for impersonation only"
        );
        assert!(select(&rules, &reg("gcr.io"), None).is_none());
    }

    #[test]
    fn choosing_a_rule_reads_only_what_covers_the_address_and_agrees_with_reading_all() {
        let doc = serde_json::json!([
            {"match": ["*.io"], "source": "adc"},
            {"match": ["GCR.IO/Team-A/*"], "source": "metadata", "scopes": "cloud-platform.read-only"},
            {"match": "us-docker.pkg.dev, eu.gcr.io", "source": "adc", "credential_file": "/k"},
            {"match": ["us-docker.pkg.dev"], "impersonate_service_account": "a@p.iam.gserviceaccount.com", "via": "key"},
            {"name": "key", "match": ["gcr.io", "us-docker.pkg.dev/x/*"], "credentials_file": key("k.json")},
            {"match": [5], "source": "adc"},
            "not a rule",
        ]);
        let (all, problems) = rules(doc.clone());
        assert_eq!(problems.len(), 4, "{problems:?}");
        for (host, path) in [
            ("gcr.io", None),
            ("gcr.io", Some("/Team-A/app")),
            ("gcr.io", Some("/team-a/app")),
            ("us-docker.pkg.dev", None),
            ("us-docker.pkg.dev", Some("/x/y")),
            ("eu.gcr.io", None),
            ("asia.gcr.io", None),
        ] {
            let (chosen, problems) = choose(&raw(&doc), &[], &reg(host), path);
            assert_eq!(
                chosen.as_ref(),
                select(&all, &reg(host), path),
                "{host} {path:?}"
            );
            if host == "gcr.io" {
                // `*.io` covers gcr.io as written, so it is read in full and refused.
                assert!(
                    problems.iter().any(|p| p.starts_with("identities #1:")),
                    "{problems:?}"
                );
            }
            if host == "asia.gcr.io" {
                assert!(
                    problems.is_empty(),
                    "nothing covers it, nothing is read: {problems:?}"
                );
            }
        }
        let (chosen, _) = choose(&raw(&doc), &[], &reg("gcr.io"), Some("/Team-A/app"));
        assert_eq!(
            chosen.unwrap().label,
            "#2",
            "patterns' hosts ignore case, paths do not"
        );
        let (chosen, _) = choose(&raw(&doc), &[], &reg("us-docker.pkg.dev"), None);
        match chosen.map(|r| r.source) {
            Some(RuleSource::Impersonate(imp)) => assert_eq!(imp.via.unwrap().rule.label, "key"),
            other => panic!("{other:?}"),
        }
    }

    /// JSON text of a rule list: rules with these keys (some spelled with escapes, some
    /// repeated), values of every type, strings with and without escapes, and non-rules.
    fn rules_text() -> impl Strategy<Value = String> {
        let text = prop_oneof![
            Just("gcr.io"),
            Just("*.gcr.io"),
            Just("us-docker.pkg.dev/a/*"),
            Just("eu.gcr.io, gcr.io"),
            Just("gcr.io.evil.com"),
            Just("a"),
            Just("b"),
            Just("adc"),
            Just("metadata"),
            Just("/k.json"),
            Just("p@q.iam.gserviceaccount.com"),
        ];
        let string = (text, any::<bool>()).prop_map(|(t, escape)| {
            let t = if escape {
                t.replace('.', "\\u002e")
            } else {
                t.to_owned()
            };
            format!("\"{t}\"")
        });
        let value = prop_oneof![
            4 => string.clone(),
            2 => proptest::collection::vec(string.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
            1 => Just("5".to_owned()),
            1 => Just("null".to_owned()),
            1 => Just("{\"a\": [1, \"]\"]}".to_owned()),
            1 => Just("[\"gcr.io\", 7]".to_owned()),
            1 => Just("true".to_owned()),
        ];
        let key = prop_oneof![
            Just("name"),
            Just("match"),
            Just("match"),
            Just("source"),
            Just("credentials_file"),
            Just("impersonate_service_account"),
            Just("via"),
            Just("x"),
            Just("\\u006datch"),
            Just("na\\u006de"),
        ];
        let rule = prop_oneof![
            5 => proptest::collection::vec((key, value.clone()), 0..5).prop_map(|entries| {
                let body: Vec<String> = entries.iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
                format!("{{ {} }}", body.join(",\n"))
            }),
            1 => value,
        ];
        proptest::collection::vec(rule, 0..6).prop_map(|rules| format!("[ {} ]", rules.join(" , ")))
    }

    proptest::proptest! {
        /// The cached `get` skims the rules' text; it chooses what reading every rule chooses,
        /// and says the same about the rules it checks.
        #[test]
        fn skimming_chooses_what_reading_every_rule_chooses(text in rules_text()) {
            skimming_agrees(&text);
        }
    }

    fn skimming_agrees(text: &str) {
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        let skimmed = skim(raw.get());
        assert!(skimmed.is_some(), "{text}");
        let written = listed(&raw).unwrap();
        for (host, path) in [
            ("gcr.io", None),
            ("eu.gcr.io", None),
            ("us-docker.pkg.dev", Some("/a/x")),
            ("us.gcr.io", None),
        ] {
            let r = reg(host);
            let fast = choose_in(&skimmed.as_ref().unwrap()[..], &[], &r, path);
            let slow = choose_in(&written[..], &[], &r, path);
            assert_eq!(fast, slow, "{host} {text}");
        }
    }

    /// A case the property once shrank to: an escaped key (`match` written `\u006datch`)
    /// beside a list with a number in it.
    #[test]
    fn skimming_leaves_an_escaped_key_to_serde() {
        skimming_agrees(r#"[ { "\u006datch" : ["gcr.io", 7] } ]"#);
    }

    #[test]
    fn declared_registries_may_be_matched() {
        let declared = hosts::parse_host_list("ar-proxy.corp.example:8443").unwrap();
        let (rules, problems) = rules_with(
            serde_json::json!([{"match": ["ar-proxy.corp.example:8443/team/*"], "source": "adc"}]),
            &declared,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(rules[0].matches(&reg("ar-proxy.corp.example:8443"), Some("/team/x")));
        let (_, problems) = rules_with(
            serde_json::json!([{"match": ["ar-proxy.corp.example"], "source": "adc"}]),
            &declared,
        );
        assert!(problems[0].contains("give the port"), "{problems:?}");
    }

    #[test]
    fn docker_hosts_are_grouped_by_the_identity_that_serves_them() {
        let (rules, _) = rules(serde_json::json!([
            {"name": "eu", "match": ["europe-docker.pkg.dev", "eu.gcr.io"], "source": "adc"},
            {"name": "unused", "match": ["asia.gcr.io"], "source": "metadata"},
            {"name": "us", "match": ["*.gcr.io"], "source": "gcloud"},
        ]));
        let hosts: Vec<String> = [
            "gcr.io",
            "eu.gcr.io",
            "us.gcr.io",
            "europe-docker.pkg.dev",
            "quay.io",
            "b.gcr.io",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect();
        let groups: Vec<(Option<&str>, Vec<String>)> = group_hosts(&rules, &hosts, &[])
            .into_iter()
            .map(|(r, h)| (r.map(|r| r.label.as_str()), h))
            .collect();
        assert_eq!(
            groups,
            [
                (
                    Some("eu"),
                    vec!["eu.gcr.io".to_owned(), "europe-docker.pkg.dev".to_owned()]
                ),
                (Some("us"), vec!["us.gcr.io".to_owned()]),
                (None, vec!["gcr.io".to_owned()]),
            ]
        );
    }

    #[test]
    fn every_kind_of_mistyped_key_is_named() {
        for (rule, needle) in [
            (
                serde_json::json!({"match": 5, "source": "adc"}),
                "`match` must be a list of strings or a comma-separated string, not a number",
            ),
            (
                serde_json::json!({"match": ["gcr.io", 5], "source": "adc"}),
                "`match` must be a list of strings",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "source": ["adc"]}),
                "`source` must be a string, not a list",
            ),
            (
                serde_json::json!({"match": ["gcr.io"], "source": "adc", "name": {}}),
                "`name` must be a string, not an object",
            ),
            (serde_json::json!(["gcr.io"]), "not a list"),
        ] {
            let (valid, problems) = rules(serde_json::json!([rule.clone()]));
            assert!(valid.is_empty(), "{rule}");
            assert!(problems[0].contains(needle), "{rule}: {problems:?}");
        }
        let text = r#"[{"match": ["gcr.io"], "source": "adc", "source": "metadata"}]"#;
        let Rules { problems, .. } = parse(&RawValue::from_string(text.to_owned()).unwrap(), &[]);
        assert!(
            problems[0].contains("key `source` is given twice"),
            "{problems:?}"
        );
        let (valid, problems) =
            rules(serde_json::json!([{"match": ["gcr.io"], "source": "adc", "scopes": null}]));
        assert_eq!((valid.len(), problems.len()), (1, 0), "null is absent");
    }

    #[test]
    fn scopes_are_urls_or_names_under_googleapis() {
        assert_eq!(
            parse_scopes(&[
                "cloud-platform.read-only",
                "https://www.googleapis.com/auth/devstorage.read_only"
            ])
            .unwrap(),
            "https://www.googleapis.com/auth/cloud-platform.read-only https://www.googleapis.com/auth/devstorage.read_only"
        );
        assert_eq!(
            parse_scopes(&["cloud-platform", "cloud-platform"]).unwrap(),
            SCOPE_CLOUD_PLATFORM
        );
        for bad in ["", "a b", "http://x", "https://x y", "https://x,y", "a/b"] {
            assert!(parse_scopes(&[bad]).is_err(), "{bad}");
        }
    }
}
