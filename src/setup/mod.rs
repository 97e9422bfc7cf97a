//! Setting up the programs around the helper: `configure-docker` (docker's config.json),
//! `configure-mirror` (dockerd, containerd, podman), and `doctor`, which checks it all. Also
//! the editing of other programs' config files that they share, the list of Google registry
//! hosts, and the Artifact Registry locations call behind `configure-docker --discover`.

pub(crate) mod configure;
mod discover;
pub(crate) mod docker;
pub(crate) mod doctor;
mod edit;
pub(crate) mod json_file;
pub(crate) mod mirror;
pub(crate) mod registries;
