//! The layout is the architecture (ARCHITECTURE.md): modules form layers and every import
//! points down, and sibling modules inside a folder do not import each other in a cycle.
//! These tests read `src/` and enforce both, so a sideways import fails the build's tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may import only from layers below its own.
const LAYERS: &[&[&str]] = &[
    &["util"],
    &["hosts"],
    &["settings"],
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

/// A source file and its module path (`token/http.rs` → `["token", "http"]`).
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

/// The modules a file names, as absolute paths (`crate::token::http`, `super::cache`).
fn references(s: &Source) -> BTreeSet<Vec<String>> {
    let mut refs = BTreeSet::new();
    let words: Vec<&str> = s
        .code
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
            // `super` of `token/http.rs` is `token`; of `token/mod.rs` the crate root.
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
