//! `configure-mirror`: use mirror.gcr.io, Google's cache of popular Docker Hub images, from
//! dockerd (daemon.json), containerd (certs.d/docker.io/hosts.toml, and the CRI's
//! `config_path` in config.toml) and podman/buildah (a registries.conf.d drop-in, or the
//! registries.conf file that already has a docker.io entry).
//!
//! One file per format, each a pure function from the old text to the new
//! (`daemon_json`, `hosts_toml`, `containerd_config`, `registries_conf`, with what the TOML
//! files share in `toml_file`), and `dockerd` for whether the system dockerd gets
//! `--registry-mirror` from its service files. This file is the command: it picks the files,
//! checks dockerd, and applies each change through `edit` (diff, dry run, atomic replace).
//!
//! One rule places the mirror in all three files: after the mirrors already there, which keep
//! their priority; Docker Hub itself stays the last resort. A file is never left in a form its
//! program refuses: a registries.conf in the old v1 format (which has no mirrors) is refused
//! with how to migrate, and daemon.json is not touched while the system dockerd that reads it
//! gets `--registry-mirror` from its service files: dockerd refuses to start with both.

mod containerd_config;
mod daemon_json;
mod dockerd;
mod hosts_toml;
mod registries_conf;
mod toml_file;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

pub(crate) use daemon_json::lists_our_mirror;

use super::docker;
use super::edit::{self, Edit, Outcome};
use crate::util::platform::{self, BaseDirs, Engine, Os};
use crate::util::{env, ui};

pub(crate) const MIRROR_URL: &str = "https://mirror.gcr.io";
const MIRROR_HOST: &str = "mirror.gcr.io";
pub(crate) const DEFAULT_HOSTS_DIR: &str = "/etc/containerd/certs.d";
pub(crate) const DEFAULT_CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
pub(crate) const DEFAULT_REGISTRIES_CONF: &str = "/etc/containers/registries.conf";
/// The drop-in directory podman and buildah read after registries.conf.
const REGISTRIES_CONF_D: &str = "/etc/containers/registries.conf.d";
/// The drop-in this command writes there.
const DROP_IN_NAME: &str = "50-mirror.gcr.io.conf";

pub(crate) const ABOUT: &str = "\
mirror.gcr.io caches popular public Docker Hub images. Pulls of docker.io images try the
mirror first and fall back to Docker Hub when an image is not cached. Pulls served by the
mirror do not count against Docker Hub's rate limits. It holds only public Docker Hub images:
private images and other registries are not mirrored, and pushes still go to Docker Hub.";

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// dockerd's daemon.json (default: /etc/docker/daemon.json on Linux, ~/.docker/daemon.json
    /// for Docker Desktop, %ProgramData%\docker\config\daemon.json for a Windows service).
    #[arg(long, value_name = "PATH")]
    daemon_json: Option<PathBuf>,
    /// Configure containerd (hosts.toml) instead of dockerd.
    #[arg(long)]
    containerd: bool,
    /// containerd's registry hosts directory (default /etc/containerd/certs.d).
    #[arg(long, value_name = "DIR", requires = "containerd")]
    hosts_dir: Option<PathBuf>,
    /// containerd's config.toml, whose CRI `config_path` must name the hosts directory
    /// (default /etc/containerd/config.toml when the hosts directory is the default one).
    #[arg(long, value_name = "PATH", requires = "containerd")]
    containerd_config: Option<PathBuf>,
    /// Configure podman and buildah (registries.conf) instead of dockerd.
    #[arg(long)]
    podman: bool,
    /// registries.conf to edit (default: a drop-in in /etc/containers/registries.conf.d, or
    /// /etc/containers/registries.conf where that already has a docker.io entry).
    #[arg(long, value_name = "PATH", requires = "podman")]
    registries_conf: Option<PathBuf>,
    /// Print the changes as diffs and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove the mirror again.
    #[arg(long)]
    remove: bool,
}

pub(crate) fn run(opts: &Options) -> Result<ExitCode> {
    // Docker is the default target; --containerd / --podman choose those instead, and an
    // explicit --daemon-json adds docker back.
    let docker = opts.daemon_json.is_some() || !(opts.containerd || opts.podman);
    let mut next = Vec::new();
    if docker {
        let engine = local_engine();
        let path = match &opts.daemon_json {
            Some(p) => p.clone(),
            None => default_daemon_json(engine)?,
        };
        // Only the system dockerd is started from service files (and found among processes).
        let system_default = (engine == Engine::SystemDockerd)
            .then(|| default_daemon_json(engine).ok())
            .flatten();
        if let (false, Some(default)) = (opts.remove, &system_default) {
            dockerd::refuse_if_flag_given(
                dockerd::service_conflict(&dockerd::service_lines(), &path, default).as_ref(),
            )?;
        }
        let changed = edit_file(&path, opts, daemon_json::edit)?;
        if let (false, false, Some(default)) = (opts.remove, opts.dry_run, &system_default) {
            let running = docker::running_dockerds();
            dockerd::warn_about_live_flags(
                &dockerd::live_conflicts(&running, &path, default),
                &path,
            );
        }
        if changed {
            next.push(format!(
                "{}, then check that `docker system info` shows Registry Mirrors: {MIRROR_URL}/",
                engine.restart_advice()
            ));
        }
    }
    if opts.containerd {
        let dir = opts
            .hosts_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_HOSTS_DIR));
        // The system containerd's config is edited only for the system hosts directory.
        let config = opts
            .containerd_config
            .clone()
            .or_else(|| {
                opts.hosts_dir
                    .is_none()
                    .then(|| PathBuf::from(DEFAULT_CONTAINERD_CONFIG))
            })
            .filter(|_| !opts.remove);
        // A config.toml this command would refuse is reported before anything is written.
        if let Some(config) = &config
            && let Ok(text) = std::fs::read_to_string(config)
        {
            containerd_config::edit(&text, &dir.display().to_string())
                .with_context(|| format!("{}: nothing was changed", config.display()))?;
        }
        if edit_file(
            &dir.join("docker.io").join("hosts.toml"),
            opts,
            hosts_toml::edit,
        )? {
            next.push("containerd reads hosts.toml on each pull (`ctr` needs --hosts-dir); no restart needed for that".to_owned());
        }
        if let Some(config) = config {
            next.extend(point_cri_at(&config, &dir, opts)?);
        }
    }
    if opts.podman {
        let paths = match &opts.registries_conf {
            Some(p) => vec![p.clone()],
            None => registries_conf_targets(opts.remove),
        };
        let mut changed = false;
        for path in paths {
            changed |= edit_file(&path, opts, registries_conf::edit)?;
            if opts.remove && !opts.dry_run && is_our_empty_drop_in(&path) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
                ui::note(format_args!("{}: removed", path.display()));
            }
        }
        if changed {
            next.push(
                "podman and buildah read registries.conf on every run; nothing to restart"
                    .to_owned(),
            );
        }
    }
    if !opts.remove {
        ui::note(format_args!("{ABOUT}"));
    }
    if !opts.dry_run {
        for step in next {
            ui::note(format_args!("next: {step}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Makes containerd's CRI read `hosts_dir` (`config_path` in `config`); returns the next
/// steps. A config that does not exist is not created (containerd would then run on what it
/// says, not on its defaults): the user is told what to add.
fn point_cri_at(config: &Path, hosts_dir: &Path, opts: &Options) -> Result<Vec<String>> {
    let dir = hosts_dir.display().to_string();
    if !config.exists() {
        return Ok(vec![format!(
            "{} does not exist; for the CRI (Kubernetes) to use the mirror, containerd's config \
             must set config_path = \"{dir}\" in [plugins.'io.containerd.cri.v1.images'.registry] \
             (containerd 2) or [plugins.\"io.containerd.grpc.v1.cri\".registry] (1.x)",
            config.display()
        )]);
    }
    let edit = Edit::open(config, 0o755).map_err(edit::permission_hint)?;
    let old = edit.text()?;
    let new = containerd_config::edit(&old, &dir)
        .with_context(|| format!("{}: nothing was changed", edit.path.display()))?;
    let outcome = edit
        .finish(new.as_bytes(), opts.dry_run, &mut ui::stdout())
        .map_err(edit::permission_hint)?;
    Ok(match outcome {
        Outcome::Unchanged => Vec::new(),
        Outcome::Shown => {
            ui::note(format_args!("dry run: {} not written", edit.path.display()));
            Vec::new()
        }
        Outcome::Written => {
            ui::note(format_args!(
                "{}: the CRI reads registry hosts from {dir} (config_path)",
                edit.path.display()
            ));
            vec!["restart containerd (`systemctl restart containerd`) so that its CRI reads config_path".to_owned()]
        }
    })
}

/// Which registries.conf files podman's mirror goes into when none is named: the docker.io
/// entry's file if registries.conf or a drop-in already has one (a drop-in entry for the same
/// prefix would replace it, mirrors and all), else our own drop-in where podman reads
/// drop-ins, else registries.conf. With `remove`, every place this command may have written.
fn registries_conf_targets(remove: bool) -> Vec<PathBuf> {
    let main = PathBuf::from(DEFAULT_REGISTRIES_CONF);
    let dir = Path::new(REGISTRIES_CONF_D);
    let ours = dir.join(DROP_IN_NAME);
    if !dir.is_dir() {
        return vec![main];
    }
    if remove {
        return if ours.exists() {
            vec![main, ours]
        } else {
            vec![main]
        };
    }
    let mut drop_ins: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf") && *p != ours)
                .collect()
        })
        .unwrap_or_default();
    // podman reads them in name order; the last docker.io entry is the one it uses.
    drop_ins.sort();
    let holder = drop_ins
        .into_iter()
        .rev()
        .chain(std::iter::once(main))
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| registries_conf::keeps_docker_io(&t)));
    vec![holder.unwrap_or(ours)]
}

/// Whether `path` is this command's drop-in and holds nothing any more.
fn is_our_empty_drop_in(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == DROP_IN_NAME)
        && std::fs::read_to_string(path).is_ok_and(|t| t.trim().is_empty())
}

/// The engine on this machine whose daemon.json is the default.
fn local_engine() -> Engine {
    let desktop = env::var_os("ProgramFiles")
        .is_some_and(|p| platform::docker_desktop_marker(Path::new(&p)).is_file());
    Engine::for_os(Os::CURRENT, desktop)
}

pub(crate) fn default_daemon_json(engine: Engine) -> Result<PathBuf> {
    let program_data = env::var_os("ProgramData").map(PathBuf::from);
    engine
        .daemon_json(&BaseDirs::current(), program_data.as_deref())
        .context("cannot tell where daemon.json is; pass --daemon-json PATH")
}

/// A file's new content from its old (as text), or an error that leaves it untouched.
type Change = fn(&str, bool) -> Result<String>;

/// Applies `change` to `path` (adding, or removing with --remove); returns whether the file
/// changed (or would, in a dry run).
fn edit_file(path: &Path, opts: &Options, change: Change) -> Result<bool> {
    let edit = Edit::open(path, 0o755).map_err(edit::permission_hint)?;
    let old = edit.text()?;
    let new = change(&old, opts.remove)
        .with_context(|| format!("{}: nothing was changed", edit.path.display()))?;
    match edit
        .finish(new.as_bytes(), opts.dry_run, &mut ui::stdout())
        .map_err(edit::permission_hint)?
    {
        Outcome::Unchanged => {
            ui::note(format_args!(
                "{}: already {}; nothing changed",
                edit.path.display(),
                if opts.remove {
                    "without the mirror"
                } else {
                    "set up"
                }
            ));
            Ok(false)
        }
        Outcome::Shown => {
            ui::note(format_args!("dry run: {} not written", edit.path.display()));
            Ok(true)
        }
        Outcome::Written => {
            ui::note(format_args!(
                "{}: {} {MIRROR_URL}",
                edit.path.display(),
                if opts.remove { "removed" } else { "added" }
            ));
            Ok(true)
        }
    }
}

/// Whether a mirror as a file names it is mirror.gcr.io, compared as a URL: the scheme and
/// host in any case, the default port 443 the same as none, a final slash and a final dot of
/// the host ignored. Without a scheme it counts as https, which is what containerd's hosts.toml
/// and registries.conf's scheme-less `location` mean. Another scheme, port, path or a user is
/// another mirror. The one comparison `configure-mirror` (all three files) and `doctor` make.
pub(crate) fn is_our_mirror(written: &str) -> bool {
    let written = written.trim();
    let rest = match written.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        Some(_) => return false,
        None => written,
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains(['/', '@', '?', '#']) {
        return false;
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>() == Ok(443) => host,
        Some(_) => return false,
        None => authority,
    };
    host.strip_suffix('.')
        .unwrap_or(host)
        .eq_ignore_ascii_case(MIRROR_HOST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_gcr_io_is_recognised_however_it_is_spelled() {
        for ours in [
            "https://mirror.gcr.io",
            "https://mirror.gcr.io/",
            "HTTPS://MIRROR.GCR.IO",
            "https://Mirror.Gcr.Io:443",
            "https://mirror.gcr.io:443/",
            "https://mirror.gcr.io:0443",
            "https://mirror.gcr.io.",
            " https://mirror.gcr.io// ",
            "mirror.gcr.io",
            "MIRROR.GCR.IO:443",
            "mirror.gcr.io/",
        ] {
            assert!(is_our_mirror(ours), "{ours}");
        }
        for theirs in [
            "http://mirror.gcr.io",
            "https://mirror.gcr.io:8443",
            "https://mirror.gcr.io:",
            "https://mirror.gcr.io/v2",
            "mirror.gcr.io/library",
            "https://user@mirror.gcr.io",
            "https://mirror.gcr.io.evil.example",
            "https://xmirror.gcr.io",
            "https://gcr.io",
            "ftp://mirror.gcr.io",
            "",
        ] {
            assert!(!is_our_mirror(theirs), "{theirs}");
        }
    }
}
