//! Transport: the HTTP client every request to Google (and to the identity providers of
//! external accounts) goes through, and what it decides on the way. Nothing in here knows
//! about tokens, credentials or registries; `token` builds on it, and the set-up commands use
//! it for their own API calls.
//!
//! - `http`: the runtime, the proxied and the direct hyper client, typed `HttpError`, the one
//!   retry policy, and the URL policy (https, or plain http to this machine only);
//! - `proxy`: which proxy a destination uses (HTTPS_PROXY, HTTP_PROXY, NO_PROXY; pure);
//! - `connect`: the connector (direct, CONNECT tunnel or forward) and its `ProxyError`;
//! - `tls`: the certificate authorities trusted (OS roots, Mozilla's as a last resort, plus
//!   `ca_file`).
//!
//! Building a client costs milliseconds (root certificates, proxy variables): the cached `get`
//! never reaches this module.

mod connect;
pub(crate) mod http;
pub(crate) mod proxy;
pub(crate) mod tap;
pub(crate) mod tls;
