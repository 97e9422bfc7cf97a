//! What the two TOML files (containerd's hosts.toml, podman's registries.conf) share: parsing
//! with `toml_edit`, which keeps comments and layout and understands every header form
//! (`[[registry]] # Docker Hub`); the marker lines of older versions; and where an added table
//! goes in a file that ends in comments.

use anyhow::{Result, anyhow};
use toml_edit::{DocumentMut, Table};

/// Marker lines the first versions of this helper wrapped their TOML edits in.
const OLD_MARKERS: [&str; 2] = [
    "# BEGIN docker-credential-gcp: mirror.gcr.io",
    "# END docker-credential-gcp: mirror.gcr.io",
];

pub(super) fn parse(text: &str) -> Result<DocumentMut> {
    let cleaned: String = text
        .split_inclusive('\n')
        .filter(|line| !OLD_MARKERS.contains(&line.trim_end()))
        .collect();
    cleaned.parse::<DocumentMut>().map_err(|e| {
        anyhow!(
            "is not valid TOML ({}); fix it first",
            e.to_string().lines().next().unwrap_or_default().trim()
        )
    })
}

/// A table this command adds goes at the very end of the file, after the comments that end
/// it: toml_edit keeps those as the document's trailing decor and would print the new table
/// before them, which puts it at the top of a file that is all comments (Debian's
/// registries.conf). They become the new table's leading decor instead (`give_back_trailer`
/// undoes this on `--remove`).
pub(super) fn take_trailer_into(doc: &mut DocumentMut, table: &mut Table) {
    let trailer = doc.trailing().as_str().unwrap_or_default().to_owned();
    if trailer.trim().is_empty() {
        return;
    }
    let separator = if trailer.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    table
        .decor_mut()
        .set_prefix(format!("{trailer}{separator}"));
    doc.set_trailing("");
}

/// When a table this command added is removed, the comments it carried (`take_trailer_into`)
/// end the file again.
pub(super) fn give_back_trailer(doc: &mut DocumentMut, prefix: Option<String>) {
    let Some(prefix) = prefix.filter(|p| !p.trim().is_empty()) else {
        return;
    };
    let comments = prefix.strip_suffix('\n').unwrap_or(&prefix);
    let rest = doc.trailing().as_str().unwrap_or_default().to_owned();
    doc.set_trailing(format!("{comments}{rest}"));
}

pub(super) fn decor_prefix(table: &Table) -> Option<String> {
    table
        .decor()
        .prefix()
        .and_then(|p| p.as_str())
        .map(str::to_owned)
}
