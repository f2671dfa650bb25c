//! Per-version metrics: counters, a log-bucketed latency histogram (p50/p95/p99), tokens and
//! cost. [`MetricsRecorder`] accumulates on the request path in memory; the store rolls the
//! accumulated deltas up with additive upserts, so concurrent flushes never lose counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::{RegistryError, Result};

/// Upper bound of bucket 0, in milliseconds.
const HISTOGRAM_MIN_MS: f64 = 0.1;
/// Each bucket's upper bound is 5% above the previous one, so quantiles are within 5%.
const HISTOGRAM_GROWTH: f64 = 1.05;
/// The last bucket (everything above ~25 000 s lands there).
pub const HISTOGRAM_MAX_BUCKET: u16 = 400;

/// The histogram bucket a latency falls into.
pub fn latency_bucket(latency_ms: f64) -> u16 {
    if latency_ms <= HISTOGRAM_MIN_MS {
        return 0;
    }
    let index = ((latency_ms / HISTOGRAM_MIN_MS).ln() / HISTOGRAM_GROWTH.ln()).ceil();
    if index >= f64::from(HISTOGRAM_MAX_BUCKET) {
        HISTOGRAM_MAX_BUCKET
    } else {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "0 < index < 400"
        )]
        let index = index as u16;
        index
    }
}

/// The upper bound in milliseconds of a histogram bucket.
pub fn bucket_upper_ms(bucket: u16) -> f64 {
    HISTOGRAM_MIN_MS * HISTOGRAM_GROWTH.powi(i32::from(bucket))
}

/// What one request did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The request produced a usable answer.
    pub success: bool,
    /// The answer could not be parsed (e.g. invalid JSON).
    #[serde(default)]
    pub parse_error: bool,
    /// The answer parsed but failed validation (schema, guard).
    #[serde(default)]
    pub validation_error: bool,
    /// End-to-end latency in milliseconds.
    pub latency_ms: f64,
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Completion tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Cost in USD.
    #[serde(default)]
    pub cost: f64,
}

impl Outcome {
    /// Checks the numbers are finite and not negative.
    pub fn validate(&self) -> Result<()> {
        if !(self.latency_ms.is_finite() && self.latency_ms >= 0.0) {
            return Err(RegistryError::InvalidOutcome(format!(
                "latency_ms {} must be a non-negative number",
                self.latency_ms
            )));
        }
        if !(self.cost.is_finite() && self.cost >= 0.0) {
            return Err(RegistryError::InvalidOutcome(format!(
                "cost {} must be a non-negative number",
                self.cost
            )));
        }
        Ok(())
    }
}

/// Accumulated metrics of one prompt version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionMetrics {
    /// Requests recorded.
    pub requests: u64,
    /// Of which succeeded.
    pub successes: u64,
    /// Of which failed to parse.
    pub parse_errors: u64,
    /// Of which failed validation.
    pub validation_errors: u64,
    /// Prompt tokens in total.
    pub input_tokens: u64,
    /// Completion tokens in total.
    pub output_tokens: u64,
    /// Cost in USD in total.
    pub cost_total: f64,
    /// Latency in milliseconds in total.
    pub latency_sum_ms: f64,
    /// Request counts by latency bucket (see [`latency_bucket`]).
    pub latency_buckets: BTreeMap<u16, u64>,
}

impl VersionMetrics {
    /// Adds one request.
    pub fn record(&mut self, outcome: &Outcome) {
        self.requests += 1;
        self.successes += u64::from(outcome.success);
        self.parse_errors += u64::from(outcome.parse_error);
        self.validation_errors += u64::from(outcome.validation_error);
        self.input_tokens += outcome.input_tokens;
        self.output_tokens += outcome.output_tokens;
        self.cost_total += outcome.cost;
        self.latency_sum_ms += outcome.latency_ms;
        *self
            .latency_buckets
            .entry(latency_bucket(outcome.latency_ms))
            .or_insert(0) += 1;
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &VersionMetrics) {
        self.requests += other.requests;
        self.successes += other.successes;
        self.parse_errors += other.parse_errors;
        self.validation_errors += other.validation_errors;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_total += other.cost_total;
        self.latency_sum_ms += other.latency_sum_ms;
        for (bucket, count) in &other.latency_buckets {
            *self.latency_buckets.entry(*bucket).or_insert(0) += count;
        }
    }

    /// The latency at quantile `q` (0..=1): the upper bound of the bucket holding that rank, so
    /// at most 5% above the true value. `None` without requests.
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency_buckets.values().sum();
        if total == 0 {
            return None;
        }
        #[expect(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "rank of a count, clamped to [1, total]"
        )]
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bucket, count) in &self.latency_buckets {
            seen += count;
            if seen >= rank {
                return Some(bucket_upper_ms(*bucket));
            }
        }
        None
    }

    /// Rates, averages and latency quantiles; `None` without requests.
    pub fn summary(&self) -> Option<MetricsSummary> {
        if self.requests == 0 {
            return None;
        }
        #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
        let n = self.requests as f64;
        #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
        let rate = |count: u64| count as f64 / n;
        Some(MetricsSummary {
            requests: self.requests,
            success_rate: rate(self.successes),
            parse_error_rate: rate(self.parse_errors),
            validation_error_rate: rate(self.validation_errors),
            latency_mean_ms: self.latency_sum_ms / n,
            latency_p50_ms: self.latency_quantile(0.50).unwrap_or(0.0),
            latency_p95_ms: self.latency_quantile(0.95).unwrap_or(0.0),
            latency_p99_ms: self.latency_quantile(0.99).unwrap_or(0.0),
            avg_cost: self.cost_total / n,
            avg_input_tokens: rate(self.input_tokens),
            avg_output_tokens: rate(self.output_tokens),
        })
    }
}

/// Derived figures of a version's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSummary {
    /// Requests recorded.
    pub requests: u64,
    /// Successes per request.
    pub success_rate: f64,
    /// Parse errors per request.
    pub parse_error_rate: f64,
    /// Validation errors per request.
    pub validation_error_rate: f64,
    /// Mean latency.
    pub latency_mean_ms: f64,
    /// Median latency (bucket upper bound).
    pub latency_p50_ms: f64,
    /// 95th percentile latency (bucket upper bound).
    pub latency_p95_ms: f64,
    /// 99th percentile latency (bucket upper bound).
    pub latency_p99_ms: f64,
    /// Mean cost per request in USD.
    pub avg_cost: f64,
    /// Mean prompt tokens per request.
    pub avg_input_tokens: f64,
    /// Mean completion tokens per request.
    pub avg_output_tokens: f64,
}

/// In-memory accumulation of outcomes on the request path, drained by [`MetricsRecorder::take`]
/// and flushed to the store in batches.
#[derive(Debug, Default)]
pub struct MetricsRecorder {
    pending: Mutex<HashMap<String, HashMap<Version, VersionMetrics>>>,
}

impl MetricsRecorder {
    /// An empty recorder.
    pub fn new() -> MetricsRecorder {
        MetricsRecorder::default()
    }

    /// Adds one outcome for `prompt@version` (one short lock, no allocation once the version is
    /// known).
    pub fn record(&self, prompt: &str, version: &Version, outcome: &Outcome) -> Result<()> {
        outcome.validate()?;
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let versions = match pending.get_mut(prompt) {
            Some(versions) => versions,
            None => pending.entry(prompt.to_owned()).or_default(),
        };
        match versions.get_mut(version) {
            Some(metrics) => metrics.record(outcome),
            None => versions.entry(version.clone()).or_default().record(outcome),
        }
        Ok(())
    }

    /// Drains everything recorded since the last call.
    pub fn take(&self) -> Vec<(String, Version, VersionMetrics)> {
        let drained =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        drained
            .into_iter()
            .flat_map(|(prompt, versions)| {
                versions
                    .into_iter()
                    .map(move |(version, metrics)| (prompt.clone(), version, metrics))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn outcome(latency_ms: f64, success: bool) -> Outcome {
        Outcome {
            success,
            parse_error: !success,
            validation_error: false,
            latency_ms,
            input_tokens: 10,
            output_tokens: 5,
            cost: 0.001,
        }
    }

    #[test]
    fn quantiles_within_five_percent() {
        let mut m = VersionMetrics::default();
        for i in 1..=1000 {
            m.record(&outcome(f64::from(i), true));
        }
        let s = m.summary().unwrap();
        for (got, want) in [
            (s.latency_p50_ms, 500.0),
            (s.latency_p95_ms, 950.0),
            (s.latency_p99_ms, 990.0),
        ] {
            assert!(got >= want && got <= want * 1.05 + 1e-9, "{got} vs {want}");
        }
        assert_eq!(s.requests, 1000);
        assert!((s.avg_cost - 0.001).abs() < 1e-12);
    }

    #[test]
    fn rates() {
        let mut m = VersionMetrics::default();
        for i in 0..100 {
            m.record(&outcome(10.0, i % 4 != 0));
        }
        let s = m.summary().unwrap();
        assert!((s.success_rate - 0.75).abs() < 1e-12);
        assert!((s.parse_error_rate - 0.25).abs() < 1e-12);
        assert!(VersionMetrics::default().summary().is_none());
    }

    #[test]
    fn recorder_drains() {
        let r = MetricsRecorder::new();
        let v = Version::new(1, 0, 0);
        r.record("p", &v, &outcome(5.0, true)).unwrap();
        r.record("p", &v, &outcome(5.0, false)).unwrap();
        let bad = Outcome {
            latency_ms: -1.0,
            ..outcome(1.0, true)
        };
        assert!(r.record("p", &v, &bad).is_err());
        let taken = r.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].2.requests, 2);
        assert!(r.take().is_empty());
    }

    proptest! {
        #[test]
        fn bucket_bounds_contain_value(ms in 0.0f64..1.0e6) {
            let b = latency_bucket(ms);
            prop_assert!(ms <= bucket_upper_ms(b) * (1.0 + 1e-12));
            if b > 0 {
                prop_assert!(ms > bucket_upper_ms(b - 1) * (1.0 - 1e-12));
            }
        }

        #[test]
        fn merge_equals_recording_all(a in proptest::collection::vec(0.0f64..5000.0, 0..50),
                                      b in proptest::collection::vec(0.0f64..5000.0, 0..50)) {
            let mut left = VersionMetrics::default();
            let mut right = VersionMetrics::default();
            let mut all = VersionMetrics::default();
            for ms in &a { left.record(&outcome(*ms, true)); all.record(&outcome(*ms, true)); }
            for ms in &b { right.record(&outcome(*ms, false)); all.record(&outcome(*ms, false)); }
            left.merge(&right);
            prop_assert_eq!(left.requests, all.requests);
            prop_assert_eq!(left.latency_buckets, all.latency_buckets);
            prop_assert_eq!(left.successes, all.successes);
        }
    }
}
