//! The layout is the architecture (ARCHITECTURE.md): modules form layers and every import
//! points down, sibling modules inside a folder do not import each other in a cycle, and the
//! folders that keep their parts private (`token`) are entered only through their `mod.rs`.
//! These tests read `src/` and enforce all three, so a sideways import fails the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may import only from layers below its own.
const LAYERS: &[&[&str]] = &[
    &["util"],
    &["hosts"],
    &["settings"],
    &["net"],
    &["token"],
    &["helper"],
    &["setup", "kubelet"],
    &["cli"],
];

fn layer_of(top: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&top))
        .unwrap_or_else(|| {
            panic!("src/{top}: add it to a layer in tests/architecture.rs and ARCHITECTURE.md")
        })
}

/// Folders whose files are private: the rest of the crate uses only what their `mod.rs`
/// defines or re-exports.
const CLOSED: &[&str] = &["token"];

/// A source file and its module path (`net/http.rs` → `["net", "http"]`).
struct Source {
    path: PathBuf,
    module: Vec<String>,
    /// The code outside `#[cfg(test)]` modules and comments.
    code: String,
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    collect(&src, &src, &mut out);
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<Source>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, out);
            continue;
        }
        let rel = path.strip_prefix(root).unwrap().with_extension("");
        let mut module: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        if module == ["lib"] || module == ["main"] {
            module.clear();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let before_tests = text.split("#[cfg(test)]").next().unwrap();
        let before_tests = before_tests.split("#[cfg(all(test").next().unwrap();
        let code = before_tests
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        out.push(Source { path, module, code });
    }
}

/// The modules a file names, as absolute paths (`crate::net::http`, `super::cache`); a
/// `use` group names each of its paths (`crate::token::{self, cache}` names `token::cache`).
fn references(s: &Source) -> BTreeSet<Vec<String>> {
    let mut refs = BTreeSet::new();
    let code = expand_use_groups(&s.code);
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("crate::") || w.starts_with("super::"))
        .collect();
    for word in words {
        let mut parts: Vec<String> = word
            .split("::")
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        let base: Vec<String> = if parts[0] == "crate" {
            parts.remove(0);
            Vec::new()
        } else {
            parts.remove(0);
            // `super` of `net/http.rs` is `net`; of `net/mod.rs` the crate root.
            let mut m = s.module.clone();
            m.pop();
            m
        };
        let mut target = base;
        target.extend(parts.into_iter().take(2));
        if !target.is_empty() {
            refs.insert(target);
        }
    }
    refs
}

/// `crate::a::{b, c::d}` written out as `crate::a::b crate::a::c::d`, one level of braces deep
/// (rustfmt's groups nest rarely, and a nested group still names its first level).
fn expand_use_groups(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(open) = rest.find("::{") {
        let start = rest[..open]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let prefix = &rest[start..open];
        let Some(len) = rest[open + 3..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        for item in rest[open + 3..open + 3 + len].split([',', '{']) {
            let item = item.trim().split(" as ").next().unwrap_or_default();
            if item.is_empty() || item == "self" {
                out.push_str(&format!(" {prefix} "));
            } else {
                out.push_str(&format!(" {prefix}::{item} "));
            }
        }
        rest = &rest[open + 3 + len + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_import_points_down_the_layers() {
    let mut wrong = Vec::new();
    for s in sources() {
        let Some(top) = s.module.first() else {
            continue; // lib.rs and main.rs sit above everything
        };
        let mine = layer_of(top);
        for target in references(&s) {
            let other = &target[0];
            if other != top && layer_of(other) >= mine {
                wrong.push(format!(
                    "{} imports crate::{} (layer {} may only import layers below {})",
                    s.path.display(),
                    target.join("::"),
                    layer_of(other),
                    mine
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that do not point down:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn sibling_modules_import_each_other_without_cycles() {
    // Edges between the files of one folder: token/sources.rs → token/gcloud.rs, ...
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for s in sources() {
        if s.module.len() < 2 {
            continue;
        }
        let folder = &s.module[..s.module.len() - 1];
        for target in references(&s) {
            if target.len() >= s.module.len() && target[..folder.len()] == *folder {
                let sibling = target[..s.module.len()].to_vec();
                if sibling != s.module {
                    edges.entry(s.module.clone()).or_default().insert(sibling);
                }
            }
        }
    }
    for start in edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                assert!(
                    next != start,
                    "import cycle: {} → {}",
                    path.iter()
                        .map(|m| m.join("::"))
                        .collect::<Vec<_>>()
                        .join(" → "),
                    start.join("::")
                );
                if !path.contains(next) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
}

#[test]
fn the_top_of_src_stays_small() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = std::fs::read_dir(&src)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count();
    assert!(
        files <= 9,
        "src/ holds {files} files; put concerns in folders"
    );
}

/// The files of a closed folder (`token/sources.rs` → `sources`).
fn parts_of(folder: &str) -> BTreeSet<String> {
    sources()
        .into_iter()
        .filter(|s| s.module.len() >= 2 && s.module[0] == folder)
        .map(|s| s.module[1].clone())
        .collect()
}

#[test]
fn closed_folders_are_entered_only_through_their_mod_rs() {
    let mut wrong = Vec::new();
    for folder in CLOSED {
        let parts = parts_of(folder);
        assert!(!parts.is_empty(), "src/{folder}/ has no files");
        for s in sources() {
            if s.module.first().map(String::as_str) == Some(folder) {
                continue;
            }
            for target in references(&s) {
                if target.len() >= 2 && target[0] == *folder && parts.contains(&target[1]) {
                    wrong.push(format!(
                        "{} reaches into crate::{} (use what src/{folder}/mod.rs offers)",
                        s.path.display(),
                        target.join("::")
                    ));
                }
            }
        }
        let mod_rs = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(folder)
            .join("mod.rs");
        for line in std::fs::read_to_string(&mod_rs).unwrap().lines() {
            let line = line.trim();
            if line.starts_with("pub") && line.contains(" mod ") {
                wrong.push(format!("src/{folder}/mod.rs exposes a part: {line}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the inside of a closed folder is used from outside:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn use_groups_name_each_module() {
    let s = Source {
        path: PathBuf::from("src/setup/x.rs"),
        module: vec!["setup".into(), "x".into()],
        code: "use crate::token::{self, cache::Cache, Outcome};\nuse super::edit;".into(),
    };
    let refs = references(&s);
    for want in [
        &["token"][..],
        &["token", "cache"],
        &["token", "Outcome"],
        &["setup", "edit"],
    ] {
        let want: Vec<String> = want.iter().map(|w| w.to_string()).collect();
        assert!(refs.contains(&want), "{want:?} not in {refs:?}");
    }
}

/// Per-OS code lives in `imp` modules (one per platform, the same functions in each), as
/// cargo's credential providers keep theirs; the rest of the crate is the same everywhere and
/// asks `util::platform` (plain functions of `Os`) for per-OS decisions. Allowed besides:
/// Windows-only modules declared in `util/mod.rs`, the Linux entry point in `main.rs`, test
/// modules, and `Os::CURRENT`'s `cfg!` in `util/platform.rs`.
#[test]
fn platform_code_is_behind_imp_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    let mut files = Vec::new();
    collect_paths(&src, &mut files);
    for path in files {
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel == "main.rs" || rel == "util/mod.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            let per_os = ["unix", "windows", "target_os"]
                .iter()
                .any(|w| line.contains(w));
            if line.starts_with("#[cfg(") && per_os && !line.contains("test") {
                let next = lines[i + 1..].iter().find(|l| !l.is_empty()).unwrap_or(&"");
                if *next != "mod imp {" {
                    wrong.push(format!("src/{rel}:{}: {line} before {next:?}", i + 1));
                }
            }
            if line.contains("cfg!(") && rel != "util/platform.rs" {
                wrong.push(format!("src/{rel}:{}: {line}", i + 1));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "per-OS code outside an `imp` module:\n{}",
        wrong.join("\n")
    );
}

fn collect_paths(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_paths(&path, out);
        } else {
            out.push(path);
        }
    }
}
