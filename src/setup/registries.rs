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
pub(crate) const AR_REGIONS: [(&str, bool); 46] = [
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
    ("asia-southeast3", false),
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
    ("us-west8", true),
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
/// Artifact Registry hosts (98 in all).
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
    fn the_full_set_is_ninety_eight_hosts() {
        assert_eq!(all_hosts().len(), 98);
    }

    /// docker-credential-gcr 2.1.32's default registries (`config/const.go`): a user moving
    /// from it must lose no host.
    #[test]
    fn the_default_hosts_include_every_host_docker_credential_gcr_configures() {
        let gcr_2_1_32 = "gcr.io us.gcr.io eu.gcr.io asia.gcr.io marketplace.gcr.io \
            africa-south1-docker.pkg.dev docker.africa-south1.rep.pkg.dev asia-docker.pkg.dev \
            asia-east1-docker.pkg.dev docker.asia-east1.rep.pkg.dev asia-east2-docker.pkg.dev \
            docker.asia-east2.rep.pkg.dev asia-northeast1-docker.pkg.dev \
            docker.asia-northeast1.rep.pkg.dev asia-northeast2-docker.pkg.dev \
            docker.asia-northeast2.rep.pkg.dev asia-northeast3-docker.pkg.dev \
            docker.asia-northeast3.rep.pkg.dev asia-south1-docker.pkg.dev \
            docker.asia-south1.rep.pkg.dev asia-south2-docker.pkg.dev docker.asia-south2.rep.pkg.dev \
            asia-southeast1-docker.pkg.dev docker.asia-southeast1.rep.pkg.dev \
            asia-southeast2-docker.pkg.dev docker.asia-southeast2.rep.pkg.dev \
            australia-southeast1-docker.pkg.dev docker.australia-southeast1.rep.pkg.dev \
            australia-southeast2-docker.pkg.dev docker.australia-southeast2.rep.pkg.dev \
            europe-docker.pkg.dev europe-central2-docker.pkg.dev docker.europe-central2.rep.pkg.dev \
            europe-north1-docker.pkg.dev docker.europe-north1.rep.pkg.dev \
            europe-north2-docker.pkg.dev europe-southwest1-docker.pkg.dev \
            docker.europe-southwest1.rep.pkg.dev europe-west1-docker.pkg.dev \
            docker.europe-west1.rep.pkg.dev europe-west10-docker.pkg.dev \
            docker.europe-west10.rep.pkg.dev europe-west12-docker.pkg.dev \
            docker.europe-west12.rep.pkg.dev europe-west2-docker.pkg.dev \
            docker.europe-west2.rep.pkg.dev europe-west3-docker.pkg.dev \
            docker.europe-west3.rep.pkg.dev europe-west4-docker.pkg.dev \
            docker.europe-west4.rep.pkg.dev europe-west6-docker.pkg.dev \
            docker.europe-west6.rep.pkg.dev europe-west8-docker.pkg.dev \
            docker.europe-west8.rep.pkg.dev europe-west9-docker.pkg.dev \
            docker.europe-west9.rep.pkg.dev me-central1-docker.pkg.dev docker.me-central1.rep.pkg.dev \
            me-central2-docker.pkg.dev docker.me-central2.rep.pkg.dev me-west1-docker.pkg.dev \
            docker.me-west1.rep.pkg.dev northamerica-northeast1-docker.pkg.dev \
            docker.northamerica-northeast1.rep.pkg.dev northamerica-northeast2-docker.pkg.dev \
            docker.northamerica-northeast2.rep.pkg.dev northamerica-south1-docker.pkg.dev \
            southamerica-east1-docker.pkg.dev docker.southamerica-east1.rep.pkg.dev \
            southamerica-west1-docker.pkg.dev docker.southamerica-west1.rep.pkg.dev \
            us-docker.pkg.dev us-central1-docker.pkg.dev docker.us-central1.rep.pkg.dev \
            us-east1-docker.pkg.dev docker.us-east1.rep.pkg.dev us-east4-docker.pkg.dev \
            docker.us-east4.rep.pkg.dev us-east5-docker.pkg.dev docker.us-east5.rep.pkg.dev \
            us-south1-docker.pkg.dev docker.us-south1.rep.pkg.dev us-west1-docker.pkg.dev \
            docker.us-west1.rep.pkg.dev us-west2-docker.pkg.dev docker.us-west2.rep.pkg.dev \
            us-west3-docker.pkg.dev docker.us-west3.rep.pkg.dev us-west4-docker.pkg.dev \
            docker.us-west4.rep.pkg.dev us-west8-docker.pkg.dev docker.us-west8.rep.pkg.dev \
            europe-north2-docker.pkg.dev asia-southeast3-docker.pkg.dev";
        let ours = all_hosts();
        let missing: Vec<&str> = gcr_2_1_32
            .split_whitespace()
            .filter(|h| !ours.iter().any(|o| o == h))
            .collect();
        assert_eq!(gcr_2_1_32.split_whitespace().count(), 94);
        assert!(missing.is_empty(), "not in our defaults: {missing:?}");
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
