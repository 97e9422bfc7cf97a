//! Which Google Cloud project the user works in, for the set-up commands that need one
//! (`configure-docker --discover`); nothing here runs on `get`.
//!
//! The order is the one Google's tools follow: gcloud's `core/project` (read from its
//! configuration files, never by running gcloud, which costs half a second), then the ADC
//! file's `quota_project_id` or `project_id`, then the metadata server. The metadata server is
//! asked only when it is one of the token sources: it is a network request, and a user who
//! turned it off for tokens does not want it consulted for anything else.

use anyhow::{Result, anyhow};
use serde_json::Value;

use super::{gcloud, metadata, sources};
use crate::net::http::MintContext;
use crate::settings::{Settings, SourceKind};
use crate::util::files::{self, Symlinks, Trust};

/// A project ID and where it came from (for messages: a wrong default is easy to spot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Project {
    pub(crate) id: String,
    pub(crate) origin: String,
}

/// The user's default project. The error lists every place that was looked at.
pub(crate) fn find(settings: &Settings, ctx: &mut MintContext) -> Result<Project> {
    let mut tried: Vec<String> = Vec::new();
    match gcloud::core_project() {
        Some((id, origin)) => return Ok(Project { id, origin }),
        None => tried.push("gcloud's configuration sets no core/project".to_owned()),
    }
    match adc_project() {
        Ok(Some(project)) => return Ok(project),
        Ok(None) => tried.push("no ADC file names a project".to_owned()),
        Err(e) => tried.push(format!("{e:#}")),
    }
    if !settings.token_sources.value.contains(&SourceKind::Metadata) {
        tried.push("the metadata server is not among the token sources".to_owned());
    } else if let Some(host) = metadata::locate() {
        match metadata::project_id(&host, ctx) {
            Ok(id) => {
                return Ok(Project {
                    id,
                    origin: format!("the metadata server {host}"),
                });
            }
            Err(e) => tried.push(format!("{e:#}")),
        }
    } else {
        tried.push("no metadata server (this is not a Google Cloud VM)".to_owned());
    }
    Err(anyhow!("no project found: {}", tried.join("; ")))
}

/// `quota_project_id`, else `project_id`, of the ADC file (`GOOGLE_APPLICATION_CREDENTIALS`,
/// else gcloud's well-known file). Only those two fields are read; nothing else of the file
/// reaches a message.
fn adc_project() -> Result<Option<Project>> {
    let Some((path, _)) = sources::adc_file() else {
        return Ok(None);
    };
    let Some(bytes) = files::read_bounded(
        &path,
        sources::MAX_CREDENTIALS_FILE,
        Symlinks::Follow,
        Trust::Anyone,
    )?
    else {
        return Ok(None);
    };
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|_| anyhow!("the ADC file {} is not valid JSON", path.display()))?;
    Ok(project_fields(&doc).map(|(id, field)| Project {
        id,
        origin: format!("{field} in the ADC file {}", path.display()),
    }))
}

/// The ADC file's project and the field it came from.
fn project_fields(doc: &Value) -> Option<(String, &'static str)> {
    ["quota_project_id", "project_id"]
        .into_iter()
        .find_map(|field| {
            let id = doc.get(field)?.as_str()?.trim();
            (!id.is_empty()).then(|| (id.to_owned(), field))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_project_wins_over_the_owning_project() {
        let both = serde_json::json!({"project_id": "owner", "quota_project_id": "billed"});
        assert_eq!(
            project_fields(&both),
            Some(("billed".to_owned(), "quota_project_id"))
        );
        let owner = serde_json::json!({"project_id": "owner", "quota_project_id": ""});
        assert_eq!(
            project_fields(&owner),
            Some(("owner".to_owned(), "project_id"))
        );
        assert_eq!(project_fields(&serde_json::json!({"project_id": 7})), None);
        assert_eq!(project_fields(&serde_json::json!([])), None);
    }
}
