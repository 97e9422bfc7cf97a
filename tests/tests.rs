//! The integration tests: one binary (as in ripgrep), so the support code is compiled once.
//! Each module drives the built helper the way docker does (argv and stdin) against loopback
//! servers and real peers the test starts itself. A test whose peer programs are missing says
//! so and returns outside CI, and fails in CI (see support/peers.rs).

// Modules that use Unix APIs (FIFOs, signals, modes, shell scripts) are built on Unix only,
// and those that need Linux peers or could reach the OS keyring (the Keychain on macOS,
// Credential Manager on Windows; tests must never touch the developer's own) on Linux only,
// where the tests start a private Secret Service. The ungated modules also run on Windows
// (under Wine in CI: .ci/windows-macos.sh, docs/platforms.md), with the helper's folders
// (%USERPROFILE%, %APPDATA%, %LOCALAPPDATA%) inside each test's HOME.

// Tests, benchmarks and build scripts talk to the console and read the real environment;
// the house rules for the program (util::ui, util::env) do not apply here.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

mod support;

// One module per topic; a new test goes where its topic is (a new topic gets a new module and
// a line here). Pure parsers and decisions are unit-tested in src, next to the code.

// The layering of src/: imports point down, token/ is entered through its mod.rs, per-OS code sits in imp modules.
mod architecture;
// The docs: README.md's size, relative links and anchors, every subcommand and flag in docs/commands.md.
mod docs;
// The docker-credential-helpers protocol and the command line: bad input on every verb, usage, help, closed or full stdout, the reference helper.
mod protocol;
// Which addresses get a Google token, end to end: non-Google hosts, lookalikes, bucket hosts, declared registries.
mod host_policy;
// Bazel's credential-helper protocol (`get` with a JSON `uri`), and a real Bazel fetching through it.
#[cfg(target_os = "linux")]
mod bazel;
// Each token source (ADC files, the metadata server), their order, fallthrough, and how missing or malformed credential files are reported.
mod sources;
// Token endpoints and metadata servers that misbehave: retries, timeouts, resets, answers that are not tokens, echoes of what was sent, endless or huge answers, lifetimes, a silent DNS server.
#[cfg(target_os = "linux")]
mod endpoints;
// When no token can be had: failure kinds and their answers, remembered failures, waiting for another process's mint, the habits of the programs that run the helper.
#[cfg(unix)]
mod failures;
// The gcloud source: the real gcloud CLI offline, its identity, and stand-ins that hang, leave children or print too much.
#[cfg(unix)]
mod gcloud;
// external_account (file, url, executable, aws), external_account_authorized_user and impersonation, against STS and IAM stand-ins.
#[cfg(unix)]
mod federation;
// The token cache: sharing, expiry, fallback, the minting lock, and entries or directories another user could have written.
#[cfg(target_os = "linux")]
mod cache;
// The cached get stays a straight line: no thread, subprocess, socket or certificate loading (strace).
#[cfg(target_os = "linux")]
mod cached_path;
// Refresh ahead: a get near expiry answers at once and leaves one background refresh.
mod refresh_ahead;
// FIFOs, devices and planted symlinks at every path the helper opens: refused or skipped at once, never blocking.
#[cfg(target_os = "linux")]
mod special_files;
// Tokens, keys and stored secrets never reach stderr, the log file or another verb's output.
#[cfg(unix)]
mod secrets;
// store, erase and list against a real Secret Service, and docker login/logout through them.
#[cfg(target_os = "linux")]
mod store;
// docker login to a Google registry: a pasted token is served while it can be valid, our own is not kept.
#[cfg(target_os = "linux")]
mod login;
// Set-up: configure-docker, configure-mirror, doctor and print-access-token against real files in a temporary HOME.
#[cfg(unix)]
mod configure;
// configure-docker --discover against a stand-in of the Artifact Registry locations API.
#[cfg(unix)]
mod discover;
// Identity rules: several identities by registry host and image path, each with its own cache, lock and failures; config, doctor, print-access-token, kubelet path rules, self-signed JWTs.
#[cfg(unix)]
mod identities;
// The kubelet credential provider: requests in each API version, pod tokens at STS, errors on stderr.
#[cfg(unix)]
mod kubelet;
// The provider and the shipped example configs held to the kubelet's own rules (tests/support/kubelet.rs).
#[cfg(unix)]
mod kubelet_rules;
// Where the helper's own files go: paths from the environment and the config file, as any bytes, never relative to the current directory.
#[cfg(unix)]
mod paths;
// HTTPS_PROXY, HTTP_PROXY and NO_PROXY with real proxies (tinyproxy, squid) in a private network namespace.
#[cfg(target_os = "linux")]
mod proxy;
// The engines people run today (Docker 28 with buildx, containerd 2, podman 5, buildah, skopeo 1.22) from the current test root (tests/roots/current.sh), through the static helper, and configure-mirror on them; the clients of today (crane, oras, cosign, docker-py, testcontainers) in current_engines/clients.rs.
#[cfg(target_os = "linux")]
mod current_engines;
// The real daemons (dockerd, containerd, podman) configured by configure-docker and configure-mirror.
#[cfg(target_os = "linux")]
mod daemons;
// End to end: skopeo, docker, podman and buildah against a real registry with the helper as credHelpers entry.
#[cfg(target_os = "linux")]
mod e2e;
// The static executable in an empty root (no libc, no /etc/ssl).
#[cfg(target_os = "linux")]
mod empty_root;
// ./install.sh as a user runs it.
#[cfg(unix)]
mod install;
