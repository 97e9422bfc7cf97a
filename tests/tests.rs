//! The integration tests: one binary (as in ripgrep), so the support code is compiled once.
//! Each module drives the built helper the way docker does (argv and stdin) against loopback
//! servers and real peers the test starts itself. A test whose peer programs are missing says
//! so and returns outside CI, and fails in CI (see support/peers.rs).

// Modules that use Unix APIs (FIFOs, signals, shell scripts) are built on Unix only, and those
// that need Linux peers or could reach the OS keyring (the Keychain on macOS, Credential
// Manager on Windows; tests must never touch the developer's own) on Linux only, where the
// tests start a private Secret Service.

// Tests, benchmarks and build scripts talk to the console and read the real environment;
// the house rules for the program (util::ui, util::env) do not apply here.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

#[cfg(unix)]
mod support;

mod architecture;
#[cfg(target_os = "linux")]
mod cached_path;
#[cfg(unix)]
mod configure;
#[cfg(target_os = "linux")]
mod daemons;
#[cfg(unix)]
mod discover;
// The docs: README.md's size, relative links and anchors, every subcommand and flag in docs/commands.md.
mod docs;
#[cfg(target_os = "linux")]
mod e2e;
#[cfg(target_os = "linux")]
mod empty_root;
#[cfg(unix)]
mod faults;
#[cfg(unix)]
mod federation;
#[cfg(unix)]
mod gcloud;
#[cfg(target_os = "linux")]
mod hardening;
#[cfg(target_os = "linux")]
mod hostile;
#[cfg(unix)]
mod install;
#[cfg(unix)]
mod kubelet;
#[cfg(unix)]
mod kubelet_rules;
#[cfg(target_os = "linux")]
mod login;
#[cfg(unix)]
mod protocol;
#[cfg(target_os = "linux")]
mod proxy;
#[cfg(unix)]
mod refresh_ahead;
#[cfg(target_os = "linux")]
mod store;
#[cfg(unix)]
mod tokens;
