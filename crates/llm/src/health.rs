//! Health of each upstream target, learned from real responses: an exponentially weighted
//! success rate that scales a target's weight inside its load-balanced group, so traffic drains
//! from a failing deployment before (and independently of) its provider's circuit breaker.

use std::collections::HashMap;
use std::sync::Mutex;

/// How much one outcome moves the score (the last ~10 outcomes dominate).
const ALPHA: f64 = 0.2;
/// The lowest score: an unhealthy target keeps a trickle of traffic so its recovery is seen.
pub const MIN_SCORE: f64 = 0.05;

/// Success scores in `[MIN_SCORE, 1]` per `PROVIDER/MODEL` target; unknown targets score 1.
#[derive(Debug, Default)]
pub struct Health {
    scores: Mutex<HashMap<String, f64>>,
}

impl Health {
    /// The current score of `target`.
    pub fn score(&self, target: &str) -> f64 {
        self.lock().get(target).copied().unwrap_or(1.0)
    }

    /// Folds one outcome into `target`'s score.
    pub fn record(&self, target: &str, success: bool) {
        let mut scores = self.lock();
        let outcome = if success { 1.0 } else { 0.0 };
        let update =
            |score: &mut f64| *score = (*score * (1.0 - ALPHA) + outcome * ALPHA).max(MIN_SCORE);
        // Looked up before inserting: the key is only allocated for a target's first outcome.
        match scores.get_mut(target) {
            Some(score) => update(score),
            None => update(scores.entry(target.to_owned()).or_insert(1.0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, f64>> {
        self.scores
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The order to try `weights.len()` group members in: a weighted random permutation (each
/// position drawn with probability proportional to weight among those left; Efraimidis-Spirakis
/// keys `u^(1/w)`), so the first choice follows the weights and the rest are fallbacks.
pub fn weighted_order(weights: &[f64], mut uniform: impl FnMut() -> f64) -> Vec<usize> {
    let mut keyed: Vec<(f64, usize)> = weights
        .iter()
        .enumerate()
        .map(|(index, &weight)| {
            let u = uniform().clamp(f64::MIN_POSITIVE, 1.0);
            (u.powf(1.0 / weight.max(f64::MIN_POSITIVE)), index)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    keyed.into_iter().map(|(_, index)| index).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lower_the_score_and_successes_restore_it() {
        let health = Health::default();
        assert_eq!(health.score("a/m"), 1.0);
        for _ in 0..50 {
            health.record("a/m", false);
        }
        assert_eq!(health.score("a/m"), MIN_SCORE);
        for _ in 0..50 {
            health.record("a/m", true);
        }
        assert!(health.score("a/m") > 0.99);
        assert_eq!(health.score("b/m"), 1.0);
    }

    #[test]
    fn first_choice_follows_the_weights() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut firsts = [0u32; 3];
        let n = 40_000;
        for _ in 0..n {
            let order = weighted_order(&[3.0, 1.0, 0.0], || rng.f64());
            assert_eq!(order.len(), 3);
            firsts[order[0]] += 1;
        }
        let share = f64::from(firsts[0]) / f64::from(n);
        assert!((share - 0.75).abs() < 0.015, "{firsts:?}");
        assert!(
            firsts[2] < 10,
            "a zero weight is (almost) never first: {firsts:?}"
        );
    }
}
