//! Statistics for experiments: two-proportion z-test, Welch's t-test, minimum sample sizes and
//! the sample-ratio-mismatch chi-square check. Pure functions over counts and moments.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};

use crate::error::{RegistryError, Result};

fn invalid(reason: impl Into<String>) -> RegistryError {
    RegistryError::InvalidStatistics(reason.into())
}

fn standard_normal() -> Result<Normal> {
    Normal::new(0.0, 1.0).map_err(|err| invalid(err.to_string()))
}

fn check_alpha(alpha: f64) -> Result<()> {
    if alpha.is_finite() && alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(invalid(format!("alpha {alpha} must be between 0 and 1")))
    }
}

/// The result of comparing a treatment with a control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Control's rate or mean.
    pub control: f64,
    /// Treatment's rate or mean.
    pub treatment: f64,
    /// `treatment - control`.
    pub difference: f64,
    /// `difference / control`, `None` when control is 0.
    pub relative_lift: Option<f64>,
    /// The test statistic (z or t).
    pub statistic: f64,
    /// Degrees of freedom (Welch), `None` for the z-test.
    pub degrees_of_freedom: Option<f64>,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Confidence interval of the difference at `1 - alpha`.
    pub confidence_interval: (f64, f64),
    /// Whether `p_value < alpha`.
    pub significant: bool,
}

/// Two-proportion z-test (pooled standard error for the test, unpooled for the interval).
pub fn two_proportion_z_test(
    control_successes: u64,
    control_n: u64,
    treatment_successes: u64,
    treatment_n: u64,
    alpha: f64,
) -> Result<Comparison> {
    check_alpha(alpha)?;
    if control_n == 0 || treatment_n == 0 {
        return Err(invalid("both groups need at least one observation"));
    }
    if control_successes > control_n || treatment_successes > treatment_n {
        return Err(invalid("successes cannot exceed observations"));
    }
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
    let (x1, n1, x2, n2) = (
        control_successes as f64,
        control_n as f64,
        treatment_successes as f64,
        treatment_n as f64,
    );
    let (p1, p2) = (x1 / n1, x2 / n2);
    let pooled = (x1 + x2) / (n1 + n2);
    let se_pooled = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    let difference = p2 - p1;
    let normal = standard_normal()?;
    let (statistic, p_value) = if se_pooled > 0.0 {
        let z = difference / se_pooled;
        (z, 2.0 * (1.0 - normal.cdf(z.abs())))
    } else {
        (0.0, 1.0)
    };
    let se = (p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2).sqrt();
    let z_crit = normal.inverse_cdf(1.0 - alpha / 2.0);
    Ok(Comparison {
        control: p1,
        treatment: p2,
        difference,
        relative_lift: (p1 > 0.0).then(|| difference / p1),
        statistic,
        degrees_of_freedom: None,
        p_value,
        confidence_interval: (difference - z_crit * se, difference + z_crit * se),
        significant: p_value < alpha,
    })
}

/// Mean, sample variance and count of one group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Observations.
    pub n: u64,
    /// Mean.
    pub mean: f64,
    /// Sample variance (n - 1 denominator).
    pub variance: f64,
}

impl Moments {
    /// Moments from a count, a sum and a sum of squares.
    pub fn from_sums(n: u64, sum: f64, sum_squares: f64) -> Moments {
        if n == 0 {
            return Moments {
                n,
                mean: 0.0,
                variance: 0.0,
            };
        }
        #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
        let count = n as f64;
        let mean = sum / count;
        let variance = if n > 1 {
            ((sum_squares - count * mean * mean) / (count - 1.0)).max(0.0)
        } else {
            0.0
        };
        Moments { n, mean, variance }
    }

    /// Moments of a sample.
    pub fn of(values: &[f64]) -> Moments {
        let n = values.len();
        if n == 0 {
            return Moments::from_sums(0, 0.0, 0.0);
        }
        #[expect(clippy::cast_precision_loss, reason = "sample sizes far below 2^53")]
        let count = n as f64;
        let mean = values.iter().sum::<f64>() / count;
        let variance = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1.0)
        } else {
            0.0
        };
        Moments {
            n: n as u64,
            mean,
            variance,
        }
    }
}

/// Welch's unequal-variance t-test with the Welch–Satterthwaite degrees of freedom.
pub fn welch_t_test(control: Moments, treatment: Moments, alpha: f64) -> Result<Comparison> {
    check_alpha(alpha)?;
    if control.n < 2 || treatment.n < 2 {
        return Err(invalid("both groups need at least two observations"));
    }
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
    let (n1, n2) = (control.n as f64, treatment.n as f64);
    let (a, b) = (control.variance / n1, treatment.variance / n2);
    let se = (a + b).sqrt();
    let difference = treatment.mean - control.mean;
    if se == 0.0 {
        let identical = difference == 0.0;
        return Ok(Comparison {
            control: control.mean,
            treatment: treatment.mean,
            difference,
            relative_lift: (control.mean != 0.0).then(|| difference / control.mean),
            statistic: if identical {
                0.0
            } else {
                f64::INFINITY.copysign(difference)
            },
            degrees_of_freedom: Some(n1 + n2 - 2.0),
            p_value: if identical { 1.0 } else { 0.0 },
            confidence_interval: (difference, difference),
            significant: !identical,
        });
    }
    let df = (a + b).powi(2) / (a * a / (n1 - 1.0) + b * b / (n2 - 1.0));
    let t = difference / se;
    let dist = StudentsT::new(0.0, 1.0, df).map_err(|err| invalid(err.to_string()))?;
    let p_value = (2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0);
    let t_crit = dist.inverse_cdf(1.0 - alpha / 2.0);
    Ok(Comparison {
        control: control.mean,
        treatment: treatment.mean,
        difference,
        relative_lift: (control.mean != 0.0).then(|| difference / control.mean),
        statistic: t,
        degrees_of_freedom: Some(df),
        p_value,
        confidence_interval: (difference - t_crit * se, difference + t_crit * se),
        significant: p_value < alpha,
    })
}

fn check_power(power: f64) -> Result<()> {
    if power.is_finite() && power > 0.0 && power < 1.0 {
        Ok(())
    } else {
        Err(invalid(format!("power {power} must be between 0 and 1")))
    }
}

/// Observations per group to detect a change of a rate from `baseline` by `min_effect`
/// (absolute) with a two-sided test at `alpha` and the given power.
pub fn sample_size_proportions(
    baseline: f64,
    min_effect: f64,
    alpha: f64,
    power: f64,
) -> Result<u64> {
    check_alpha(alpha)?;
    check_power(power)?;
    let p2 = baseline + min_effect;
    if !(baseline > 0.0 && baseline < 1.0 && p2 > 0.0 && p2 < 1.0 && min_effect != 0.0) {
        return Err(invalid(format!(
            "baseline {baseline} and baseline + effect {p2} must both lie strictly between 0 and 1, \
             with a non-zero effect"
        )));
    }
    let normal = standard_normal()?;
    let z_alpha = normal.inverse_cdf(1.0 - alpha / 2.0);
    let z_beta = normal.inverse_cdf(power);
    let mean = (baseline + p2) / 2.0;
    let numerator = z_alpha * (2.0 * mean * (1.0 - mean)).sqrt()
        + z_beta * (baseline * (1.0 - baseline) + p2 * (1.0 - p2)).sqrt();
    let n = (numerator / min_effect).powi(2).ceil();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "positive, finite"
    )]
    let n = n as u64;
    Ok(n)
}

/// Observations per group to detect a change of a mean by `min_effect_sd` standard deviations.
pub fn sample_size_means(min_effect_sd: f64, alpha: f64, power: f64) -> Result<u64> {
    check_alpha(alpha)?;
    check_power(power)?;
    if !(min_effect_sd.is_finite() && min_effect_sd > 0.0) {
        return Err(invalid(format!(
            "effect size {min_effect_sd} must be a positive number of standard deviations"
        )));
    }
    let normal = standard_normal()?;
    let z = normal.inverse_cdf(1.0 - alpha / 2.0) + normal.inverse_cdf(power);
    let n = (2.0 * (z / min_effect_sd).powi(2)).ceil();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "positive, finite"
    )]
    let n = n as u64;
    Ok(n)
}

/// Result of the sample-ratio-mismatch check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SrmCheck {
    /// Pearson's chi-square statistic.
    pub chi_square: f64,
    /// Degrees of freedom (arms - 1).
    pub degrees_of_freedom: u64,
    /// Its p-value.
    pub p_value: f64,
    /// Whether `p_value < threshold`: assignment or logging is broken, results are not trustworthy.
    pub mismatch: bool,
}

/// The conventional SRM alarm level: below it the split is almost surely broken.
pub const SRM_THRESHOLD: f64 = 0.001;

/// Compares observed arm counts with the configured weights (chi-square goodness of fit).
pub fn sample_ratio_mismatch(observed: &[u64], weights: &[f64]) -> Result<SrmCheck> {
    if observed.len() != weights.len() || observed.len() < 2 {
        return Err(invalid("need one weight per arm and at least two arms"));
    }
    let weight_sum: f64 = weights.iter().sum();
    if weight_sum.is_nan()
        || weight_sum <= 0.0
        || weights.iter().any(|w| !w.is_finite() || *w <= 0.0)
    {
        return Err(invalid("weights must be positive numbers"));
    }
    let total: u64 = observed.iter().sum();
    if total == 0 {
        return Ok(SrmCheck {
            chi_square: 0.0,
            degrees_of_freedom: (observed.len() - 1) as u64,
            p_value: 1.0,
            mismatch: false,
        });
    }
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
    let chi_square: f64 = observed
        .iter()
        .zip(weights)
        .map(|(o, w)| {
            let expected = total as f64 * w / weight_sum;
            (*o as f64 - expected).powi(2) / expected
        })
        .sum();
    let df = (observed.len() - 1) as u64;
    #[expect(clippy::cast_precision_loss, reason = "small")]
    let dist = ChiSquared::new(df as f64).map_err(|err| invalid(err.to_string()))?;
    let p_value = (1.0 - dist.cdf(chi_square)).clamp(0.0, 1.0);
    Ok(SrmCheck {
        chi_square,
        degrees_of_freedom: df,
        p_value,
        mismatch: p_value < SRM_THRESHOLD,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn z_test_textbook() {
        // 200/1000 vs 250/1000: pooled p = 0.225, SE = 0.018675, z = 2.6774, p = 0.00742.
        let r = two_proportion_z_test(200, 1000, 250, 1000, 0.05).unwrap();
        close(r.statistic, 2.6774, 1e-3);
        close(r.p_value, 0.00742, 1e-4);
        close(r.difference, 0.05, 1e-12);
        close(r.relative_lift.unwrap(), 0.25, 1e-12);
        // Unpooled SE = sqrt(.2*.8/1000 + .25*.75/1000) = 0.018655; 1.96 * SE = 0.036563.
        close(r.confidence_interval.0, 0.05 - 0.036563, 1e-4);
        assert!(r.significant);
    }

    #[test]
    fn welch_wikipedia_example() {
        // Welch's t-test article, example 2: t = -2.46, df = 24.99, p = 0.021.
        let a1 = [
            27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7,
            21.4,
        ];
        let a2 = [
            27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5,
            24.4,
        ];
        let r = welch_t_test(Moments::of(&a2), Moments::of(&a1), 0.05).unwrap();
        close(r.statistic, -2.46, 0.01);
        close(r.degrees_of_freedom.unwrap(), 24.99, 0.01);
        close(r.p_value, 0.021, 0.001);
    }

    #[test]
    fn t_distribution_known_value() {
        // Two-sided p for t = 2.228 with 10 df is 0.05 (t table).
        let m1 = Moments {
            n: 6,
            mean: 0.0,
            variance: 1.0,
        };
        let r = welch_t_test(m1, m1, 0.05).unwrap();
        close(r.p_value, 1.0, 1e-12);
        let dist = StudentsT::new(0.0, 1.0, 10.0).unwrap();
        close(2.0 * (1.0 - dist.cdf(2.228)), 0.05, 1e-3);
    }

    #[test]
    fn sample_sizes_textbook() {
        // 10% -> 12%, alpha 0.05, power 0.8: 3841 per group.
        assert_eq!(
            sample_size_proportions(0.10, 0.02, 0.05, 0.8).unwrap(),
            3841
        );
        // d = 0.5, alpha 0.05, power 0.8: 2 * (1.96 + 0.8416)^2 / 0.25 = 62.8 -> 63.
        assert_eq!(sample_size_means(0.5, 0.05, 0.8).unwrap(), 63);
        assert!(sample_size_proportions(0.99, 0.05, 0.05, 0.8).is_err());
    }

    #[test]
    fn srm_known_values() {
        // 5000/5000 vs 50/50: chi2 = 0.
        let ok = sample_ratio_mismatch(&[5000, 5000], &[0.5, 0.5]).unwrap();
        close(ok.p_value, 1.0, 1e-12);
        // 5200/4800: chi2 = 16, p = 6.3e-5 -> mismatch.
        let bad = sample_ratio_mismatch(&[5200, 4800], &[1.0, 1.0]).unwrap();
        close(bad.chi_square, 16.0, 1e-9);
        close(bad.p_value, 6.334e-5, 1e-7);
        assert!(bad.mismatch);
        // chi2 = 3.841 with 1 df is p = 0.05.
        let dist = ChiSquared::new(1.0).unwrap();
        close(1.0 - dist.cdf(3.841), 0.05, 1e-3);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(two_proportion_z_test(5, 4, 1, 2, 0.05).is_err());
        assert!(two_proportion_z_test(0, 0, 1, 2, 0.05).is_err());
        assert!(two_proportion_z_test(1, 2, 1, 2, 1.5).is_err());
        assert!(sample_ratio_mismatch(&[1], &[1.0]).is_err());
        assert!(sample_ratio_mismatch(&[1, 2], &[1.0, -1.0]).is_err());
    }

    proptest! {
        #[test]
        fn z_test_p_value_in_range(x1 in 0u64..500, extra1 in 1u64..500, x2 in 0u64..500, extra2 in 1u64..500) {
            let r = two_proportion_z_test(x1, x1 + extra1, x2, x2 + extra2, 0.05).unwrap();
            prop_assert!((0.0..=1.0).contains(&r.p_value));
            prop_assert!(r.confidence_interval.0 <= r.difference && r.difference <= r.confidence_interval.1);
        }

        #[test]
        fn welch_symmetric(a in proptest::collection::vec(-100.0f64..100.0, 2..30),
                           b in proptest::collection::vec(-100.0f64..100.0, 2..30)) {
            let ab = welch_t_test(Moments::of(&a), Moments::of(&b), 0.05).unwrap();
            let ba = welch_t_test(Moments::of(&b), Moments::of(&a), 0.05).unwrap();
            prop_assert!((ab.p_value - ba.p_value).abs() < 1e-9);
            prop_assert!((0.0..=1.0).contains(&ab.p_value));
        }

        #[test]
        fn moments_from_sums_match(values in proptest::collection::vec(-1000.0f64..1000.0, 2..50)) {
            let direct = Moments::of(&values);
            let sum: f64 = values.iter().sum();
            let sq: f64 = values.iter().map(|v| v * v).sum();
            let from_sums = Moments::from_sums(values.len() as u64, sum, sq);
            prop_assert!((direct.mean - from_sums.mean).abs() < 1e-6);
            prop_assert!((direct.variance - from_sums.variance).abs() < 1e-3 * (1.0 + direct.variance));
        }
    }
}
