//! The helper's token cache entries and failure records as tests and the benchmark reach them
//! on disk.
use std::path::{Path, PathBuf};

/// The `token-*.json` entry in the cache directory `dir`.
pub(crate) fn entry_in(dir: &Path) -> PathBuf {
    file_in(dir, "token-")
}

/// The `fail-*.json` record of a remembered failure in the cache directory `dir`.
pub(crate) fn failure_in(dir: &Path) -> PathBuf {
    file_in(dir, "fail-")
}

fn file_in(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}* file in {}", dir.display()))
}

/// Makes the entry in `dir` look minted 50 minutes ago, with 10 minutes left: inside the
/// default 15-minute refresh-ahead window.
pub(crate) fn age_entry_in(dir: &Path) {
    let entry = entry_in(dir);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&entry).unwrap()).unwrap();
    doc["expires_at"] = serde_json::json!(now + 600);
    doc["minted_at"] = serde_json::json!(now - 3000);
    std::fs::write(&entry, doc.to_string()).unwrap();
}
