//! Experiments over prompt versions: deterministic assignment of units to arms, and analysis of
//! recorded outcomes (rates with the z-test, scores with Welch's t-test) against the first arm,
//! with minimum sample sizes and the sample-ratio-mismatch check.

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::{RegistryError, Result};
use crate::routing::bucket;
use crate::stats::{
    Comparison, Moments, SrmCheck, sample_ratio_mismatch, sample_size_means,
    sample_size_proportions, two_proportion_z_test, welch_t_test,
};
use crate::version::validate_name;

/// One arm: a version and its share of units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentArm {
    /// The version this arm serves.
    pub version: Version,
    /// Its relative weight (normalised over all arms).
    pub weight: f64,
}

/// An experiment over versions of one prompt; the first arm is the control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// The experiment's name (also salts the assignment hash).
    pub name: String,
    /// The prompt whose versions are compared.
    pub prompt: String,
    /// The arms, control first.
    pub arms: Vec<ExperimentArm>,
    /// When it was created, Unix milliseconds.
    pub created_at_ms: i64,
}

impl Experiment {
    /// Checks the name, that there are at least two arms of distinct versions and positive weights.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        validate_name(&self.prompt)?;
        let invalid = |reason: String| RegistryError::InvalidExperiment {
            name: self.name.clone(),
            reason,
        };
        if self.arms.len() < 2 {
            return Err(invalid("needs at least two arms".into()));
        }
        for (index, arm) in self.arms.iter().enumerate() {
            if !(arm.weight.is_finite() && arm.weight > 0.0) {
                return Err(invalid(format!(
                    "arm {} ({}) has weight {}; weights must be positive",
                    index + 1,
                    arm.version,
                    arm.weight
                )));
            }
            if self.arms[..index].iter().any(|a| a.version == arm.version) {
                return Err(invalid(format!("version {} appears twice", arm.version)));
            }
        }
        Ok(())
    }

    /// The arm (index) a unit is assigned to: deterministic, proportional to the weights.
    pub fn assign(&self, unit_id: &str) -> usize {
        let total: f64 = self.arms.iter().map(|a| a.weight).sum();
        let point = bucket(&self.name, unit_id) * total;
        let mut cumulative = 0.0;
        for (index, arm) in self.arms.iter().enumerate() {
            cumulative += arm.weight;
            if point < cumulative {
                return index;
            }
        }
        self.arms.len().saturating_sub(1)
    }

    /// The index of the arm serving `version`.
    pub fn arm_of(&self, version: &Version) -> Result<usize> {
        self.arms
            .iter()
            .position(|a| a.version == *version)
            .ok_or_else(|| RegistryError::InvalidExperiment {
                name: self.name.clone(),
                reason: format!("version {version} is not one of its arms"),
            })
    }
}

/// Aggregated outcomes of one arm.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmTotals {
    /// Outcomes recorded (units).
    pub units: u64,
    /// Outcomes with a binary result.
    pub binary_n: u64,
    /// Of which successes.
    pub successes: u64,
    /// Outcomes with a numeric score.
    pub score_n: u64,
    /// Sum of scores.
    pub score_sum: f64,
    /// Sum of squared scores.
    pub score_sum_squares: f64,
}

/// How an analysis is run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisConfig {
    /// Significance level (default 0.05).
    pub alpha: f64,
    /// Power for the minimum sample size (default 0.8).
    pub power: f64,
    /// Smallest absolute change in success rate worth detecting (default 0.05).
    pub min_rate_effect: f64,
    /// Smallest change in mean score worth detecting, in standard deviations (default 0.2).
    pub min_score_effect_sd: f64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            alpha: 0.05,
            power: 0.8,
            min_rate_effect: 0.05,
            min_score_effect_sd: 0.2,
        }
    }
}

/// One treatment arm compared with the control on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    /// `success_rate` or `score`.
    pub metric: String,
    /// The treatment arm's version.
    pub version: Version,
    /// Observations each arm needs for the configured effect, when it can be computed.
    pub required_per_arm: Option<u64>,
    /// Whether both arms have reached `required_per_arm`.
    pub enough_data: bool,
    /// The test, when it can be computed at all.
    pub result: Option<Comparison>,
    /// Why there is no result or why it is not conclusive yet.
    pub note: Option<String>,
}

/// The analysis of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentReport {
    /// The experiment.
    pub experiment: Experiment,
    /// Totals per arm, in arm order.
    pub arms: Vec<ArmTotals>,
    /// Each treatment arm against the control, per metric that has data.
    pub comparisons: Vec<MetricComparison>,
    /// The sample-ratio-mismatch check over units per arm.
    pub srm: SrmCheck,
}

/// Analyses `totals` (one per arm, in arm order).
pub fn analyze(
    experiment: &Experiment,
    totals: &[ArmTotals],
    config: &AnalysisConfig,
) -> Result<ExperimentReport> {
    if totals.len() != experiment.arms.len() {
        return Err(RegistryError::InvalidExperiment {
            name: experiment.name.clone(),
            reason: format!(
                "{} arm totals for {} arms",
                totals.len(),
                experiment.arms.len()
            ),
        });
    }
    let units: Vec<u64> = totals.iter().map(|t| t.units).collect();
    let weights: Vec<f64> = experiment.arms.iter().map(|a| a.weight).collect();
    let srm = sample_ratio_mismatch(&units, &weights)?;
    let control = &totals[0];
    let mut comparisons = Vec::new();
    for (arm, treatment) in experiment.arms.iter().zip(totals).skip(1) {
        if control.binary_n > 0 || treatment.binary_n > 0 {
            comparisons.push(compare_rates(arm, control, treatment, config));
        }
        if control.score_n > 0 || treatment.score_n > 0 {
            comparisons.push(compare_scores(arm, control, treatment, config));
        }
    }
    Ok(ExperimentReport {
        experiment: experiment.clone(),
        arms: totals.to_vec(),
        comparisons,
        srm,
    })
}

fn compare_rates(
    arm: &ExperimentArm,
    control: &ArmTotals,
    treatment: &ArmTotals,
    config: &AnalysisConfig,
) -> MetricComparison {
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
    let baseline = if control.binary_n > 0 {
        control.successes as f64 / control.binary_n as f64
    } else {
        0.5
    };
    // A baseline at 0 or 1 has no variance to plan with; plan around the nearest usable rate.
    let planning = baseline.clamp(0.01, 0.99 - config.min_rate_effect.abs());
    let required =
        sample_size_proportions(planning, config.min_rate_effect, config.alpha, config.power).ok();
    let result = two_proportion_z_test(
        control.successes,
        control.binary_n,
        treatment.successes,
        treatment.binary_n,
        config.alpha,
    )
    .ok();
    finish(
        "success_rate",
        arm,
        control.binary_n,
        treatment.binary_n,
        required,
        result,
    )
}

fn compare_scores(
    arm: &ExperimentArm,
    control: &ArmTotals,
    treatment: &ArmTotals,
    config: &AnalysisConfig,
) -> MetricComparison {
    let required = sample_size_means(config.min_score_effect_sd, config.alpha, config.power).ok();
    let result = welch_t_test(
        Moments::from_sums(
            control.score_n,
            control.score_sum,
            control.score_sum_squares,
        ),
        Moments::from_sums(
            treatment.score_n,
            treatment.score_sum,
            treatment.score_sum_squares,
        ),
        config.alpha,
    )
    .ok();
    finish(
        "score",
        arm,
        control.score_n,
        treatment.score_n,
        required,
        result,
    )
}

fn finish(
    metric: &str,
    arm: &ExperimentArm,
    control_n: u64,
    treatment_n: u64,
    required: Option<u64>,
    result: Option<Comparison>,
) -> MetricComparison {
    let smallest = control_n.min(treatment_n);
    let enough_data = required.is_some_and(|r| smallest >= r);
    let note = match (&result, required) {
        (None, _) => Some(format!(
            "not enough data to test: control has {control_n}, treatment {treatment_n} observations"
        )),
        (Some(_), Some(r)) if !enough_data => Some(format!(
            "not enough data yet: {smallest} of the {r} observations per arm needed; treat the \
             p-value as provisional"
        )),
        _ => None,
    };
    MetricComparison {
        metric: metric.to_owned(),
        version: arm.version.clone(),
        required_per_arm: required,
        enough_data,
        result,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(weights: &[f64]) -> Experiment {
        Experiment {
            name: "tone".into(),
            prompt: "greet".into(),
            arms: weights
                .iter()
                .enumerate()
                .map(|(i, w)| ExperimentArm {
                    version: Version::new(1, 0, i as u64),
                    weight: *w,
                })
                .collect(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn assignment_follows_weights() {
        let exp = experiment(&[0.7, 0.2, 0.1]);
        let mut counts = [0u64; 3];
        for i in 0..50_000 {
            counts[exp.assign(&format!("user-{i}"))] += 1;
        }
        let srm = sample_ratio_mismatch(&counts, &[0.7, 0.2, 0.1]).unwrap();
        assert!(!srm.mismatch, "{counts:?}");
        assert_eq!(exp.assign("user-1"), exp.assign("user-1"));
    }

    #[test]
    fn validation() {
        assert!(experiment(&[1.0]).validate().is_err());
        assert!(experiment(&[1.0, 0.0]).validate().is_err());
        let mut dup = experiment(&[1.0, 1.0]);
        dup.arms[1].version = dup.arms[0].version.clone();
        assert!(dup.validate().is_err());
        assert!(experiment(&[1.0, 1.0]).validate().is_ok());
    }

    #[test]
    fn report_says_when_data_is_short() {
        let exp = experiment(&[1.0, 1.0]);
        let few = ArmTotals {
            units: 20,
            binary_n: 20,
            successes: 10,
            ..ArmTotals::default()
        };
        let report = analyze(&exp, &[few.clone(), few], &AnalysisConfig::default()).unwrap();
        assert_eq!(report.comparisons.len(), 1);
        assert!(!report.comparisons[0].enough_data);
        assert!(
            report.comparisons[0]
                .note
                .as_deref()
                .unwrap()
                .contains("not enough data")
        );
    }

    #[test]
    fn report_detects_a_real_lift() {
        let exp = experiment(&[1.0, 1.0]);
        let control = ArmTotals {
            units: 5000,
            binary_n: 5000,
            successes: 2500,
            ..ArmTotals::default()
        };
        let treatment = ArmTotals {
            units: 5000,
            binary_n: 5000,
            successes: 2800,
            ..ArmTotals::default()
        };
        let report = analyze(&exp, &[control, treatment], &AnalysisConfig::default()).unwrap();
        let cmp = &report.comparisons[0];
        assert!(cmp.enough_data);
        let result = cmp.result.as_ref().unwrap();
        assert!(result.significant);
        assert!((result.relative_lift.unwrap() - 0.12).abs() < 1e-9);
        assert!(!report.srm.mismatch);
    }
}
