//! ADC files of type `impersonated_service_account`, as written by
//! `gcloud auth application-default login --impersonate-service-account`.
//!
//! The file wraps ordinary source credentials (a `service_account` key or `authorized_user`
//! refresh token, minted by the flows in `adc.rs`, or a federated `external_account` /
//! `external_account_authorized_user`, minted by `external.rs`) and names the service account to
//! impersonate; the source token is exchanged for that account's token through
//! `generateAccessToken` (in `external.rs`), passing the file's `delegates` chain. This module
//! only reads the file and wires the two steps together.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use serde_json::Value;

use super::external::{self, DEFAULT_LIFETIME_SECS};
use super::{MintContext, adc};
use crate::cache::Token;
use crate::http;

#[derive(Deserialize)]
struct ImpersonatedServiceAccount {
    service_account_impersonation_url: String,
    source_credentials: Value,
    #[serde(default)]
    delegates: Vec<String>,
}

pub(super) fn mint(path: &Path, doc: Value, ctx: &mut MintContext) -> Result<Token> {
    let file: ImpersonatedServiceAccount =
        external::parse_file(path, "impersonated_service_account", doc)?;
    http::check_url(&file.service_account_impersonation_url).map_err(|e| {
        anyhow!(
            "{}: service_account_impersonation_url: {e:#}",
            path.display()
        )
    })?;
    let source = source_token(path, file.source_credentials, ctx)?;
    external::impersonate(
        &file.service_account_impersonation_url,
        &source.secret,
        DEFAULT_LIFETIME_SECS,
        &file.delegates,
        ctx,
    )
}

/// The token of the credentials doing the impersonating.
fn source_token(path: &Path, source: Value, ctx: &mut MintContext) -> Result<Token> {
    let kind = source.get("type").and_then(Value::as_str).unwrap_or("");
    let token = match kind {
        "service_account" => {
            let bytes = serde_json::to_vec(&source)?;
            adc::service_account(path, &bytes, ctx)
        }
        "authorized_user" => adc::authorized_user(path, source, ctx),
        "external_account" => external::mint_external_account(path, source, ctx),
        "external_account_authorized_user" => external::mint_authorized_user(path, source, ctx),
        "" => bail!("{}: source_credentials has no \"type\"", path.display()),
        other => bail!(
            "{}: source_credentials of credential type {:?} are not supported \
             (service_account, authorized_user, external_account or \
             external_account_authorized_user)",
            path.display(),
            http::excerpt(other.as_bytes())
        ),
    };
    token.map_err(|e| anyhow!("source_credentials: {e:#}"))
}
