//! The Google registry hosts this release knows, as data in one place.
//!
//! `configure-docker` maps all of them by default, and `doctor` names those missing from
//! credHelpers. The host *policy* (which hosts may receive a token) lives in `hosts.rs` and
//! accepts every `*.gcr.io`, `*-docker.pkg.dev` and `docker.*.rep.pkg.dev` host, so a region
//! missing here still works once it is configured (`configure-docker --discover` asks the
//! Artifact Registry API for the current locations; `--registries` or the config file's
//! `registries` name hosts by hand). It follows the Artifact Registry locations published with
//! gcloud 528 (`googlecloudsdk/core/docker/constants.py`).

/// Container Registry hosts: gcr.io, its regional hosts, the
/// Marketplace host and the Kubernetes release staging host (gcloud authenticates the same set).
/// `k8s.gcr.io` and the `mirror.gcr.io` hosts are public and read-only, so they need no helper.
pub(crate) const GCR_HOSTS: [&str; 6] = [
    "gcr.io",
    "us.gcr.io",
    "eu.gcr.io",
    "asia.gcr.io",
    "marketplace.gcr.io",
    "staging-k8s.gcr.io",
];

/// Artifact Registry multi-regions: `LOCATION-docker.pkg.dev`.
pub(crate) const AR_MULTI_REGIONS: [&str; 3] = ["us", "europe", "asia"];

/// Artifact Registry regions, and whether each has a regional endpoint
/// `docker.REGION.rep.pkg.dev`.
pub(crate) const AR_REGIONS: [(&str, bool); 45] = [
    ("africa-south1", true),
    ("asia-east1", true),
    ("asia-east2", true),
    ("asia-northeast1", true),
    ("asia-northeast2", true),
    ("asia-northeast3", true),
    ("asia-south1", true),
    ("asia-south2", true),
    ("asia-southeast1", true),
    ("asia-southeast2", true),
    ("australia-southeast1", true),
    ("australia-southeast2", true),
    ("europe-central2", true),
    ("europe-north1", true),
    ("europe-north2", false),
    ("europe-southwest1", true),
    ("europe-west1", true),
    ("europe-west10", true),
    ("europe-west12", true),
    ("europe-west2", true),
    ("europe-west3", true),
    ("europe-west4", true),
    ("europe-west6", true),
    ("europe-west8", true),
    ("europe-west9", true),
    ("me-central1", true),
    ("me-central2", true),
    ("me-west1", true),
    ("northamerica-northeast1", true),
    ("northamerica-northeast2", true),
    ("northamerica-south1", false),
    ("southamerica-east1", true),
    ("southamerica-west1", true),
    ("us-central1", true),
    ("us-central2", true),
    ("us-east1", true),
    ("us-east4", true),
    ("us-east5", true),
    ("us-east7", true),
    ("us-south1", true),
    ("us-west1", true),
    ("us-west2", true),
    ("us-west3", true),
    ("us-west4", true),
    ("us-west8", false),
];

/// Every Artifact Registry Docker host: multi-regions, regions and regional endpoints.
pub(crate) fn artifact_registry_hosts() -> Vec<String> {
    let mut hosts: Vec<String> = AR_MULTI_REGIONS
        .iter()
        .map(|r| format!("{r}-docker.pkg.dev"))
        .collect();
    for (region, has_rep) in AR_REGIONS {
        hosts.push(format!("{region}-docker.pkg.dev"));
        if has_rep {
            hosts.push(format!("docker.{region}.rep.pkg.dev"));
        }
    }
    hosts
}

/// Every Google registry host this release knows: the Container Registry hosts, then the
/// Artifact Registry hosts (96 in all).
pub(crate) fn all_hosts() -> Vec<String> {
    let mut hosts: Vec<String> = GCR_HOSTS.iter().map(|h| (*h).to_owned()).collect();
    hosts.extend(artifact_registry_hosts());
    hosts
}

/// Whether `location` is an Artifact Registry location this release lists.
pub(crate) fn is_known_location(location: &str) -> bool {
    AR_MULTI_REGIONS.contains(&location) || AR_REGIONS.iter().any(|(r, _)| *r == location)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::{self, HostClass};

    #[test]
    fn the_host_list_has_no_duplicates() {
        let hosts = all_hosts();
        let unique: std::collections::BTreeSet<&String> = hosts.iter().collect();
        assert_eq!(unique.len(), hosts.len());
        let regions: std::collections::BTreeSet<&str> =
            AR_REGIONS.iter().map(|(r, _)| *r).collect();
        assert_eq!(regions.len(), AR_REGIONS.len());
    }

    #[test]
    fn every_listed_host_passes_the_host_policy() {
        for host in all_hosts() {
            let r = hosts::normalise(&host).unwrap();
            assert_eq!(hosts::classify(&r, &[]), HostClass::Google, "{host}");
        }
    }

    #[test]
    fn the_full_set_is_ninety_six_hosts() {
        assert_eq!(all_hosts().len(), 96);
    }

    #[test]
    fn known_locations_are_the_listed_multi_regions_and_regions() {
        assert!(is_known_location("us"));
        assert!(is_known_location("europe-west1"));
        assert!(is_known_location("us-west8"));
        assert!(!is_known_location("mars-north1"));
        assert!(!is_known_location("us-docker.pkg.dev"));
    }
}
