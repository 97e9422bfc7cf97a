//! The certificate authorities HTTPS requests trust, and the rustls configuration.
//!
//! 1. The OS store, through rustls-native-certs, which reads `SSL_CERT_FILE` and `SSL_CERT_DIR`
//!    instead of the OS store when either is set (as OpenSSL does), on every platform.
//! 2. Only when that yields nothing and neither variable is set (a static binary in an empty
//!    chroot or a distroless image), Mozilla's roots compiled in (webpki-roots). If the user
//!    named files with those variables, their choice stands, with a warning.
//! 3. Plus the PEM certificates of `ca_file` (`DOCKER_CREDENTIAL_GCP_CA_FILE`): a company CA,
//!    e.g. of a proxy that inspects TLS, added to the others rather than replacing them.
//!
//! Verification is never switched off. Loading the OS store costs milliseconds, so this runs
//! only when a token is minted (and in `doctor`), never on the cached `get`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::util::env;
use crate::util::files::{self, Symlinks, Trust};

/// Largest `ca_file` read.
const MAX_CA_FILE: u64 = 8 * 1024 * 1024;

/// Where the trusted roots came from, for the debug log and `doctor`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RootsReport {
    pub(crate) os: usize,
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR` replaced the OS store.
    pub(crate) os_from_env: bool,
    /// Problems reading the OS store (a missing SSL_CERT_FILE, an unreadable file).
    pub(crate) os_errors: Vec<String>,
    /// Mozilla's roots, used because the OS had none.
    pub(crate) builtin: usize,
    pub(crate) extra: usize,
    pub(crate) extra_file: Option<PathBuf>,
}

impl fmt::Display for RootsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = if self.os_from_env {
            "SSL_CERT_FILE/SSL_CERT_DIR"
        } else {
            "the OS"
        };
        write!(f, "{} from {from}", self.os)?;
        if self.builtin > 0 {
            write!(
                f,
                ", {} built in (Mozilla's, as the OS has none)",
                self.builtin
            )?;
        }
        if let Some(file) = &self.extra_file {
            write!(f, ", {} from ca_file {}", self.extra, file.display())?;
        }
        Ok(())
    }
}

/// The roots to trust: the OS store (or Mozilla's if it is empty) plus `ca_file`.
///
/// A `ca_file` that cannot be read, holds a malformed PEM section or no certificate at all is
/// an error: the user asked for it explicitly.
pub(crate) fn load_roots(ca_file: Option<&Path>) -> Result<(RootCertStore, RootsReport)> {
    let mut report = RootsReport {
        os_from_env: env::var_os("SSL_CERT_FILE").is_some()
            || env::var_os("SSL_CERT_DIR").is_some(),
        ..RootsReport::default()
    };
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    report.os_errors = native.errors.iter().map(ToString::to_string).collect();
    report.os = roots.add_parsable_certificates(native.certs).0;
    if report.os_from_env && !report.os_errors.is_empty() {
        log::warn!(
            "SSL_CERT_FILE/SSL_CERT_DIR: {}",
            report.os_errors.join("; ")
        );
    }
    if roots.is_empty() && !report.os_from_env {
        log::debug!(
            "no OS root certificates ({}); using Mozilla's",
            report.os_errors.join("; ")
        );
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        report.builtin = roots.len();
    }
    if let Some(file) = ca_file {
        report.extra =
            add_ca_file(&mut roots, file).with_context(|| format!("ca_file {}", file.display()))?;
        report.extra_file = Some(file.to_owned());
    }
    if roots.is_empty() {
        log::warn!(
            "no trusted root certificates (SSL_CERT_FILE/SSL_CERT_DIR gave none); HTTPS requests will fail"
        );
    }
    Ok((roots, report))
}

fn add_ca_file(roots: &mut RootCertStore, file: &Path) -> Result<usize> {
    let bytes = files::read_bounded(file, MAX_CA_FILE, Symlinks::Follow, Trust::Anyone)?
        .ok_or_else(|| anyhow!("the file does not exist"))?;
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| anyhow!("not a valid PEM file ({e})"))?;
        roots
            .add(cert)
            .map_err(|e| anyhow!("certificate {} is not usable ({e})", added + 1))?;
        added += 1;
    }
    if added == 0 {
        bail!("the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    }
    Ok(added)
}

/// The rustls client configuration: ring, TLS 1.2 and 1.3, these roots.
pub(crate) fn client_config(roots: RootCertStore) -> Result<rustls::ClientConfig> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("no TLS protocol versions")?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_cannot_be_used_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let cases = [
            (dir.path().join("missing.pem"), "does not exist"),
            (
                write("text.pem", "not a certificate\n"),
                "no PEM certificate",
            ),
            (
                write("cut.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n"),
                "not a valid PEM file",
            ),
            (
                write(
                    "junk.pem",
                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                ),
                "certificate 1 is not usable",
            ),
            (dir.path().to_path_buf(), "directory"),
        ];
        for (path, needle) in cases {
            let e = format!("{:#}", load_roots(Some(&path)).unwrap_err());
            assert!(
                e.starts_with(&format!("ca_file {}", path.display())) && e.contains(needle),
                "{e}"
            );
        }
    }

    #[test]
    fn the_report_says_where_the_roots_came_from() {
        let report = RootsReport {
            os: 140,
            extra: 2,
            extra_file: Some("/etc/corp/ca.pem".into()),
            ..RootsReport::default()
        };
        assert_eq!(
            report.to_string(),
            "140 from the OS, 2 from ca_file /etc/corp/ca.pem"
        );
        let report = RootsReport {
            builtin: 150,
            ..RootsReport::default()
        };
        assert_eq!(
            report.to_string(),
            "0 from the OS, 150 built in (Mozilla's, as the OS has none)"
        );
    }
}
