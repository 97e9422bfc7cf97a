//! What the documentation promises its readers: README.md stays a front door (at most 25 KB),
//! every relative link in the docs leads to a file in the repository and, with `#anchor`, to a
//! heading there, and docs/commands.md covers every subcommand and flag the built binary lists.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_docker-credential-gcp");

/// The README's budget in bytes: the rest belongs under docs/.
const README_MAX_BYTES: usize = 25_000;

/// The pages whose links are checked: the front door, the user guide and the developer pages.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut files: Vec<PathBuf> = [
        "README.md",
        "SECURITY.md",
        "CONTRIBUTING.md",
        "ARCHITECTURE.md",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    let mut guide: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    guide.sort();
    assert!(!guide.is_empty(), "docs/ holds the user guide");
    files.extend(guide);
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn the_readme_is_at_most_25_kb() {
    let size = std::fs::metadata(Path::new(ROOT).join("README.md"))
        .unwrap()
        .len();
    assert!(
        size as usize <= README_MAX_BYTES,
        "README.md is {size} bytes, more than {README_MAX_BYTES}: move the detail to a page under docs/"
    );
}

#[test]
fn every_relative_link_leads_to_a_file_and_heading_in_the_repository() {
    let root = std::fs::canonicalize(ROOT).unwrap();
    let mut anchors: HashMap<PathBuf, BTreeSet<String>> = HashMap::new();
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = read(&doc);
        for target in links(&text) {
            if has_scheme(&target) {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                doc.clone()
            } else if path.starts_with('/') {
                broken.push(format!("{}: {target}: an absolute path", shown(&doc)));
                continue;
            } else {
                doc.parent().unwrap().join(path)
            };
            let Ok(file) = std::fs::canonicalize(&file) else {
                broken.push(format!("{}: {target}: no such file", shown(&doc)));
                continue;
            };
            if !file.starts_with(&root) {
                broken.push(format!("{}: {target}: outside the repository", shown(&doc)));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if file.extension().is_none_or(|e| e != "md") {
                broken.push(format!(
                    "{}: {target}: an anchor into a non-Markdown file",
                    shown(&doc)
                ));
                continue;
            }
            let headings = anchors
                .entry(file.clone())
                .or_insert_with(|| heading_anchors(&read(&file)));
            if !headings.contains(anchor) {
                broken.push(format!(
                    "{}: {target}: no heading with that anchor in {} (it has: {})",
                    shown(&doc),
                    shown(&file),
                    headings.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} relative links found: is the link parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn docs_commands_describes_every_subcommand_the_binary_lists() {
    let listing = help(&[]);
    let commands = subcommands(&listing);
    assert!(
        commands.contains(&"get".to_owned()) && commands.contains(&"configure-docker".to_owned()),
        "could not read the command list from help:\n{listing}"
    );
    let page = read(&Path::new(ROOT).join("docs/commands.md"));
    let missing: Vec<&String> = commands
        .iter()
        .filter(|c| !page.contains(&format!("`{c}`")) && !page.contains(&format!("`{c} ")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/commands.md does not mention {missing:?} (as `name`)"
    );
}

#[test]
fn docs_commands_describes_every_flag_of_every_subcommand() {
    let page = read(&Path::new(ROOT).join("docs/commands.md"));
    let mut missing = Vec::new();
    let mut seen = 0;
    for command in subcommands(&help(&[])) {
        for flag in long_flags(&help(&[&command])) {
            seen += 1;
            if flag != "--help" && !page.contains(&format!("`{flag}")) {
                missing.push(format!("{command} {flag}"));
            }
        }
    }
    assert!(seen > 20, "only {seen} flags found in the help texts");
    assert!(
        missing.is_empty(),
        "docs/commands.md does not mention these flags (as `--flag`): {missing:?}"
    );
}

/// What `help ARGS…` prints, which must succeed (started through the tests' one `spawn`).
fn help(args: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("help").args(args);
    let out = crate::support::run_command(cmd, b"");
    assert_eq!(out.code, 0, "help {args:?} failed: {}", out.stderr);
    out.stdout
}

/// The long flags (`--name`) that start the lines of clap's "Options:" list.
fn long_flags(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            l.split([' ', ',', '='])
                .find(|w| w.starts_with("--") && w.len() > 2)
                .map(str::to_owned)
        })
        .collect()
}

/// The names under "Commands:" in clap's help, up to the next blank line.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Whether a link target is a URL (`https:`, `mailto:`) rather than a path in the repository.
fn has_scheme(target: &str) -> bool {
    match target.find(':') {
        Some(i) => {
            let scheme = &target[..i];
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                && !target[..i].contains('/')
        }
        None => false,
    }
}

/// The lines of `text` outside fenced code blocks, with inline code spans blanked out.
fn prose_lines(text: &str) -> Vec<String> {
    let mut fence: Option<String> = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let marker: String = trimmed
            .chars()
            .take_while(|c| *c == '`' || *c == '~')
            .collect();
        if marker.len() >= 3 && marker.chars().all(|c| c == marker.chars().next().unwrap()) {
            match &fence {
                None => fence = Some(marker),
                Some(open) if marker.starts_with(open.as_str()) => fence = None,
                Some(_) => {}
            }
            continue;
        }
        if fence.is_none() {
            lines.push(without_code_spans(line));
        }
    }
    lines
}

/// `line` with the contents of each `code span` removed (a run of n backticks closes a span
/// opened by n backticks).
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        let close = (i + run..chars.len()).find(|&j| {
            chars[j..].iter().take_while(|c| **c == '`').count() == run
                && (j == 0 || chars[j - 1] != '`')
        });
        match close {
            Some(j) => i = j + run,
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// The targets of inline links `[text](target "title")` and reference definitions
/// `[label]: target`, outside code.
fn links(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some((_, rest)) = trimmed.split_once("]:")
            && let Some(target) = rest.split_whitespace().next()
        {
            targets.push(target.trim_matches(['<', '>']).to_owned());
            continue;
        }
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let mut depth = 0usize;
            let end = after.char_indices().find(|&(_, c)| match c {
                '(' => {
                    depth += 1;
                    false
                }
                ')' if depth == 0 => true,
                ')' => {
                    depth -= 1;
                    false
                }
                _ => false,
            });
            let Some((end, _)) = end else { break };
            let inner = after[..end].trim();
            let target = inner.split_whitespace().next().unwrap_or("");
            targets.push(target.trim_matches(['<', '>']).to_owned());
            rest = &after[end..];
        }
    }
    targets
}

/// The anchors GitHub gives the headings of a Markdown file: the heading's text in lower case,
/// without punctuation other than `-` and `_`, spaces as `-`; a repeated one gets `-1`, `-2`.
fn heading_anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = BTreeSet::new();
    let mut fence: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let marker: String = trimmed
            .chars()
            .take_while(|c| *c == '`' || *c == '~')
            .collect();
        if marker.len() >= 3 {
            match &fence {
                None => fence = Some(marker),
                Some(open) if marker.starts_with(open.as_str()) => fence = None,
                Some(_) => {}
            }
            continue;
        }
        if fence.is_some() {
            continue;
        }
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !trimmed[hashes..].starts_with(' ') {
            continue;
        }
        let title = trimmed[hashes..].trim().trim_end_matches('#').trim();
        let slug = slug(&link_texts(title));
        let n = seen.entry(slug.clone()).or_insert(0);
        anchors.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    anchors
}

/// `[text](target)` reduced to `text`, as a heading renders.
fn link_texts(title: &str) -> String {
    let mut out = String::new();
    let mut rest = title;
    while let Some(i) = rest.find("](") {
        let Some(close) = rest[i..].find(')') else {
            break;
        };
        out.push_str(&rest[..i]);
        rest = &rest[i + close + 1..];
    }
    out.push_str(rest);
    out
}

fn slug(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn anchors_follow_githubs_rules() {
    let text = "# `docker login` and stored credentials\n\
                ## Compared with Google's helpers\n\
                ```sh\n# not a heading\n```\n\
                ## Errors, and checking the route\n\
                ## Errors, and checking the route\n\
                ### Per-pod workload identity (the kubelet's mode)\n";
    let anchors: Vec<String> = heading_anchors(text).into_iter().collect();
    assert_eq!(
        anchors,
        [
            "compared-with-googles-helpers",
            "docker-login-and-stored-credentials",
            "errors-and-checking-the-route",
            "errors-and-checking-the-route-1",
            "per-pod-workload-identity-the-kubelets-mode",
        ]
    );
}

#[test]
fn links_are_found_outside_code_only() {
    let text = "See [a](docs/a.md#x) and [b](<b.md> \"title\"), not `[c](c.md)`.\n\
                ```\n[d](d.md)\n```\n\
                [e]: e.md\n\
                ![f](f.png) and [g](https://example.com/(x))\n";
    assert_eq!(
        links(text),
        [
            "docs/a.md#x",
            "b.md",
            "e.md",
            "f.png",
            "https://example.com/(x)"
        ]
    );
    assert!(has_scheme("https://example.com") && has_scheme("mailto:a@b"));
    assert!(!has_scheme("docs/a.md#x:y") && !has_scheme("#anchor"));
    assert_eq!(without_code_spans("a `x` b ``y`z`` c"), "a  b  c");
}
