//! Whether the system dockerd gets `--registry-mirror` on its command line, which makes it
//! refuse a daemon.json that also lists `registry-mirrors`: from its service files
//! (`/etc/default/docker`, systemd units and drop-ins), which decide its next start, and from
//! the running processes, which only draw a warning. The decisions are plain functions
//! ([`DockerdFlags`], [`service_conflict`], [`live_conflicts`]) of what was read.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::MIRROR_URL;
use crate::util::files::{self, Symlinks, Trust};
use crate::util::ui;

/// Where Debian's and Ubuntu's init scripts read dockerd's flags from (`DOCKER_OPTS`).
const ETC_DEFAULT_DOCKER: &str = "/etc/default/docker";
const SYSTEMD_DROP_INS: &str = "/etc/systemd/system/docker.service.d";

/// The files the system dockerd's command line comes from: Debian's and Ubuntu's
/// `/etc/default/docker` (`DOCKER_OPTS`, read by the init script and by docker.service), systemd
/// drop-ins, and the unit files themselves.
fn service_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from(ETC_DEFAULT_DOCKER)];
    if let Ok(dir) = std::fs::read_dir(SYSTEMD_DROP_INS) {
        let mut drop_ins: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        drop_ins.sort();
        files.extend(drop_ins);
    }
    files.extend(
        [
            "/etc/systemd/system/docker.service",
            "/lib/systemd/system/docker.service",
        ]
        .map(PathBuf::from),
    );
    files
}

/// Each uncommented line of the service files, with the file it is in.
pub(super) fn service_lines() -> Vec<(PathBuf, String)> {
    let mut lines = Vec::new();
    for path in service_files() {
        let Ok(Some(bytes)) =
            files::read_bounded(&path, 1024 * 1024, Symlinks::Follow, Trust::Anyone)
        else {
            continue;
        };
        for line in String::from_utf8_lossy(&bytes).lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                lines.push((path.clone(), line.to_owned()));
            }
        }
    }
    lines
}

/// What a dockerd command line says about the two options that matter here.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DockerdFlags {
    /// `--registry-mirror` is given: dockerd then refuses to start, and to reload, with
    /// `registry-mirrors` in its config file ("specified both as a flag and in the
    /// configuration file").
    registry_mirror: bool,
    /// `--config-file PATH`; without it dockerd reads the system default daemon.json.
    config_file: Option<PathBuf>,
}

impl DockerdFlags {
    /// Reads dockerd's arguments (`--name value` and `--name=value` forms).
    pub(crate) fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> DockerdFlags {
        let mut flags = DockerdFlags::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (arg, None),
            };
            match name {
                "--registry-mirror" => flags.registry_mirror = true,
                "--config-file" => {
                    flags.config_file = inline.or_else(|| args.next()).map(PathBuf::from);
                }
                _ => {}
            }
        }
        flags
    }

    /// Reads the arguments out of shell and systemd lines such as
    /// `DOCKER_OPTS="--registry-mirror=https://m.example"` or
    /// `ExecStart=/usr/bin/dockerd --config-file /etc/docker/x.json`.
    fn parse_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> DockerdFlags {
        let words: Vec<&str> = lines
            .into_iter()
            .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == '"' || c == '\''))
            .filter(|w| !w.is_empty())
            // `DOCKER_OPTS=--flag`: the flag starts after the variable's name.
            .map(|w| match w.find("=--") {
                Some(at) if !w.starts_with('-') => &w[at + 1..],
                _ => w,
            })
            .collect();
        DockerdFlags::parse(words)
    }

    /// Whether a dockerd started with these flags reads `target` (the daemon.json being edited;
    /// `default` is the one it reads without `--config-file`) and so would refuse a
    /// `registry-mirrors` list in it.
    fn conflicts_with(&self, target: &Path, default: &Path) -> bool {
        self.registry_mirror && same_file(self.config_file.as_deref().unwrap_or(default), target)
    }
}

/// Whether two paths name the same file, also when it does not exist yet.
fn same_file(a: &Path, b: &Path) -> bool {
    fn resolved(p: &Path) -> PathBuf {
        if let Ok(full) = std::fs::canonicalize(p) {
            return full;
        }
        match (p.parent(), p.file_name()) {
            (Some(dir), Some(name)) => std::fs::canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or_else(|_| p.to_path_buf()),
            _ => p.to_path_buf(),
        }
    }
    a == b || resolved(a) == resolved(b)
}

/// The service-file line that gives the system dockerd `--registry-mirror`, if that dockerd
/// reads `target`: writing `registry-mirrors` there would stop it from starting.
pub(super) fn service_conflict(
    lines: &[(PathBuf, String)],
    target: &Path,
    default: &Path,
) -> Option<(PathBuf, String)> {
    let flags = DockerdFlags::parse_lines(lines.iter().map(|(_, l)| l.as_str()));
    if !flags.conflicts_with(target, default) {
        return None;
    }
    lines
        .iter()
        .find(|(_, l)| l.contains("--registry-mirror"))
        .cloned()
}

pub(super) fn refuse_if_flag_given(conflict: Option<&(PathBuf, String)>) -> Result<()> {
    let Some((path, line)) = conflict else {
        return Ok(());
    };
    bail!(
        "dockerd already gets --registry-mirror from {} ({line}); dockerd refuses to start when \
         registry-mirrors is set both as a flag and in daemon.json, so daemon.json was not \
         changed. Either add --registry-mirror={MIRROR_URL} to that line, or remove the flag \
         there, move its mirrors to daemon.json and run this again",
        path.display()
    )
}

/// The running dockerd processes that read `target` and were started with
/// `--registry-mirror`: their process ids.
pub(super) fn live_conflicts(
    running: &[(u32, Vec<String>)],
    target: &Path,
    default: &Path,
) -> Vec<u32> {
    running
        .iter()
        .filter(|(_, argv)| {
            DockerdFlags::parse(argv.iter().skip(1).map(String::as_str))
                .conflicts_with(target, default)
        })
        .map(|(pid, _)| *pid)
        .collect()
}

/// Only a warning: the running daemon's command line may be gone by its next start, which is
/// what the service files (checked above, and refused) decide.
pub(super) fn warn_about_live_flags(pids: &[u32], target: &Path) {
    for pid in pids {
        ui::note(format_args!(
            "warning: the running dockerd (pid {pid}) was started with --registry-mirror and \
             reads {}; started that way again it will refuse to start (and a reload is refused) \
             now that registry-mirrors is in the file. Start it without --registry-mirror, or \
             run `docker-credential-gcp configure-mirror --remove` to undo this",
            target.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(file: &str, text: &str) -> Vec<(PathBuf, String)> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| (PathBuf::from(file), l.to_owned()))
            .collect()
    }

    const DEFAULT: &str = "/etc/docker/daemon.json";

    #[test]
    fn dockerd_flags_are_read_in_both_forms() {
        let f = DockerdFlags::parse([
            "--registry-mirror",
            "https://m.example",
            "--config-file=/x.json",
        ]);
        assert!(f.registry_mirror);
        assert_eq!(f.config_file.as_deref(), Some(Path::new("/x.json")));
        let f = DockerdFlags::parse(["-H", "fd://", "--config-file", "/y.json"]);
        assert!(!f.registry_mirror);
        assert_eq!(f.config_file.as_deref(), Some(Path::new("/y.json")));
        assert_eq!(
            DockerdFlags::parse(["--registry-mirrors-x"]),
            DockerdFlags::default()
        );
        let f = DockerdFlags::parse_lines([
            "DOCKER_OPTS=\"--registry-mirror=https://m.example --dns 8.8.8.8\"",
            "ExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS",
        ]);
        assert!(f.registry_mirror && f.config_file.is_none(), "{f:?}");
        let f = DockerdFlags::parse_lines(["DOCKER_OPTS='--config-file=/etc/docker/other.json'"]);
        assert_eq!(
            f.config_file.as_deref(),
            Some(Path::new("/etc/docker/other.json"))
        );
    }

    #[test]
    fn a_registry_mirror_flag_in_dockerds_files_is_refused_for_the_file_that_dockerd_reads() {
        let debian = lines(
            "/etc/default/docker",
            "# DOCKER_OPTS=\"--registry-mirror=x\"\nDOCKER_OPTS=\"--registry-mirror=https://m.example\"\n",
        );
        let (path, line) = service_conflict(&debian, Path::new(DEFAULT), Path::new(DEFAULT))
            .expect("the default daemon.json conflicts");
        assert_eq!(path, Path::new("/etc/default/docker"));
        assert_eq!(line, "DOCKER_OPTS=\"--registry-mirror=https://m.example\"");
        // The system dockerd does not read another file: no conflict there.
        assert_eq!(
            service_conflict(
                &debian,
                Path::new("/srv/other/daemon.json"),
                Path::new(DEFAULT)
            ),
            None
        );
        // ...unless its command line names that file.
        let mut moved = debian.clone();
        moved.extend(lines(
            "/etc/systemd/system/docker.service.d/override.conf",
            "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd --config-file /srv/other/daemon.json\n",
        ));
        assert!(
            service_conflict(
                &moved,
                Path::new("/srv/other/daemon.json"),
                Path::new(DEFAULT)
            )
            .is_some()
        );
        assert!(service_conflict(&moved, Path::new(DEFAULT), Path::new(DEFAULT)).is_none());
        // Commented lines and other flags say nothing.
        let quiet = lines(
            "/etc/default/docker",
            "#DOCKER_OPTS=\"--registry-mirror=x\"\nDOCKER_OPTS=\"--dns 8.8.8.8\"\n",
        );
        assert_eq!(
            service_conflict(&quiet, Path::new(DEFAULT), Path::new(DEFAULT)),
            None
        );

        let e = refuse_if_flag_given(Some(&(
            PathBuf::from("/etc/default/docker"),
            "DOCKER_OPTS=\"--registry-mirror=x\"".into(),
        )))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/etc/default/docker") && e.contains("refuses to start"),
            "{e}"
        );
        assert!(refuse_if_flag_given(None).is_ok());
    }

    #[test]
    fn a_running_dockerd_conflicts_only_if_it_reads_the_file_and_has_the_flag() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let running = vec![
            (
                10,
                argv(&[
                    "/usr/sbin/dockerd",
                    "-H",
                    "fd://",
                    "--registry-mirror=https://m.example",
                ]),
            ),
            (
                11,
                argv(&[
                    "dockerd",
                    "--config-file",
                    "/srv/a/daemon.json",
                    "--registry-mirror",
                    "https://m",
                ]),
            ),
            (
                12,
                argv(&["dockerd", "--config-file", "/srv/b/daemon.json"]),
            ),
            // The program name is not an argument.
            (13, argv(&["--registry-mirror"])),
        ];
        let default = Path::new(DEFAULT);
        assert_eq!(live_conflicts(&running, default, default), [10]);
        assert_eq!(
            live_conflicts(&running, Path::new("/srv/a/daemon.json"), default),
            [11]
        );
        assert!(live_conflicts(&running, Path::new("/srv/b/daemon.json"), default).is_empty());
    }
}
