//! Offline training and honest evaluation of the injection model: logistic regression fitted by
//! AdaGrad, k-fold cross-validation (random stratified, or grouped by source so no source is in
//! both train and test), and calibration of the operating point on held-out scores only.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::error::GuardError;
use crate::features::{analyse, for_each_hashed, named_features, named_values};
use crate::model::Model;

/// One labelled example from `injection.*.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledText {
    /// The text.
    pub text: String,
    /// 1 = injection or jailbreak, 0 = benign.
    pub label: u8,
    /// Where it came from (used to group folds).
    #[serde(default)]
    pub source: String,
}

/// Parses labelled JSONL, naming the line at fault.
pub fn parse_labelled(jsonl: &str) -> Result<Vec<LabelledText>, GuardError> {
    let mut out = Vec::new();
    for (index, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: LabelledText =
            serde_json::from_str(line).map_err(|error| GuardError::BadDataLine {
                line: index + 1,
                message: error.to_string(),
            })?;
        if row.label > 1 {
            return Err(GuardError::BadDataLine {
                line: index + 1,
                message: format!("label must be 0 or 1, got {}", row.label),
            });
        }
        out.push(row);
    }
    Ok(out)
}

/// An example as sparse features, computed once and reused by every fold.
#[derive(Debug, Clone)]
pub struct Featurised {
    hashed: Vec<(u32, f32)>,
    named: Vec<(usize, f32)>,
    label: bool,
}

/// Extracts features for every example.
pub fn featurise(examples: &[LabelledText], bits: u32) -> Vec<Featurised> {
    examples
        .iter()
        .map(|example| {
            let analysis = analyse(&example.text);
            let mut counts: HashMap<u32, f32> = HashMap::new();
            let total = for_each_hashed(&analysis.scan_text, bits, |index, sign| {
                *counts.entry(index as u32).or_insert(0.0) += sign;
            });
            let norm = if total == 0 {
                1.0
            } else {
                (total as f32).sqrt()
            };
            let mut hashed: Vec<(u32, f32)> = counts
                .into_iter()
                .filter(|(_, v)| *v != 0.0)
                .map(|(i, v)| (i, v / norm))
                .collect();
            hashed.sort_unstable_by_key(|(i, _)| *i);
            Featurised {
                hashed,
                named: named_values(&analysis),
                label: example.label == 1,
            }
        })
        .collect()
}

/// Training hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct TrainConfig {
    /// Hash-space size in bits.
    pub bits: u32,
    /// Passes over the data.
    pub epochs: usize,
    /// AdaGrad base learning rate.
    pub learning_rate: f32,
    /// L2 penalty on hashed weights (towards zero).
    pub l2_hashed: f32,
    /// L2 penalty on named weights (towards their prior).
    pub l2_named: f32,
    /// Target false-positive rate for the calibrated operating point.
    pub target_fpr: f64,
    /// Shuffling seed.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            bits: crate::model::DEFAULT_HASH_BITS,
            epochs: 12,
            learning_rate: 0.3,
            // Strong shrinkage of the n-gram weights: n-grams memorise the sources they were
            // trained on, while the rules carry what transfers (5-fold leave-source-out F1 rose
            // from 0.56 to 0.77 going from 1e-5 to 3e-2 here, stratified F1 unchanged). Rule
            // weights are held near their priors, so a rule whose attack family is rare in the
            // training data keeps its prior strength instead of being argued down by a bias
            // fitted to other families (leave-source-out F1 0.81 -> 0.83 going from 1e-2 to
            // 0.3, stratified unchanged).
            l2_hashed: 3e-2,
            l2_named: 0.3,
            target_fpr: 0.02,
            seed: 7,
        }
    }
}

/// Fits a model on the given examples (uncalibrated: calibration 0).
pub fn fit(data: &[&Featurised], config: &TrainConfig) -> Model {
    let mut model = Model::priors_only(config.bits);
    let priors: Vec<f32> = named_features().iter().map(|f| f.prior).collect();
    let positives = data.iter().filter(|d| d.label).count().max(1) as f32;
    let negatives = data.iter().filter(|d| !d.label).count().max(1) as f32;
    let total = positives + negatives;
    let weight_pos = total / (2.0 * positives);
    let weight_neg = total / (2.0 * negatives);
    let mut g2_hashed = vec![1e-6f32; model.hashed.len()];
    let mut g2_named = vec![1e-6f32; model.named.len()];
    let mut g2_bias = 1e-6f32;
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = XorShift(config.seed | 1);
    for _ in 0..config.epochs {
        for i in (1..order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for &index in &order {
            let example = data[index];
            let mut logit = model.bias;
            for &(i, v) in &example.hashed {
                logit += model.hashed[i as usize] * v;
            }
            for &(i, v) in &example.named {
                logit += model.named[i] * v;
            }
            let p = sigmoid(logit);
            let y = if example.label { 1.0 } else { 0.0 };
            let class_weight = if example.label {
                weight_pos
            } else {
                weight_neg
            };
            let error = (p - y) * class_weight;
            for &(i, v) in &example.hashed {
                let i = i as usize;
                let g = error * v + config.l2_hashed * model.hashed[i];
                g2_hashed[i] += g * g;
                model.hashed[i] -= config.learning_rate * g / g2_hashed[i].sqrt();
            }
            for &(i, v) in &example.named {
                let g = error * v + config.l2_named * (model.named[i] - priors[i]);
                g2_named[i] += g * g;
                model.named[i] -= config.learning_rate * g / g2_named[i].sqrt();
            }
            g2_bias += error * error;
            model.bias -= config.learning_rate * error / g2_bias.sqrt();
        }
    }
    model
}

/// Logit of a featurised example under a model.
pub fn logit_of(model: &Model, example: &Featurised) -> f32 {
    let mut logit = model.bias - model.calibration;
    for &(i, v) in &example.hashed {
        logit += model.hashed.get(i as usize).copied().unwrap_or(0.0) * v;
    }
    for &(i, v) in &example.named {
        logit += model.named.get(i).copied().unwrap_or(0.0) * v;
    }
    logit
}

/// The logistic function.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// How folds are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldScheme {
    /// Random folds, stratified by label.
    Stratified,
    /// Whole sources per fold: every test fold holds only sources unseen in training.
    BySource,
}

/// Fold number (0..k) of each example.
pub fn assign_folds(
    examples: &[LabelledText],
    k: usize,
    scheme: FoldScheme,
    seed: u64,
) -> Vec<usize> {
    let k = k.max(2);
    let mut rng = XorShift(seed | 1);
    match scheme {
        FoldScheme::Stratified => {
            let mut folds = vec![0; examples.len()];
            for label in [0u8, 1] {
                let mut members: Vec<usize> = (0..examples.len())
                    .filter(|&i| examples[i].label == label)
                    .collect();
                for i in (1..members.len()).rev() {
                    let j = (rng.next() % (i as u64 + 1)) as usize;
                    members.swap(i, j);
                }
                for (position, &member) in members.iter().enumerate() {
                    folds[member] = position % k;
                }
            }
            folds
        }
        FoldScheme::BySource => {
            let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
            for example in examples {
                *sizes.entry(example.source.as_str()).or_insert(0) += 1;
            }
            let mut sources: Vec<(&str, usize)> = sizes.into_iter().collect();
            sources.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let mut load = vec![0usize; k];
            let mut fold_of: HashMap<&str, usize> = HashMap::new();
            for (source, size) in sources {
                let lightest = (0..k).min_by_key(|&f| load[f]).unwrap_or(0);
                load[lightest] += size;
                fold_of.insert(source, lightest);
            }
            examples
                .iter()
                .map(|e| fold_of.get(e.source.as_str()).copied().unwrap_or(0))
                .collect()
        }
    }
}

/// Confusion counts and the figures derived from them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Confusion {
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// True negatives.
    pub tn: usize,
    /// False negatives.
    pub fn_: usize,
}

impl Confusion {
    /// Adds one prediction.
    pub fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, false) => self.tn += 1,
            (false, true) => self.fn_ += 1,
        }
    }
    /// tp / (tp + fp).
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    /// tp / (tp + fn).
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    /// fp / (fp + tn).
    pub fn fpr(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Result of a cross-validation run.
#[derive(Debug, Clone)]
pub struct CrossValidation {
    /// Out-of-fold decisions pooled over all folds.
    pub overall: Confusion,
    /// Out-of-fold decisions per source.
    pub per_source: BTreeMap<String, Confusion>,
    /// Out-of-fold score of each example (in input order).
    pub scores: Vec<f32>,
}

/// Cross-validates: for each fold, fits on the rest, calibrates the operating point with an
/// inner cross-validation on the training part only, and scores the held-out fold.
pub fn cross_validate(
    examples: &[LabelledText],
    data: &[Featurised],
    k: usize,
    scheme: FoldScheme,
    config: &TrainConfig,
) -> CrossValidation {
    let folds = assign_folds(examples, k, scheme, config.seed);
    let mut scores = vec![0.0f32; examples.len()];
    for fold in 0..k.max(2) {
        let train: Vec<usize> = (0..data.len()).filter(|&i| folds[i] != fold).collect();
        let test: Vec<usize> = (0..data.len()).filter(|&i| folds[i] == fold).collect();
        if test.is_empty() || train.is_empty() {
            continue;
        }
        let train_examples: Vec<LabelledText> =
            train.iter().map(|&i| examples[i].clone()).collect();
        let train_data: Vec<Featurised> = train.iter().map(|&i| data[i].clone()).collect();
        let calibration = calibrate(&train_examples, &train_data, config);
        let refs: Vec<&Featurised> = train_data.iter().collect();
        let mut model = fit(&refs, config);
        model.calibration = calibration;
        for &i in &test {
            scores[i] = sigmoid(logit_of(&model, &data[i]));
        }
    }
    let mut overall = Confusion::default();
    let mut per_source: BTreeMap<String, Confusion> = BTreeMap::new();
    for (i, example) in examples.iter().enumerate() {
        let predicted = scores[i] >= 0.5;
        overall.add(predicted, example.label == 1);
        per_source
            .entry(example.source.clone())
            .or_default()
            .add(predicted, example.label == 1);
    }
    CrossValidation {
        overall,
        per_source,
        scores,
    }
}

/// Chooses the calibration offset: the logit threshold at which the held-out false-positive
/// rate (from a 3-fold stratified cross-validation over `examples`) is `config.target_fpr`.
pub fn calibrate(examples: &[LabelledText], data: &[Featurised], config: &TrainConfig) -> f32 {
    let inner = 3;
    let folds = assign_folds(
        examples,
        inner,
        FoldScheme::Stratified,
        config.seed ^ 0x9e37,
    );
    let mut negative_logits = Vec::new();
    for fold in 0..inner {
        let train: Vec<&Featurised> = (0..data.len())
            .filter(|&i| folds[i] != fold)
            .map(|i| &data[i])
            .collect();
        let model = fit(&train, config);
        for i in (0..data.len()).filter(|&i| folds[i] == fold && !data[i].label) {
            negative_logits.push(logit_of(&model, &data[i]));
        }
    }
    threshold_for_fpr(&mut negative_logits, config.target_fpr)
}

/// The smallest threshold (at least 0) that keeps the share of negatives above it at most `fpr`.
fn threshold_for_fpr(negative_logits: &mut [f32], fpr: f64) -> f32 {
    if negative_logits.is_empty() {
        return 0.0;
    }
    negative_logits.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr * negative_logits.len() as f64).floor() as usize;
    let at = allowed.min(negative_logits.len() - 1);
    // Sit just above the highest negative we may not let through.
    (negative_logits[at] + 1e-3).max(0.0)
}

/// Trains the shipping model on all examples, calibrated by cross-validation on them.
pub fn train_final(examples: &[LabelledText], data: &[Featurised], config: &TrainConfig) -> Model {
    let calibration = calibrate(examples, data, config);
    let refs: Vec<&Featurised> = data.iter().collect();
    let mut model = fit(&refs, config);
    model.calibration = calibration;
    model
}

/// Small deterministic PRNG for shuffling (no clock, no OS randomness).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(text: &str, label: u8, source: &str) -> LabelledText {
        LabelledText {
            text: text.to_owned(),
            label,
            source: source.to_owned(),
        }
    }

    #[test]
    fn parse_names_the_bad_line() {
        let error = parse_labelled("{\"text\":\"a\",\"label\":0}\n{\"text\":1}\n").unwrap_err();
        assert!(error.to_string().starts_with("line 2:"), "{error}");
        let error = parse_labelled("{\"text\":\"a\",\"label\":3}").unwrap_err();
        assert!(
            error.to_string().contains("label must be 0 or 1"),
            "{error}"
        );
    }

    #[test]
    fn source_folds_never_split_a_source() {
        let examples: Vec<LabelledText> = (0..40)
            .map(|i| example("x", (i % 2) as u8, &format!("s{}", i % 7)))
            .collect();
        let folds = assign_folds(&examples, 3, FoldScheme::BySource, 1);
        for a in 0..examples.len() {
            for b in 0..examples.len() {
                if examples[a].source == examples[b].source {
                    assert_eq!(folds[a], folds[b]);
                }
            }
        }
    }

    #[test]
    fn learns_a_separable_toy_problem() {
        let mut examples = Vec::new();
        for i in 0..30 {
            examples.push(example(
                &format!("please bake a cake number {i} with sugar"),
                0,
                "a",
            ));
            examples.push(example(
                &format!("zorblax quux frobnicate {i} wibble"),
                1,
                "b",
            ));
        }
        let config = TrainConfig {
            bits: 12,
            ..TrainConfig::default()
        };
        let data = featurise(&examples, config.bits);
        let cv = cross_validate(&examples, &data, 3, FoldScheme::Stratified, &config);
        assert!(cv.overall.f1() > 0.9, "{:?}", cv.overall);
    }

    #[test]
    fn confusion_figures() {
        let c = Confusion {
            tp: 8,
            fp: 2,
            tn: 18,
            fn_: 2,
        };
        assert!((c.precision() - 0.8).abs() < 1e-9);
        assert!((c.recall() - 0.8).abs() < 1e-9);
        assert!((c.fpr() - 0.1).abs() < 1e-9);
    }
}
