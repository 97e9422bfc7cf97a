//! The docker-credential-helpers protocol (`get`, `store`, `erase`, `list`), Bazel's
//! credential-helper protocol (a `get` whose input is JSON), and the `docker login`
//! credentials kept in the OS keyring.

pub(crate) mod bazel;
pub(crate) mod login;
pub(crate) mod protocol;
pub(crate) mod store;
