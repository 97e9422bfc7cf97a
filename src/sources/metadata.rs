//! The GCE / GKE metadata server as a token source.
//!
//! Off Google Cloud there is no metadata server, and probing for one would cost a network
//! timeout on every cold `get`. So the source counts as present only when `GCE_METADATA_HOST`
//! is set or the machine's DMI product name says Google; both checks are free.

use anyhow::{Result, anyhow, bail};

use super::MintContext;
use crate::cache::{STALE_MARGIN_SECS, Token, now_secs};
use crate::http;

const DEFAULT_HOST: &str = "169.254.169.254";
const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// The metadata server's host[:port], if this looks like Google Cloud.
pub fn locate() -> Option<String> {
    if let Some(host) = std::env::var("GCE_METADATA_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
    {
        return Some(host.trim().to_owned());
    }
    let product = std::fs::read_to_string("/sys/class/dmi/id/product_name").ok()?;
    matches!(product.trim(), "Google" | "Google Compute Engine").then(|| DEFAULT_HOST.to_owned())
}

pub fn mint(host: &str, ctx: &mut MintContext) -> Result<Token> {
    let url = format!("http://{host}{TOKEN_PATH}");
    let step = format!("metadata server {host}");
    let deadline = ctx.deadline;
    let resp = ctx
        .http()?
        .get(&url, &[("Metadata-Flavor", "Google")], deadline)
        .map_err(|e| anyhow!("{step}: {e:#}"))?;
    let flavor = resp
        .headers
        .get("metadata-flavor")
        .and_then(|v| v.to_str().ok());
    if resp.status == 200 && flavor != Some("Google") {
        bail!("{step}: the answer lacks the Metadata-Flavor: Google header; not a metadata server");
    }
    let token = http::parse_token_response(&resp).map_err(|e| anyhow!("{step}: {e}"))?;
    if token.remaining_secs(now_secs()) <= STALE_MARGIN_SECS {
        bail!("{step}: returned a token that expires within {STALE_MARGIN_SECS} seconds");
    }
    Ok(token)
}
