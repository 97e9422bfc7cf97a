//! Every decision that differs between Linux, macOS and Windows, as plain functions of the
//! platform and its inputs, so each is table-tested on Linux. The `#[cfg]` glue that feeds
//! them the running system's values is kept to [`Os::CURRENT`] and [`BaseDirs::current`]
//! (its `imp` modules: the `dirs` crate everywhere, with a relative HOME settled on Unix).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::util::env;

/// Name of this program's directory under the user's config, cache and data directories.
pub(crate) const APP_DIR: &str = "docker-credential-gcp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Os {
    /// Linux and the other Unix systems (they share the freedesktop layout).
    Linux,
    Macos,
    Windows,
}

impl Os {
    pub(crate) const CURRENT: Os = if cfg!(windows) {
        Os::Windows
    } else if cfg!(target_os = "macos") {
        Os::Macos
    } else {
        Os::Linux
    };
}

/// The user's base directories as the OS defines them, through the `dirs` crate: HOME and the
/// XDG variables on Linux, `~/Library/…` on macOS, the known folders on Windows (where the
/// variables win when set: [`BaseDirs::with_windows_variables`]); on Unix a relative HOME is
/// not used (see `imp::settle`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BaseDirs {
    pub(crate) home: Option<PathBuf>,
    /// Linux `~/.config`, macOS `~/Library/Application Support`, Windows `%APPDATA%`.
    pub(crate) config: Option<PathBuf>,
    /// Linux `~/.cache`, macOS `~/Library/Caches`, Windows `%LOCALAPPDATA%`.
    pub(crate) cache: Option<PathBuf>,
    /// Linux `~/.local/share`, macOS `~/Library/Application Support`, Windows `%LOCALAPPDATA%`.
    pub(crate) data_local: Option<PathBuf>,
}

/// `C:\…` or `\\server\share\…`: a Windows path that does not depend on the current
/// directory (decided by text, so it is the same on every OS).
fn is_windows_absolute(path: &OsStr) -> bool {
    let text = path.to_string_lossy();
    let b = text.as_bytes();
    let drive =
        b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/');
    drive || text.starts_with(r"\\")
}

impl BaseDirs {
    /// The running user's directories.
    pub(crate) fn current() -> BaseDirs {
        imp::current().with_windows_variables(Os::CURRENT, env::var_os)
    }

    /// On Windows the `dirs` crate asks the Known Folders API, which ignores the environment,
    /// while docker and gcloud read `%USERPROFILE%` and `%APPDATA%` (as Go's standard library
    /// does). Set to an absolute path, those variables and `%LOCALAPPDATA%` win here too, so
    /// the helper finds what those tools write, and a test can give it folders of its own.
    /// Elsewhere `dirs` already follows HOME and the XDG variables.
    pub(crate) fn with_windows_variables(
        mut self,
        os: Os,
        var: impl Fn(&str) -> Option<OsString>,
    ) -> BaseDirs {
        if os != Os::Windows {
            return self;
        }
        let dir = |name: &str| {
            var(name)
                .filter(|v| is_windows_absolute(v))
                .map(PathBuf::from)
        };
        if let Some(home) = dir("USERPROFILE") {
            self.home = Some(home);
        }
        if let Some(config) = dir("APPDATA") {
            self.config = Some(config);
        }
        if let Some(local) = dir("LOCALAPPDATA") {
            self.cache = Some(local.clone());
            self.data_local = Some(local);
        }
        self
    }

    /// This program's settings file: the one `DOCKER_CREDENTIAL_GCP_CONFIG` names (its value
    /// is `named`), else `config.json` in this program's directory under the user's config
    /// directory.
    pub(crate) fn config_file(&self, named: Option<OsString>) -> Option<PathBuf> {
        match named {
            Some(path) => Some(PathBuf::from(path)),
            None => Some(self.config.as_ref()?.join(APP_DIR).join("config.json")),
        }
    }

    /// The default token cache directory.
    pub(crate) fn cache_dir(&self) -> Option<PathBuf> {
        Some(self.cache.as_ref()?.join(APP_DIR))
    }

    /// Where the index of `docker login` credentials lives.
    pub(crate) fn data_dir(&self) -> Option<PathBuf> {
        Some(self.data_local.as_ref()?.join(APP_DIR))
    }

    /// gcloud's configuration directory when `CLOUDSDK_CONFIG` is unset: `%APPDATA%\gcloud` on
    /// Windows, `~/.config/gcloud` everywhere else (also on macOS, where gcloud does not use
    /// `~/Library`).
    pub(crate) fn gcloud_dir(&self, os: Os) -> Option<PathBuf> {
        match os {
            Os::Windows => Some(self.config.as_ref()?.join("gcloud")),
            Os::Linux | Os::Macos => Some(self.home.as_ref()?.join(".config").join("gcloud")),
        }
    }

    /// docker's config.json: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (the
    /// same on every platform).
    pub(crate) fn docker_config(&self, docker_config_var: Option<OsString>) -> Option<PathBuf> {
        match docker_config_var {
            Some(dir) => Some(PathBuf::from(dir).join("config.json")),
            None => Some(self.home.as_ref()?.join(".docker").join("config.json")),
        }
    }
}

#[cfg(unix)]
mod imp {
    use std::path::PathBuf;

    use super::{BaseDirs, Os};

    /// The running user's directories as `dirs` finds them (HOME, the user database when HOME
    /// is unset, and on Linux the XDG variables, of which it already ignores relative ones),
    /// settled by [`settle`].
    pub(super) fn current() -> BaseDirs {
        let found = BaseDirs {
            home: dirs::home_dir(),
            config: dirs::config_dir(),
            cache: dirs::cache_dir(),
            data_local: dirs::data_local_dir(),
        };
        settle(Os::CURRENT, found, account_home)
    }

    /// `dirs` takes a relative HOME as it is, which would put this program's files under
    /// whatever directory docker happens to run it in. Here a relative HOME counts as unset:
    /// the home directory is the user database's (`account_home`; as for a kubelet plugin,
    /// which gets no HOME), and each directory `dirs` derived from the relative HOME is derived
    /// from that one instead, while one set explicitly (an absolute `XDG_*_HOME`) stays. No
    /// relative path ever comes out.
    pub(super) fn settle(
        os: Os,
        found: BaseDirs,
        account_home: impl FnOnce() -> Option<PathBuf>,
    ) -> BaseDirs {
        let absolute = |p: Option<PathBuf>| p.filter(|p| p.is_absolute());
        if found.home.as_ref().is_some_and(|h| h.is_absolute()) {
            return BaseDirs {
                home: found.home,
                config: absolute(found.config),
                cache: absolute(found.cache),
                data_local: absolute(found.data_local),
            };
        }
        let home = absolute(account_home());
        let (config, cache, data) = match os {
            Os::Macos => (
                "Library/Application Support",
                "Library/Caches",
                "Library/Application Support",
            ),
            Os::Linux | Os::Windows => (".config", ".cache", ".local/share"),
        };
        let under = |rel: &str| home.as_ref().map(|h| h.join(rel));
        BaseDirs {
            config: absolute(found.config).or_else(|| under(config)),
            cache: absolute(found.cache).or_else(|| under(cache)),
            data_local: absolute(found.data_local).or_else(|| under(data)),
            home,
        }
    }

    /// The home directory the user database (`/etc/passwd`, NSS) gives the effective user.
    fn account_home() -> Option<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let mut buf = vec![0u8; 1024];
        loop {
            // SAFETY: passwd is plain data that getpwuid_r fills in; an all-zero value is valid.
            let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: every pointer is valid for the call; the strings `entry` points to live in
            // `buf`, which outlives their use below.
            let rc = unsafe {
                libc::getpwuid_r(
                    libc::geteuid(),
                    &mut entry,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut found,
                )
            };
            if rc == libc::ERANGE && buf.len() < 1 << 20 {
                buf.resize(buf.len() * 4, 0);
                continue;
            }
            if rc != 0 || found.is_null() || entry.pw_dir.is_null() {
                return None;
            }
            // SAFETY: getpwuid_r succeeded, so pw_dir is a NUL-terminated string inside `buf`.
            let dir = unsafe { std::ffi::CStr::from_ptr(entry.pw_dir) };
            let dir = PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()));
            return (!dir.as_os_str().is_empty()).then_some(dir);
        }
    }

    #[cfg(test)]
    mod tests {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;

        use super::*;

        fn p(s: &str) -> Option<PathBuf> {
            Some(PathBuf::from(s))
        }

        fn under(home: &str, config: &str, cache: &str, data: &str) -> BaseDirs {
            let home = PathBuf::from(home);
            BaseDirs {
                config: Some(home.join(config)),
                cache: Some(home.join(cache)),
                data_local: Some(home.join(data)),
                home: Some(home),
            }
        }

        fn linux(home: &str) -> BaseDirs {
            under(home, ".config", ".cache", ".local/share")
        }

        fn macos(home: &str) -> BaseDirs {
            under(
                home,
                "Library/Application Support",
                "Library/Caches",
                "Library/Application Support",
            )
        }

        #[test]
        fn what_dirs_finds_under_an_absolute_home_is_kept() {
            let found = BaseDirs {
                home: p("/home/a"),
                config: p("/x/config"),
                cache: p("/x/cache"),
                data_local: p("/x/data"),
            };
            assert_eq!(settle(Os::Linux, found.clone(), || p("/root")), found);
            assert_eq!(
                settle(Os::Linux, linux("/home/a"), || None),
                linux("/home/a")
            );
        }

        #[test]
        fn a_relative_home_counts_as_unset_and_nothing_relative_comes_out() {
            // HOME=rel with no XDG_* set: dirs derives every directory from "rel".
            let from_relative = BaseDirs {
                home: p("rel"),
                config: p("rel/.config"),
                cache: p("rel/.cache"),
                data_local: p("rel/.local/share"),
            };
            assert_eq!(
                settle(Os::Linux, from_relative.clone(), || p("/home/a")),
                linux("/home/a"),
                "as if unset: the user database's home"
            );
            assert_eq!(
                settle(Os::Linux, from_relative.clone(), || None),
                BaseDirs::default()
            );
            assert_eq!(
                settle(Os::Linux, from_relative, || p("relative")),
                BaseDirs::default()
            );
            // An absolute XDG_CACHE_HOME stays, whatever HOME is.
            let with_xdg = BaseDirs {
                cache: p("/x/cache"),
                ..linux("rel")
            };
            let settled = settle(Os::Linux, with_xdg, || p("/home/a"));
            assert_eq!(settled.cache, p("/x/cache"));
            assert_eq!(settled.config, p("/home/a/.config"));
            // macOS: everything under ~/Library.
            assert_eq!(
                settle(Os::Macos, macos("rel"), || p("/Users/a")),
                macos("/Users/a")
            );
        }

        #[test]
        fn directories_keep_bytes_that_are_not_utf8() {
            let home = PathBuf::from(OsStr::from_bytes(b"/home/\xff"));
            let found = BaseDirs {
                cache: Some(PathBuf::from(OsStr::from_bytes(b"/x/caf\xe9"))),
                home: Some(home),
                ..BaseDirs::default()
            };
            let d = settle(Os::Linux, found, || None);
            assert_eq!(
                d.cache_dir().unwrap().as_os_str().as_bytes(),
                b"/x/caf\xe9/docker-credential-gcp"
            );
        }

        #[test]
        fn the_user_database_names_an_absolute_home() {
            assert!(account_home().is_some_and(|h| h.is_absolute()));
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use super::BaseDirs;

    pub(super) fn current() -> BaseDirs {
        BaseDirs {
            home: dirs::home_dir(),
            config: dirs::config_dir(),
            cache: dirs::cache_dir(),
            data_local: dirs::data_local_dir(),
        }
    }
}

/// The Docker engine whose daemon.json `configure-mirror` edits by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// dockerd as a system service (Linux).
    SystemDockerd,
    /// Docker Desktop (macOS, and Windows when it is installed).
    DockerDesktop,
    /// dockerd as a Windows service (Windows Server, no Docker Desktop).
    WindowsService,
}

impl Engine {
    pub(crate) fn for_os(os: Os, desktop_installed: bool) -> Engine {
        match os {
            Os::Linux => Engine::SystemDockerd,
            Os::Macos => Engine::DockerDesktop,
            Os::Windows if desktop_installed => Engine::DockerDesktop,
            Os::Windows => Engine::WindowsService,
        }
    }

    /// The daemon.json this engine reads.
    pub(crate) fn daemon_json(
        self,
        dirs: &BaseDirs,
        program_data: Option<&Path>,
    ) -> Option<PathBuf> {
        match self {
            Engine::SystemDockerd => Some(PathBuf::from("/etc/docker/daemon.json")),
            Engine::DockerDesktop => Some(dirs.home.as_ref()?.join(".docker").join("daemon.json")),
            Engine::WindowsService => Some(
                program_data?
                    .join("docker")
                    .join("config")
                    .join("daemon.json"),
            ),
        }
    }

    /// How to make the engine read a changed daemon.json.
    pub(crate) fn restart_advice(self) -> &'static str {
        match self {
            Engine::SystemDockerd => {
                "restart dockerd (`sudo systemctl restart docker`, or `sudo service docker restart`)"
            }
            Engine::DockerDesktop => {
                "restart Docker Desktop (its menu: Restart), or apply the same change in Settings > Docker Engine"
            }
            Engine::WindowsService => {
                "restart the docker service (`Restart-Service docker` in an elevated PowerShell)"
            }
        }
    }
}

/// Where Docker Desktop for Windows installs itself, to tell it from a bare dockerd service.
pub(crate) fn docker_desktop_marker(program_files: &Path) -> PathBuf {
    program_files
        .join("Docker")
        .join("Docker")
        .join("Docker Desktop.exe")
}

/// The file name of a program on PATH: `docker` → `docker.exe` on Windows; gcloud is a batch
/// file there (`gcloud.cmd`).
pub(crate) fn program_file(os: Os, program: &str) -> String {
    match (os, program) {
        (Os::Windows, "gcloud") => "gcloud.cmd".to_owned(),
        (Os::Windows, p) => format!("{p}.exe"),
        (_, p) => p.to_owned(),
    }
}

/// The credHelpers value that selects a helper binary called `file_name`: the name without
/// `docker-credential-` and, on Windows, without `.exe` in any case (`gcp.EXE` → `gcp`).
pub(crate) fn helper_suffix(os: Os, file_name: &str) -> Option<String> {
    let name = match os {
        Os::Windows => strip_suffix_ignore_case(file_name, ".exe"),
        Os::Linux | Os::Macos => file_name,
    };
    name.strip_prefix("docker-credential-")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> &'a str {
    let cut = s.len().saturating_sub(suffix.len());
    match (s.get(..cut), s.get(cut..)) {
        (Some(head), Some(tail)) if tail.eq_ignore_ascii_case(suffix) => head,
        _ => s,
    }
}

/// Whether a machine's product name (Linux DMI `product_name`, Windows
/// `HKLM\SYSTEM\HardwareConfig\Current\SystemProductName`) says it is a Google Compute Engine VM,
/// as Google's client libraries decide it.
pub(crate) fn is_google_product(name: &str) -> bool {
    name.trim().starts_with("Google")
}

/// Where the machine's product name is read, per platform: a file on Linux, a registry value on
/// Windows, nothing on macOS (no Google Cloud VMs run macOS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProductName {
    File(&'static str),
    Registry {
        key: &'static str,
        value: &'static str,
    },
    Unavailable,
}

pub(crate) fn product_name_source(os: Os) -> ProductName {
    match os {
        Os::Linux => ProductName::File("/sys/class/dmi/id/product_name"),
        Os::Windows => ProductName::Registry {
            key: r"SYSTEM\HardwareConfig\Current",
            value: "SystemProductName",
        },
        Os::Macos => ProductName::Unavailable,
    }
}

/// Whether replacing a file failed only because another process holds it open: on Windows,
/// `ERROR_ACCESS_DENIED` (5) and `ERROR_SHARING_VIOLATION` (32) pass once that process closes
/// it (Go's own tools retry the same two). On Unix `rename` is never blocked by readers.
pub(crate) fn replace_is_retryable(os: Os, raw_os_error: Option<i32>) -> bool {
    os == Os::Windows && matches!(raw_os_error, Some(5 | 32))
}

/// The wait before replace attempt `n` (0-based): 1, 2, 4 … ms, at most 100 ms.
pub(crate) fn replace_backoff(n: u32) -> std::time::Duration {
    std::time::Duration::from_millis((1u64 << n.min(7)).min(100))
}

/// How a user adds a directory to PATH, for the "not on PATH" hint.
pub(crate) fn path_hint(os: Os, dir: &str) -> String {
    match os {
        Os::Windows => format!(
            "$env:Path = \"{dir};$env:Path\" (and in System Properties > Environment Variables)"
        ),
        Os::Linux | Os::Macos => format!("export PATH=\"{dir}:$PATH\""),
    }
}

/// The platform's user paths as help text shows them.
pub(crate) fn help_paths(os: Os) -> [(&'static str, &'static str); 3] {
    match os {
        Os::Linux => [
            ("settings", "~/.config/docker-credential-gcp/config.json"),
            ("token cache", "~/.cache/docker-credential-gcp/"),
            (
                "login index",
                "~/.local/share/docker-credential-gcp/stored-hosts.json",
            ),
        ],
        Os::Macos => [
            (
                "settings",
                "~/Library/Application Support/docker-credential-gcp/config.json",
            ),
            ("token cache", "~/Library/Caches/docker-credential-gcp/"),
            (
                "login index",
                "~/Library/Application Support/docker-credential-gcp/stored-hosts.json",
            ),
        ],
        Os::Windows => [
            ("settings", r"%APPDATA%\docker-credential-gcp\config.json"),
            ("token cache", r"%LOCALAPPDATA%\docker-credential-gcp\"),
            (
                "login index",
                r"%LOCALAPPDATA%\docker-credential-gcp\stored-hosts.json",
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux() -> BaseDirs {
        BaseDirs {
            home: Some("/home/a".into()),
            config: Some("/home/a/.config".into()),
            cache: Some("/home/a/.cache".into()),
            data_local: Some("/home/a/.local/share".into()),
        }
    }

    fn macos() -> BaseDirs {
        BaseDirs {
            home: Some("/Users/a".into()),
            config: Some("/Users/a/Library/Application Support".into()),
            cache: Some("/Users/a/Library/Caches".into()),
            data_local: Some("/Users/a/Library/Application Support".into()),
        }
    }

    fn windows() -> BaseDirs {
        BaseDirs {
            home: Some(r"C:\Users\a".into()),
            config: Some(r"C:\Users\a\AppData\Roaming".into()),
            cache: Some(r"C:\Users\a\AppData\Local".into()),
            data_local: Some(r"C:\Users\a\AppData\Local".into()),
        }
    }

    fn p(s: &str) -> Option<PathBuf> {
        Some(PathBuf::from(s))
    }

    #[test]
    fn windows_folders_follow_their_variables_when_set_to_absolute_paths() {
        let set = |name: &str| -> Option<OsString> {
            match name {
                "USERPROFILE" => Some(r"D:\home\b".into()),
                "APPDATA" => Some(r"D:\home\b\Roaming".into()),
                "LOCALAPPDATA" => Some(r"\\srv\b\Local".into()),
                _ => None,
            }
        };
        let dirs = windows().with_windows_variables(Os::Windows, set);
        assert_eq!(dirs.home, p(r"D:\home\b"));
        assert_eq!(dirs.config, p(r"D:\home\b\Roaming"));
        assert_eq!(dirs.cache, p(r"\\srv\b\Local"));
        assert_eq!(dirs.data_local, p(r"\\srv\b\Local"));

        let relative = |_: &str| -> Option<OsString> { Some(r"AppData\Roaming".into()) };
        let unchanged = windows().with_windows_variables(Os::Windows, relative);
        assert_eq!(unchanged, windows(), "a relative path is ignored");
        let unset = windows().with_windows_variables(Os::Windows, |_| None);
        assert_eq!(unset, windows());
        for (os, base) in [(Os::Linux, linux()), (Os::Macos, macos())] {
            assert_eq!(base.clone().with_windows_variables(os, set), base, "{os:?}");
        }
    }

    #[test]
    fn own_files_live_in_each_platforms_user_directories() {
        let l = linux();
        assert_eq!(
            l.config_file(None),
            p("/home/a/.config/docker-credential-gcp/config.json")
        );
        assert_eq!(l.cache_dir(), p("/home/a/.cache/docker-credential-gcp"));
        assert_eq!(
            l.data_dir(),
            p("/home/a/.local/share/docker-credential-gcp")
        );
        let m = macos();
        assert_eq!(
            m.config_file(None),
            p("/Users/a/Library/Application Support/docker-credential-gcp/config.json")
        );
        assert_eq!(
            m.cache_dir(),
            p("/Users/a/Library/Caches/docker-credential-gcp")
        );
        let w = windows();
        assert_eq!(
            w.config_file(None),
            Some(
                PathBuf::from(r"C:\Users\a\AppData\Roaming")
                    .join(APP_DIR)
                    .join("config.json")
            )
        );
        assert_eq!(
            w.data_dir(),
            Some(PathBuf::from(r"C:\Users\a\AppData\Local").join(APP_DIR))
        );
        assert_eq!(BaseDirs::default().config_file(None), None);
        // DOCKER_CREDENTIAL_GCP_CONFIG names another file, on every platform.
        for dirs in [l, m, w, BaseDirs::default()] {
            assert_eq!(
                dirs.config_file(Some("/ci/job-7.json".into())),
                p("/ci/job-7.json")
            );
        }
    }

    #[test]
    fn gcloud_keeps_its_linux_layout_on_macos_and_uses_appdata_on_windows() {
        assert_eq!(linux().gcloud_dir(Os::Linux), p("/home/a/.config/gcloud"));
        assert_eq!(macos().gcloud_dir(Os::Macos), p("/Users/a/.config/gcloud"));
        assert_eq!(
            windows().gcloud_dir(Os::Windows),
            Some(PathBuf::from(r"C:\Users\a\AppData\Roaming").join("gcloud"))
        );
    }

    #[test]
    fn docker_config_follows_docker_config_or_home() {
        assert_eq!(
            linux().docker_config(Some("/d".into())),
            p("/d/config.json")
        );
        assert_eq!(
            linux().docker_config(None),
            p("/home/a/.docker/config.json")
        );
        assert_eq!(BaseDirs::default().docker_config(None), None);
    }

    #[test]
    fn each_engine_has_its_daemon_json_and_restart_advice() {
        let pd = Path::new(r"C:\ProgramData");
        let cases = [
            (
                Os::Linux,
                false,
                linux(),
                p("/etc/docker/daemon.json"),
                "systemctl",
            ),
            (
                Os::Macos,
                false,
                macos(),
                p("/Users/a/.docker/daemon.json"),
                "Docker Desktop",
            ),
            (
                Os::Windows,
                true,
                windows(),
                Some(
                    PathBuf::from(r"C:\Users\a")
                        .join(".docker")
                        .join("daemon.json"),
                ),
                "Docker Desktop",
            ),
            (
                Os::Windows,
                false,
                windows(),
                Some(pd.join("docker").join("config").join("daemon.json")),
                "Restart-Service docker",
            ),
        ];
        for (os, desktop, dirs, path, advice) in cases {
            let engine = Engine::for_os(os, desktop);
            assert_eq!(
                engine.daemon_json(&dirs, Some(pd)),
                path,
                "{os:?} {desktop}"
            );
            assert!(engine.restart_advice().contains(advice), "{os:?}");
        }
        assert!(!Engine::DockerDesktop.restart_advice().contains("sudo"));
    }

    #[test]
    fn program_files_and_helper_names() {
        assert_eq!(program_file(Os::Linux, "docker"), "docker");
        assert_eq!(program_file(Os::Macos, "gcloud"), "gcloud");
        assert_eq!(program_file(Os::Windows, "docker"), "docker.exe");
        assert_eq!(program_file(Os::Windows, "gcloud"), "gcloud.cmd");
        for (os, name, want) in [
            (Os::Linux, "docker-credential-gcp", Some("gcp")),
            (Os::Linux, "docker-credential-gcr.exe", Some("gcr.exe")),
            (Os::Windows, "docker-credential-gcp.exe", Some("gcp")),
            (Os::Windows, "docker-credential-gcp.EXE", Some("gcp")),
            (Os::Windows, "docker-credential-gcp.Exe", Some("gcp")),
            (Os::Macos, "docker-credential-", None),
            (Os::Windows, "helper.exe", None),
        ] {
            assert_eq!(helper_suffix(os, name).as_deref(), want, "{os:?} {name}");
        }
    }

    #[test]
    fn google_vms_are_recognised_by_product_name() {
        assert!(is_google_product("Google Compute Engine\n"));
        assert!(is_google_product("Google"));
        assert!(!is_google_product("VirtualBox"));
        assert!(!is_google_product(""));
        assert_eq!(
            product_name_source(Os::Linux),
            ProductName::File("/sys/class/dmi/id/product_name")
        );
        assert!(matches!(
            product_name_source(Os::Windows),
            ProductName::Registry {
                value: "SystemProductName",
                ..
            }
        ));
        assert_eq!(product_name_source(Os::Macos), ProductName::Unavailable);
    }

    #[test]
    fn only_windows_sharing_errors_are_retried_when_replacing_a_file() {
        assert!(replace_is_retryable(Os::Windows, Some(5)));
        assert!(replace_is_retryable(Os::Windows, Some(32)));
        assert!(!replace_is_retryable(Os::Windows, Some(2)));
        assert!(!replace_is_retryable(Os::Windows, None));
        assert!(!replace_is_retryable(Os::Linux, Some(5)));
        assert!(!replace_is_retryable(Os::Macos, Some(32)));
        assert_eq!(replace_backoff(0).as_millis(), 1);
        assert_eq!(replace_backoff(3).as_millis(), 8);
        assert_eq!(replace_backoff(20).as_millis(), 100);
    }

    #[test]
    fn hints_and_help_paths_fit_the_platform() {
        assert!(path_hint(Os::Linux, "/opt/x").starts_with("export PATH="));
        assert!(path_hint(Os::Windows, r"C:\x").contains("$env:Path"));
        assert!(
            help_paths(Os::Macos)[0]
                .1
                .contains("Library/Application Support")
        );
        assert!(help_paths(Os::Windows)[1].1.contains("LOCALAPPDATA"));
        assert!(help_paths(Os::Linux)[2].1.contains(".local/share"));
    }
}
