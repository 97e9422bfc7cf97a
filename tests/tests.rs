//! The integration tests: one binary (as in ripgrep), so the support code is compiled once.
//! Each module drives the built helper the way docker does (argv and stdin) against loopback
//! servers and real peers the test starts itself. Tests whose peer programs were missing when
//! this was built are reported as ignored (see tests/peers.rs); in CI they run and fail.

// Tests, benchmarks and build scripts talk to the console and read the real environment;
// the house rules for the program (util::ui, util::env) do not apply here.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

mod support;

mod architecture;
mod cached_path;
mod configure;
mod daemons;
mod e2e;
mod faults;
mod federation;
mod gcloud;
mod hardening;
mod kubelet;
mod protocol;
mod store;
mod tokens;
