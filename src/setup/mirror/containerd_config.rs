//! containerd's `config.toml`: its CRI (what Kubernetes pulls through) reads the hosts
//! directory only when the CRI registry's `config_path` names it. containerd 2's default is
//! empty, and so is the config.toml distributions ship (Debian's is version 2 with none), so
//! hosts.toml alone changes nothing for the kubelet's pulls.
//!
//! Version 3 (containerd 2) keeps it under `[plugins.'io.containerd.cri.v1.images'.registry]`,
//! version 2 (containerd 1.x, which containerd 2 migrates) under
//! `[plugins."io.containerd.grpc.v1.cri".registry]`. A file whose CRI registry still has the
//! deprecated `mirrors` or `configs` is refused (containerd will not take both), as is a
//! version 1 file, which containerd 2 no longer reads.

use anyhow::{Result, bail};
use toml_edit::{Item, Table, value};

use super::toml_file;

/// The CRI registry table of each config version.
fn registry_path(version: i64) -> Option<[&'static str; 3]> {
    match version {
        3 => Some(["plugins", "io.containerd.cri.v1.images", "registry"]),
        2 => Some(["plugins", "io.containerd.grpc.v1.cri", "registry"]),
        _ => None,
    }
}

/// `old` with the CRI registry's `config_path` set to `hosts_dir` (unchanged if it already
/// lists it).
pub(super) fn edit(old: &str, hosts_dir: &str) -> Result<String> {
    let mut doc = toml_file::parse(old)?;
    let version = doc.get("version").and_then(Item::as_integer).unwrap_or(1);
    let Some([plugins, cri, registry]) = registry_path(version) else {
        bail!(
            "is a version {version} configuration, which containerd 2 no longer reads; \
             convert it with `containerd config migrate` first, then run this again"
        );
    };
    let mut table = doc.as_table_mut();
    for key in [plugins, cri] {
        let item = table.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        let Some(t) = item.as_table_mut() else {
            bail!("[{plugins}.\"{cri}\"] is not a table");
        };
        table = t;
    }
    // A new table goes at the end of the file, not among the plugin's other tables.
    let registry_table = table.entry(registry).or_insert_with(|| {
        let mut t = Table::new();
        t.set_position(Some(isize::MAX));
        Item::Table(t)
    });
    let Some(registry_table) = registry_table.as_table_mut() else {
        bail!("[{plugins}.\"{cri}\".{registry}] is not a table");
    };
    for deprecated in ["mirrors", "configs"] {
        if registry_table.contains_key(deprecated) {
            bail!(
                "sets [{plugins}.\"{cri}\".{registry}.{deprecated}], which containerd deprecated \
                 for hosts directories and will not combine with config_path; move those \
                 settings into hosts.toml files under {hosts_dir} (see containerd's \
                 docs/hosts.md), remove them, then run this again"
            );
        }
    }
    match registry_table.get("config_path").and_then(Item::as_str) {
        Some(paths)
            if paths
                .split(':')
                .any(|p| p.trim_end_matches('/') == hosts_dir) =>
        {
            return Ok(old.to_owned());
        }
        Some(paths) if !paths.is_empty() => bail!(
            "sets config_path = \"{paths}\": containerd's CRI reads hosts.toml from there, \
             not from {hosts_dir}; run this again with --hosts-dir {paths}"
        ),
        _ => {}
    }
    registry_table.insert("config_path", value(hosts_dir));
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml_edit::DocumentMut;

    /// Debian's /etc/containerd/config.toml (package containerd 2.1).
    const DEBIAN: &str = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"/var/lib/containerd/opt\"\n";

    fn config_path(text: &str, cri: &str) -> Option<String> {
        let doc: DocumentMut = text.parse().unwrap();
        doc["plugins"][cri]["registry"]["config_path"]
            .as_str()
            .map(str::to_owned)
    }

    #[test]
    fn a_version_2_file_gets_config_path_under_the_old_cri_plugin() {
        let added = edit(DEBIAN, "/etc/containerd/certs.d").unwrap();
        assert!(added.starts_with(DEBIAN), "their settings kept: {added}");
        assert_eq!(
            config_path(&added, "io.containerd.grpc.v1.cri").as_deref(),
            Some("/etc/containerd/certs.d")
        );
        assert_eq!(edit(&added, "/etc/containerd/certs.d").unwrap(), added);
    }

    #[test]
    fn a_version_3_file_gets_it_under_the_cri_images_plugin() {
        let v3 =
            "version = 3\n\n[plugins.'io.containerd.cri.v1.runtime']\n  enable_selinux = false\n";
        let added = edit(v3, "/etc/containerd/certs.d").unwrap();
        assert_eq!(
            config_path(&added, "io.containerd.cri.v1.images").as_deref(),
            Some("/etc/containerd/certs.d")
        );
        assert!(!added.contains("io.containerd.grpc.v1.cri"), "{added}");
        assert!(added.contains("enable_selinux = false"), "{added}");
    }

    #[test]
    fn config_path_elsewhere_deprecated_mirrors_and_version_1_are_refused() {
        let elsewhere = "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = \"/etc/docker/certs.d\"\n";
        let e = format!(
            "{:#}",
            edit(elsewhere, "/etc/containerd/certs.d").unwrap_err()
        );
        assert!(e.contains("--hosts-dir /etc/docker/certs.d"), "{e}");
        let listed = "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = \"/etc/docker/certs.d:/etc/containerd/certs.d\"\n";
        assert_eq!(edit(listed, "/etc/containerd/certs.d").unwrap(), listed);

        let mirrors = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\nendpoint = [\"https://corp-mirror.test\"]\n";
        let e = format!(
            "{:#}",
            edit(mirrors, "/etc/containerd/certs.d").unwrap_err()
        );
        assert!(e.contains("mirrors") && e.contains("hosts.toml"), "{e}");

        let v1 = "[plugins.cri]\n  sandbox_image = \"pause\"\n";
        let e = format!("{:#}", edit(v1, "/etc/containerd/certs.d").unwrap_err());
        assert!(e.contains("containerd config migrate"), "{e}");
    }
}
