//! The GCE / GKE metadata server as a token source.
//!
//! Off Google Cloud there is no metadata server, and probing for one would cost a network
//! timeout on every cold `get`. So the source counts as present only when `GCE_METADATA_HOST`
//! is set or the machine's product name says Google (a file on Linux, a registry value on
//! Windows; both free to read), as Google's client libraries decide it. The metadata server is
//! reached directly, never through a proxy. Besides tokens it answers which project the VM
//! belongs to ([`project_id`]).

use anyhow::{Context, Result, anyhow, bail};

use super::access::Token;
use super::oauth;
use crate::net::http::{MintContext, Request, Response};
use crate::util::env;
use crate::util::files::{self, Symlinks, Trust};
use crate::util::platform::{self, Os, ProductName};
use crate::util::text::excerpt;
use crate::util::winreg;

const DEFAULT_HOST: &str = "169.254.169.254";
const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const PROJECT_PATH: &str = "/computeMetadata/v1/project/project-id";

/// The metadata server's host[:port], if this looks like Google Cloud.
pub(crate) fn locate() -> Option<String> {
    if let Some(host) = env::var("GCE_METADATA_HOST").filter(|h| !h.trim().is_empty()) {
        return Some(host.trim().to_owned());
    }
    let name = product_name(platform::product_name_source(Os::CURRENT))?;
    platform::is_google_product(&name).then(|| DEFAULT_HOST.to_owned())
}

fn product_name(source: ProductName) -> Option<String> {
    match source {
        ProductName::File(path) => {
            let bytes = files::read_bounded(path.as_ref(), 4096, Symlinks::Follow, Trust::Anyone)
                .ok()??;
            String::from_utf8(bytes).ok()
        }
        ProductName::Registry { key, value } => winreg::local_machine_string(key, value),
        ProductName::Unavailable => None,
    }
}

pub(crate) fn mint(host: &str, ctx: &mut MintContext) -> Result<Token> {
    let (step, resp) = get(host, TOKEN_PATH, ctx)?;
    oauth::parse_token_response(&resp, oauth::Grant::Metadata).with_context(|| step)
}

/// The project the VM or node belongs to, as the metadata server at `host` names it.
pub(crate) fn project_id(host: &str, ctx: &mut MintContext) -> Result<String> {
    let (step, resp) = get(host, PROJECT_PATH, ctx)?;
    if !resp.is_success() {
        bail!(
            "{step}: HTTP {} for {PROJECT_PATH}: {}",
            resp.status,
            excerpt(&resp.body)
        );
    }
    let project = String::from_utf8_lossy(&resp.body).trim().to_owned();
    if project.is_empty() {
        bail!("{step}: the project ID it returned is empty");
    }
    Ok(project)
}

/// GETs `path` from the metadata server at `host`, directly (never through a proxy), with
/// `Metadata-Flavor: Google`; a 200 answer must carry the same header, or it did not come from
/// a metadata server. Returns the step's name for messages and the answer.
fn get(host: &str, path: &str, ctx: &mut MintContext) -> Result<(String, Response)> {
    let step = format!("metadata server {host}");
    let deadline = ctx.deadline;
    let req = Request::get(&format!("http://{host}{path}"))
        .header("metadata-flavor", "Google")
        .direct();
    let resp = ctx
        .http()?
        .send(&req, deadline)
        .map_err(|e| anyhow!("{step}: {e}"))?;
    let flavor = resp
        .headers
        .get("metadata-flavor")
        .and_then(|v| v.to_str().ok());
    if resp.status == 200 && flavor != Some("Google") {
        bail!("{step}: the answer lacks the Metadata-Flavor: Google header; not a metadata server");
    }
    Ok((step, resp))
}
