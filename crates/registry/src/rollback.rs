//! The auto-rollback policy: a canary is judged against its deployment's stable version once
//! both have a minimum sample. Thresholds default to the seed's figures.

use serde::{Deserialize, Serialize};

use crate::metrics::{MetricsSummary, VersionMetrics};

/// Thresholds a candidate must keep while it serves canary traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackPolicy {
    /// Lowest acceptable success rate (default 0.95).
    pub min_success_rate: f64,
    /// Highest acceptable parse error rate (default 0.05).
    pub max_parse_error_rate: f64,
    /// Highest acceptable ratio of candidate to stable p95 latency (default 1.2).
    pub max_latency_p95_ratio: f64,
    /// Highest acceptable ratio of candidate to stable mean cost (default 1.15).
    pub max_cost_ratio: f64,
    /// Requests each side needs before it is judged (default 100).
    pub min_requests: u64,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        RollbackPolicy {
            min_success_rate: 0.95,
            max_parse_error_rate: 0.05,
            max_latency_p95_ratio: 1.2,
            max_cost_ratio: 1.15,
            min_requests: 100,
        }
    }
}

/// One threshold the candidate broke, with the figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    /// Which check (`success_rate`, `parse_error_rate`, `latency_p95_ratio`, `cost_ratio`).
    pub check: String,
    /// The candidate's figure.
    pub observed: f64,
    /// The threshold it broke.
    pub limit: f64,
}

/// The policy's verdict on a canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum CanaryVerdict {
    /// Too few requests to judge yet.
    InsufficientData {
        /// Requests the candidate has.
        candidate_requests: u64,
        /// Requests the stable version has.
        stable_requests: u64,
        /// Requests each needs.
        min_requests: u64,
    },
    /// Every threshold holds.
    Healthy {
        /// The candidate's figures.
        candidate: MetricsSummary,
        /// The stable version's figures.
        stable: MetricsSummary,
    },
    /// At least one threshold is broken: roll back.
    Breach {
        /// The broken thresholds.
        breaches: Vec<Breach>,
        /// The candidate's figures.
        candidate: MetricsSummary,
        /// The stable version's figures.
        stable: MetricsSummary,
    },
}

impl RollbackPolicy {
    /// Judges `candidate` against `stable`. Ratio checks are skipped when the stable figure is 0.
    pub fn evaluate(&self, candidate: &VersionMetrics, stable: &VersionMetrics) -> CanaryVerdict {
        let enough = candidate.requests >= self.min_requests.max(1)
            && stable.requests >= self.min_requests.max(1);
        let (Some(cand), Some(base), true) = (candidate.summary(), stable.summary(), enough) else {
            return CanaryVerdict::InsufficientData {
                candidate_requests: candidate.requests,
                stable_requests: stable.requests,
                min_requests: self.min_requests,
            };
        };
        let mut breaches = Vec::new();
        if cand.success_rate < self.min_success_rate {
            breaches.push(Breach {
                check: "success_rate".into(),
                observed: cand.success_rate,
                limit: self.min_success_rate,
            });
        }
        if cand.parse_error_rate > self.max_parse_error_rate {
            breaches.push(Breach {
                check: "parse_error_rate".into(),
                observed: cand.parse_error_rate,
                limit: self.max_parse_error_rate,
            });
        }
        if base.latency_p95_ms > 0.0 {
            let ratio = cand.latency_p95_ms / base.latency_p95_ms;
            if ratio > self.max_latency_p95_ratio {
                breaches.push(Breach {
                    check: "latency_p95_ratio".into(),
                    observed: ratio,
                    limit: self.max_latency_p95_ratio,
                });
            }
        }
        if base.avg_cost > 0.0 {
            let ratio = cand.avg_cost / base.avg_cost;
            if ratio > self.max_cost_ratio {
                breaches.push(Breach {
                    check: "cost_ratio".into(),
                    observed: ratio,
                    limit: self.max_cost_ratio,
                });
            }
        }
        if breaches.is_empty() {
            CanaryVerdict::Healthy {
                candidate: cand,
                stable: base,
            }
        } else {
            CanaryVerdict::Breach {
                breaches,
                candidate: cand,
                stable: base,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Outcome;

    fn metrics(n: u32, fail_every: u32, latency: f64, cost: f64) -> VersionMetrics {
        let mut m = VersionMetrics::default();
        for i in 0..n {
            let failed = fail_every > 0 && i % fail_every == 0;
            m.record(&Outcome {
                success: !failed,
                parse_error: failed,
                validation_error: false,
                latency_ms: latency,
                input_tokens: 100,
                output_tokens: 20,
                cost,
            });
        }
        m
    }

    fn checks(verdict: &CanaryVerdict) -> Vec<String> {
        match verdict {
            CanaryVerdict::Breach { breaches, .. } => {
                breaches.iter().map(|b| b.check.clone()).collect()
            }
            _ => Vec::new(),
        }
    }

    #[test]
    fn waits_for_minimum_sample() {
        let policy = RollbackPolicy::default();
        let verdict = policy.evaluate(&metrics(50, 2, 100.0, 0.01), &metrics(500, 0, 100.0, 0.01));
        assert!(matches!(verdict, CanaryVerdict::InsufficientData { .. }));
    }

    #[test]
    fn healthy_canary_passes() {
        let policy = RollbackPolicy::default();
        let verdict = policy.evaluate(
            &metrics(200, 50, 110.0, 0.0105),
            &metrics(500, 50, 100.0, 0.01),
        );
        assert!(
            matches!(verdict, CanaryVerdict::Healthy { .. }),
            "{verdict:?}"
        );
    }

    #[test]
    fn each_threshold_trips() {
        let policy = RollbackPolicy::default();
        let base = metrics(500, 0, 100.0, 0.01);
        // 10% failures: success 0.90 < 0.95 and parse errors 0.10 > 0.05.
        assert_eq!(
            checks(&policy.evaluate(&metrics(200, 10, 100.0, 0.01), &base)),
            ["success_rate", "parse_error_rate"]
        );
        assert_eq!(
            checks(&policy.evaluate(&metrics(200, 0, 130.0, 0.01), &base)),
            ["latency_p95_ratio"]
        );
        assert_eq!(
            checks(&policy.evaluate(&metrics(200, 0, 100.0, 0.012), &base)),
            ["cost_ratio"]
        );
    }
}
