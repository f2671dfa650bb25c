//! Deployments (stable + candidate + candidate fraction), their transitions, and deterministic
//! request routing. Pure: the store decides nothing here, it only persists what these return.
//!
//! A request goes to the candidate when `bucket(prompt, request_id) < fraction`. The bucket is
//! the first 53 bits of SHA-256(`prompt` NUL `request_id`) as a number in `[0, 1)`, so it is the
//! same on every process, machine and restart, uniform over ids, and sticky when the fraction
//! grows: an id below 5% is also below 25%.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use semver::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{RegistryError, Result};
use crate::version::{PromptVersion, VersionStatus};

/// Where `request_id` falls in `[0, 1)` for `prompt`: stable across processes and restarts.
pub fn bucket(prompt: &str, request_id: &str) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(prompt.as_bytes());
    hasher.update([0u8]);
    hasher.update(request_id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let bits = u64::from_be_bytes(first) >> 11;
    // 53 bits fit an f64 mantissa exactly, so the division is exact and below 1.
    #[expect(clippy::cast_precision_loss, reason = "53-bit value is exact in f64")]
    let value = bits as f64 / (1u64 << 53) as f64;
    value
}

/// Checks a traffic fraction: finite and within `[0, 1]`.
pub fn check_fraction(what: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(RegistryError::InvalidFraction { what, value })
    }
}

/// A prompt's rollout state: the stable version serves everything the candidate does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The prompt.
    pub prompt: String,
    /// The version serving the rest of the traffic.
    pub stable: Version,
    /// The version being rolled out, if any.
    pub candidate: Option<Version>,
    /// Share of request ids routed to the candidate (0 without one).
    pub candidate_fraction: f64,
}

/// Which side of a deployment served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    /// The deployment's stable version.
    Stable,
    /// The deployment's candidate version.
    Candidate,
    /// No deployment: the prompt's latest version.
    Latest,
}

impl Arm {
    /// The lowercase name printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Stable => "stable",
            Arm::Candidate => "candidate",
            Arm::Latest => "latest",
        }
    }
}

impl Deployment {
    /// The version serving `request_id`, and from which side.
    pub fn route(&self, request_id: &str) -> (&Version, Arm) {
        match &self.candidate {
            Some(candidate) if bucket(&self.prompt, request_id) < self.candidate_fraction => {
                (candidate, Arm::Candidate)
            }
            _ => (&self.stable, Arm::Stable),
        }
    }
}

/// A requested change to a prompt's rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum DeploymentRequest {
    /// Start a canary of `version` at `fraction` (or make it stable when nothing is deployed).
    Deploy {
        /// The candidate.
        version: Version,
        /// Its share of traffic.
        fraction: f64,
    },
    /// Change the candidate's share of traffic.
    Expand {
        /// The new share.
        fraction: f64,
    },
    /// Make the candidate the stable version at 100%.
    Promote,
    /// Drop the candidate (or, with `to`, make an older version stable).
    Rollback {
        /// The version to return to; `None` keeps the stable version and drops the candidate.
        to: Option<Version>,
        /// Only roll back while this is still the candidate (auto-rollback racing a promote).
        expect_candidate: Option<Version>,
    },
}

impl DeploymentRequest {
    /// The verb recorded in the audit trail.
    pub fn action(&self) -> &'static str {
        match self {
            DeploymentRequest::Deploy { .. } => "deploy",
            DeploymentRequest::Expand { .. } => "expand",
            DeploymentRequest::Promote => "promote",
            DeploymentRequest::Rollback { .. } => "rollback",
        }
    }
}

/// What a deployment change does: the new state plus the status and label moves that go with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The state before.
    pub before: Option<Deployment>,
    /// The state after.
    pub after: Deployment,
    /// Versions whose status changes.
    pub statuses: Vec<(Version, VersionStatus)>,
    /// Labels that move (`production`, `staging`).
    pub labels: Vec<(String, Version)>,
    /// Labels removed.
    pub removed_labels: Vec<String>,
}

/// Label that follows the stable version.
pub const PRODUCTION_LABEL: &str = "production";
/// Label that follows the candidate version.
pub const STAGING_LABEL: &str = "staging";

/// Applies `request` to the current state. `exists` tells whether a version of the prompt exists.
pub fn transition(
    prompt: &str,
    current: Option<&Deployment>,
    request: &DeploymentRequest,
    exists: &dyn Fn(&Version) -> bool,
) -> Result<Transition> {
    let action = request.action();
    let refuse = |reason: String| RegistryError::InvalidTransition {
        name: prompt.to_owned(),
        action,
        reason,
    };
    let require = |version: &Version| {
        if exists(version) {
            Ok(())
        } else {
            Err(RegistryError::UnknownVersion {
                name: prompt.to_owned(),
                version: version.to_string(),
            })
        }
    };
    let before = current.cloned();
    let mut statuses = Vec::new();
    let mut labels = Vec::new();
    let mut removed_labels = Vec::new();
    let after = match (request, current) {
        (DeploymentRequest::Deploy { version, fraction }, None) => {
            check_fraction("canary fraction", *fraction)?;
            require(version)?;
            statuses.push((version.clone(), VersionStatus::Production));
            labels.push((PRODUCTION_LABEL.to_owned(), version.clone()));
            Deployment {
                prompt: prompt.to_owned(),
                stable: version.clone(),
                candidate: None,
                candidate_fraction: 0.0,
            }
        }
        (DeploymentRequest::Deploy { version, fraction }, Some(current)) => {
            check_fraction("canary fraction", *fraction)?;
            require(version)?;
            if let Some(candidate) = &current.candidate {
                return Err(refuse(format!(
                    "candidate {candidate} is still rolling out; promote or roll it back first"
                )));
            }
            if *version == current.stable {
                return Err(refuse(format!("{version} is already the stable version")));
            }
            statuses.push((version.clone(), VersionStatus::Staging));
            labels.push((STAGING_LABEL.to_owned(), version.clone()));
            Deployment {
                candidate: Some(version.clone()),
                candidate_fraction: *fraction,
                ..current.clone()
            }
        }
        (_, None) => {
            return Err(refuse(
                "it has no deployment; start one with `deploy NAME@VERSION`".to_owned(),
            ));
        }
        (DeploymentRequest::Expand { fraction }, Some(current)) => {
            check_fraction("traffic fraction", *fraction)?;
            if current.candidate.is_none() {
                return Err(refuse("it has no candidate version to expand".to_owned()));
            }
            Deployment {
                candidate_fraction: *fraction,
                ..current.clone()
            }
        }
        (DeploymentRequest::Promote, Some(current)) => {
            let Some(candidate) = &current.candidate else {
                return Err(refuse("it has no candidate version to promote".to_owned()));
            };
            statuses.push((current.stable.clone(), VersionStatus::Deprecated));
            statuses.push((candidate.clone(), VersionStatus::Production));
            labels.push((PRODUCTION_LABEL.to_owned(), candidate.clone()));
            removed_labels.push(STAGING_LABEL.to_owned());
            Deployment {
                prompt: prompt.to_owned(),
                stable: candidate.clone(),
                candidate: None,
                candidate_fraction: 0.0,
            }
        }
        (
            DeploymentRequest::Rollback {
                to,
                expect_candidate,
            },
            Some(current),
        ) => {
            if let Some(expected) = expect_candidate
                && current.candidate.as_ref() != Some(expected)
            {
                return Err(refuse(format!(
                    "candidate is no longer {expected} (now {})",
                    current
                        .candidate
                        .as_ref()
                        .map_or_else(|| "none".to_owned(), ToString::to_string)
                )));
            }
            if let Some(candidate) = &current.candidate {
                statuses.push((candidate.clone(), VersionStatus::Draft));
                removed_labels.push(STAGING_LABEL.to_owned());
            }
            match to {
                None => {
                    if current.candidate.is_none() {
                        return Err(refuse(
                            "it has no candidate to roll back; use `--to VERSION` to return to an \
                             older version"
                                .to_owned(),
                        ));
                    }
                    Deployment {
                        candidate: None,
                        candidate_fraction: 0.0,
                        ..current.clone()
                    }
                }
                Some(target) => {
                    require(target)?;
                    if *target != current.stable {
                        statuses.push((current.stable.clone(), VersionStatus::Deprecated));
                    }
                    statuses.retain(|(v, _)| v != target);
                    statuses.push((target.clone(), VersionStatus::Production));
                    labels.push((PRODUCTION_LABEL.to_owned(), target.clone()));
                    Deployment {
                        prompt: prompt.to_owned(),
                        stable: target.clone(),
                        candidate: None,
                        candidate_fraction: 0.0,
                    }
                }
            }
        }
    };
    Ok(Transition {
        before,
        after,
        statuses,
        labels,
        removed_labels,
    })
}

/// The versions of one prompt the router needs: its deployment (if any) and latest version.
#[derive(Debug, Clone)]
pub struct PromptRoutes {
    /// The rollout state; without one, every request gets `latest`.
    pub deployment: Option<Deployment>,
    /// The prompt's highest version.
    pub latest: Arc<PromptVersion>,
    /// The deployment's stable and candidate versions, by version.
    pub versions: HashMap<Version, Arc<PromptVersion>>,
}

/// An immutable snapshot of every prompt's routing, swapped whole when the store changes.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    /// The store's change revision the snapshot was read at.
    pub revision: i64,
    /// Routes by prompt name.
    pub prompts: HashMap<String, PromptRoutes>,
}

/// The version chosen for one request.
#[derive(Debug, Clone)]
pub struct Route {
    /// The version to serve.
    pub version: Arc<PromptVersion>,
    /// Which side of the deployment it came from.
    pub arm: Arm,
}

impl RoutingTable {
    /// The version serving `request_id` for `prompt`, or `None` for an unknown prompt.
    pub fn resolve(&self, prompt: &str, request_id: &str) -> Option<Route> {
        let routes = self.prompts.get(prompt)?;
        let Some(deployment) = &routes.deployment else {
            return Some(Route {
                version: Arc::clone(&routes.latest),
                arm: Arm::Latest,
            });
        };
        let (version, arm) = deployment.route(request_id);
        let version = routes.versions.get(version)?;
        Some(Route {
            version: Arc::clone(version),
            arm,
        })
    }
}

/// The in-memory router every request consults: lock-free reads of the current snapshot.
#[derive(Debug, Default)]
pub struct Router {
    table: ArcSwap<RoutingTable>,
}

impl Router {
    /// A router serving `table`.
    pub fn new(table: RoutingTable) -> Router {
        Router {
            table: ArcSwap::from_pointee(table),
        }
    }

    /// The version serving `request_id` for `prompt`; no I/O, no lock.
    pub fn resolve(&self, prompt: &str, request_id: &str) -> Option<Route> {
        self.table.load().resolve(prompt, request_id)
    }

    /// The revision of the snapshot in use.
    pub fn revision(&self) -> i64 {
        self.table.load().revision
    }

    /// The snapshot in use.
    pub fn snapshot(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Replaces the snapshot atomically; readers see the old or the new one, never a mix.
    pub fn replace(&self, table: RoutingTable) {
        self.table.store(Arc::new(table));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(patch: u64) -> Version {
        Version::new(1, 0, patch)
    }

    fn deployment(fraction: f64) -> Deployment {
        Deployment {
            prompt: "greet".into(),
            stable: v(0),
            candidate: Some(v(1)),
            candidate_fraction: fraction,
        }
    }

    #[test]
    fn bucket_is_stable_across_runs() {
        // Fixed expectation: a change of hash or mapping would silently re-route users.
        let value = bucket("greet", "req-1");
        assert!((0.0..1.0).contains(&value));
        assert_eq!(value, bucket("greet", "req-1"));
        assert_ne!(value, bucket("greet2", "req-1"));
        assert_ne!(bucket("ab", "c"), bucket("a", "bc"));
    }

    #[test]
    fn routing_is_uniform_over_100k_ids() {
        for fraction in [0.05, 0.25, 0.5] {
            let d = deployment(fraction);
            let n = 100_000;
            let hits = (0..n)
                .filter(|i| d.route(&format!("req-{i}")).1 == Arm::Candidate)
                .count();
            let expected = fraction * f64::from(n);
            let sd = (f64::from(n) * fraction * (1.0 - fraction)).sqrt();
            let observed = hits as f64;
            assert!(
                (observed - expected).abs() < 5.0 * sd,
                "fraction {fraction}: {hits} of {n}"
            );
        }
    }

    proptest! {
        #[test]
        fn expansion_is_sticky(id in ".{0,40}", small in 0.0f64..=1.0, extra in 0.0f64..=1.0) {
            let large = (small + extra).min(1.0);
            let at_small = deployment(small).route(&id).1;
            let at_large = deployment(large).route(&id).1;
            if at_small == Arm::Candidate {
                prop_assert_eq!(at_large, Arm::Candidate);
            }
        }

        #[test]
        fn bucket_in_unit_interval(prompt in ".{0,20}", id in ".{0,40}") {
            let b = bucket(&prompt, &id);
            prop_assert!((0.0..1.0).contains(&b));
        }
    }

    #[test]
    fn extremes() {
        let all = deployment(1.0);
        let none = deployment(0.0);
        for i in 0..1000 {
            let id = format!("r{i}");
            assert_eq!(all.route(&id).1, Arm::Candidate);
            assert_eq!(none.route(&id).1, Arm::Stable);
        }
    }

    fn exists(_: &Version) -> bool {
        true
    }

    #[test]
    fn lifecycle_transitions() {
        let first = transition(
            "greet",
            None,
            &DeploymentRequest::Deploy {
                version: v(0),
                fraction: 0.05,
            },
            &exists,
        )
        .unwrap();
        assert_eq!(first.after.stable, v(0));
        assert_eq!(first.after.candidate, None);
        let canary = transition(
            "greet",
            Some(&first.after),
            &DeploymentRequest::Deploy {
                version: v(1),
                fraction: 0.05,
            },
            &exists,
        )
        .unwrap();
        assert_eq!(canary.after.candidate, Some(v(1)));
        let expanded = transition(
            "greet",
            Some(&canary.after),
            &DeploymentRequest::Expand { fraction: 0.25 },
            &exists,
        )
        .unwrap();
        assert_eq!(expanded.after.candidate_fraction, 0.25);
        let promoted = transition(
            "greet",
            Some(&expanded.after),
            &DeploymentRequest::Promote,
            &exists,
        )
        .unwrap();
        assert_eq!(promoted.after.stable, v(1));
        assert_eq!(promoted.after.candidate, None);
        let promote_again = transition(
            "greet",
            Some(&promoted.after),
            &DeploymentRequest::Promote,
            &exists,
        );
        assert!(matches!(
            promote_again,
            Err(RegistryError::InvalidTransition { .. })
        ));
        let back = transition(
            "greet",
            Some(&promoted.after),
            &DeploymentRequest::Rollback {
                to: Some(v(0)),
                expect_candidate: None,
            },
            &exists,
        )
        .unwrap();
        assert_eq!(back.after.stable, v(0));
    }

    #[test]
    fn bad_requests_are_refused() {
        let current = deployment(0.05);
        for fraction in [1.5, -0.1, f64::NAN] {
            let err = transition(
                "greet",
                Some(&current),
                &DeploymentRequest::Expand { fraction },
                &exists,
            )
            .unwrap_err();
            assert!(
                matches!(err, RegistryError::InvalidFraction { .. }),
                "{err}"
            );
        }
        let missing = transition(
            "greet",
            None,
            &DeploymentRequest::Deploy {
                version: v(9),
                fraction: 0.1,
            },
            &|_| false,
        );
        assert!(matches!(missing, Err(RegistryError::UnknownVersion { .. })));
        let busy = transition(
            "greet",
            Some(&current),
            &DeploymentRequest::Deploy {
                version: v(2),
                fraction: 0.1,
            },
            &exists,
        );
        assert!(matches!(busy, Err(RegistryError::InvalidTransition { .. })));
        let raced = transition(
            "greet",
            Some(&current),
            &DeploymentRequest::Rollback {
                to: None,
                expect_candidate: Some(v(7)),
            },
            &exists,
        );
        assert!(matches!(
            raced,
            Err(RegistryError::InvalidTransition { .. })
        ));
    }
}
