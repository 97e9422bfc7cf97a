//! Small utilities that know nothing about registries or tokens: the environment, safe file
//! access, child processes, platform paths, the redacting secret type and logging. Nothing in
//! here imports from the rest of the crate.

pub(crate) mod env;
pub(crate) mod files;
#[cfg(windows)]
pub(crate) mod job;
pub(crate) mod logging;
pub(crate) mod platform;
pub(crate) mod process;
pub(crate) mod secret;
pub(crate) mod text;
pub(crate) mod ui;
pub(crate) mod winreg;
