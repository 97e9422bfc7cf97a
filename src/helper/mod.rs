//! The docker-credential-helpers protocol (`get`, `store`, `erase`, `list`) and the `docker
//! login` credentials it keeps in the OS keyring.

pub(crate) mod login;
pub(crate) mod protocol;
pub(crate) mod store;
