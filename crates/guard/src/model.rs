//! The injection model: logistic regression over hashed n-grams plus named rule and
//! obfuscation features, and its compact weight file (`data/injection.weights`).
//!
//! File layout (little-endian): magic `POGW`, version `1`, hash bits (u8), two zero bytes,
//! bias (f32), calibration offset (f32), hashed scale (f32), named count (u32), then each
//! named weight as name length (u8), name (UTF-8), weight (f32), then `2^bits` hashed weights
//! as `i8` multiples of the scale.

use crate::error::GuardError;
use crate::features::{
    Analysis, NamedFeature, for_each_hashed, named_features, named_values, signed_weight_sum,
};

/// Hash-space size used by the shipped model.
pub const DEFAULT_HASH_BITS: u32 = 17;

/// A trained model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Hash-space size in bits.
    pub bits: u32,
    /// Intercept.
    pub bias: f32,
    /// Subtracted from the logit so that score 0.5 sits at the calibrated operating point.
    pub calibration: f32,
    /// Weights of the hashed features (`2^bits` of them).
    pub hashed: Vec<f32>,
    /// Weights of [`named_features`], in that order.
    pub named: Vec<f32>,
}

/// How much each part of the model contributed to a logit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogitParts {
    /// Hashed n-gram contribution.
    pub ngrams: f32,
    /// Named (rule, obfuscation, length) contribution.
    pub named: f32,
    /// Bias minus calibration.
    pub intercept: f32,
}

impl LogitParts {
    /// The whole logit.
    pub fn total(&self) -> f32 {
        self.ngrams + self.named + self.intercept
    }
}

impl Model {
    /// A model that knows only the rule priors: n-gram weights zero.
    pub fn priors_only(bits: u32) -> Model {
        Model {
            bits,
            bias: -2.0,
            calibration: 0.0,
            hashed: vec![0.0; 1 << bits],
            named: named_features().iter().map(|f| f.prior).collect(),
        }
    }

    /// The logit of an analysed text, split by source.
    pub fn logit(&self, analysis: &Analysis) -> LogitParts {
        self.logit_by(analysis, |index| {
            self.hashed.get(index).copied().unwrap_or(0.0)
        })
    }

    /// [`Model::logit`], reading the hashed weights through a [`Palette`] of this model (the
    /// same values, from a table a quarter the size).
    pub(crate) fn logit_with(&self, analysis: &Analysis, palette: &Palette) -> LogitParts {
        self.logit_by(analysis, |index| palette.weight(index))
    }

    /// The logit with hashed weight `index` read by `hashed` (0.0 out of range).
    fn logit_by(&self, analysis: &Analysis, hashed: impl Fn(usize) -> f32) -> LogitParts {
        let mut sum = 0.0f32;
        let count = for_each_hashed(&analysis.scan_text, self.bits, |index, sign| {
            sum += hashed(index) * sign;
        });
        let ngrams = if count == 0 {
            0.0
        } else {
            sum / (count as f32).sqrt()
        };
        self.parts(ngrams, &named_values(analysis))
    }

    /// [`Model::logit`] for a model whose hashed weights are the multiples of one scale in
    /// `quantised` (every model read from a weight file), with the named feature values
    /// already computed. The n-gram sum is exact: the signed multiples are added as integers
    /// (any order, no rounding) and scaled once, where [`Model::logit`] adds rounded float
    /// products one after the other; the two agree to float rounding (about 1e-7 of the sum).
    pub(crate) fn logit_quantised(
        &self,
        analysis: &Analysis,
        quantised: &Quantised,
        named: &[(usize, f32)],
    ) -> LogitParts {
        let (sum, count) = signed_weight_sum(&analysis.scan_text, self.bits, &quantised.multiples);
        let ngrams = if count == 0 {
            0.0
        } else {
            (sum as f64 * f64::from(quantised.scale) / (count as f64).sqrt()) as f32
        };
        self.parts(ngrams, named)
    }

    fn parts(&self, ngrams: f32, named: &[(usize, f32)]) -> LogitParts {
        let named = named
            .iter()
            .map(|&(index, value)| self.named.get(index).copied().unwrap_or(0.0) * value)
            .sum();
        LogitParts {
            ngrams,
            named,
            intercept: self.bias - self.calibration,
        }
    }

    /// Serialises to the compact weight file format (hashed weights quantised to `i8`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let max = self.hashed.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let mut out = Vec::with_capacity(self.hashed.len() + 4096);
        out.extend_from_slice(b"POGW");
        out.push(1);
        out.push(self.bits as u8);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.bias.to_le_bytes());
        out.extend_from_slice(&self.calibration.to_le_bytes());
        out.extend_from_slice(&scale.to_le_bytes());
        let features = named_features();
        out.extend_from_slice(&(features.len() as u32).to_le_bytes());
        for (feature, weight) in features.iter().zip(&self.named) {
            let name = feature.name.as_bytes();
            out.push(name.len().min(255) as u8);
            out.extend_from_slice(&name[..name.len().min(255)]);
            out.extend_from_slice(&weight.to_le_bytes());
        }
        for weight in &self.hashed {
            let q = (weight / scale).round().clamp(-127.0, 127.0) as i8;
            out.push(q as u8);
        }
        out
    }

    /// Parses a weight file. Named features the file lacks keep their prior; names the file
    /// has that this build does not know are ignored (a removed rule).
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, GuardError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4)? != b"POGW" {
            return Err(GuardError::BadWeights("missing POGW magic".into()));
        }
        let version = reader.take(1)?[0];
        if version != 1 {
            return Err(GuardError::BadWeights(format!(
                "unsupported version {version}"
            )));
        }
        let bits = u32::from(reader.take(1)?[0]);
        if !(8..=24).contains(&bits) {
            return Err(GuardError::BadWeights(format!(
                "hash bits {bits} outside 8..=24"
            )));
        }
        reader.take(2)?;
        let bias = reader.f32()?;
        let calibration = reader.f32()?;
        let scale = reader.f32()?;
        let stored = reader.u32()? as usize;
        let features: Vec<NamedFeature> = named_features();
        let mut named: Vec<f32> = features.iter().map(|f| f.prior).collect();
        for _ in 0..stored {
            let len = usize::from(reader.take(1)?[0]);
            let name = std::str::from_utf8(reader.take(len)?)
                .map_err(|_| GuardError::BadWeights("feature name is not UTF-8".into()))?
                .to_owned();
            let weight = reader.f32()?;
            if let Some(index) = features.iter().position(|f| f.name == name) {
                named[index] = weight;
            }
        }
        let hashed_bytes = reader.take(1 << bits)?;
        if reader.at != bytes.len() {
            return Err(GuardError::BadWeights(format!(
                "{} trailing bytes",
                bytes.len() - reader.at
            )));
        }
        let hashed = hashed_bytes
            .iter()
            .map(|&b| f32::from(b as i8) * scale)
            .collect();
        if !(bias.is_finite() && calibration.is_finite() && (scale * 127.0).is_finite()) {
            return Err(GuardError::BadWeights("non-finite header value".into()));
        }
        if let Some(index) = named.iter().position(|w| !w.is_finite()) {
            return Err(GuardError::BadWeights(format!(
                "non-finite weight for named feature `{}`",
                features[index].name
            )));
        }
        Ok(Model {
            bits,
            bias,
            calibration,
            hashed,
            named,
        })
    }

    /// The model shipped in the crate, trained by `examples/train_injection.rs`.
    pub fn shipped() -> Result<Model, GuardError> {
        Model::from_bytes(include_bytes!("../data/injection.weights"))
    }
}

/// The hashed weights of a model as one byte per weight into a table of the (at most 256)
/// distinct values, bit for bit. A quantised model (every shipped one) has at most 255
/// distinct weights, so its 2^17 weights take 128 KiB instead of 512 KiB: the random lookups
/// of a scan then stay in cache alongside the regex automata.
#[derive(Debug, Clone)]
pub(crate) struct Palette {
    codes: Vec<u8>,
    values: Vec<f32>,
}

impl Palette {
    /// The palette of `model`, or `None` when it has more than 256 distinct hashed weights.
    pub(crate) fn of(model: &Model) -> Option<Palette> {
        // Open addressing over the weights' bit patterns: at most 256 values in 512 slots, so
        // a probe finds its value or a free slot within a few steps, in one pass over the
        // weights (a detector is built per `Guard`, so this must stay cheap).
        const SLOTS: usize = 512;
        let mut slots: [Option<(u32, u8)>; SLOTS] = [None; SLOTS];
        let mut values: Vec<f32> = Vec::new();
        let mut codes = Vec::with_capacity(model.hashed.len());
        for weight in &model.hashed {
            let bits = weight.to_bits();
            let mut slot = (bits.wrapping_mul(0x9E37_79B1) >> 23) as usize % SLOTS;
            let code = loop {
                match slots[slot] {
                    Some((stored, code)) if stored == bits => break code,
                    Some(_) => slot = (slot + 1) % SLOTS,
                    None => {
                        let code = u8::try_from(values.len()).ok()?;
                        slots[slot] = Some((bits, code));
                        values.push(*weight);
                        break code;
                    }
                }
            };
            codes.push(code);
        }
        Some(Palette { codes, values })
    }

    /// Hashed weight `index`, exactly as stored in the model (0.0 out of range).
    #[inline(always)]
    fn weight(&self, index: usize) -> f32 {
        self.codes
            .get(index)
            .and_then(|&code| self.values.get(usize::from(code)))
            .copied()
            .unwrap_or(0.0)
    }
}

/// The hashed weights of a model as `i8` multiples of one scale, when every weight is exactly
/// `f32::from(multiple) * scale` (true of every model read from a weight file, which stores
/// them so). Half the size of a [`Palette`] lookup (one table, no second indirection), and the
/// n-gram sum becomes an exact integer sum.
#[derive(Debug, Clone)]
pub(crate) struct Quantised {
    /// One multiple per hashed weight.
    pub(crate) multiples: Vec<i8>,
    /// The weight of multiple 1.
    pub(crate) scale: f32,
}

impl Quantised {
    /// The quantised form of `model`, or `None` when some weight is not a multiple of the
    /// scale its largest weight implies (a model fresh from training, say).
    pub(crate) fn of(model: &Model) -> Option<Quantised> {
        let max = model.hashed.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        if !max.is_finite() {
            return None;
        }
        // As `to_bytes` chose it: the largest weight is multiple 127.
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let mut multiples = Vec::with_capacity(model.hashed.len());
        for &weight in &model.hashed {
            let multiple = (weight / scale).round();
            if !(-127.0..=127.0).contains(&multiple) {
                return None;
            }
            let multiple = multiple as i8;
            if (f32::from(multiple) * scale).to_bits() != weight.to_bits()
                && !(multiple == 0 && weight == 0.0)
            {
                return None;
            }
            multiples.push(multiple);
        }
        Some(Quantised { multiples, scale })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GuardError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.at..end];
                self.at = end;
                Ok(slice)
            }
            None => Err(GuardError::BadWeights(format!(
                "truncated at byte {} (wanted {n} more)",
                self.at
            ))),
        }
    }

    fn f32(&mut self) -> Result<f32, GuardError> {
        let raw = self.take(4)?;
        Ok(f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
    }

    fn u32(&mut self) -> Result<u32, GuardError> {
        let raw = self.take(4)?;
        Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_file_round_trips_within_quantisation() {
        let mut model = Model::priors_only(10);
        for (index, weight) in model.hashed.iter_mut().enumerate() {
            *weight = (index as f32 - 512.0) / 100.0;
        }
        model.calibration = 0.25;
        let back = Model::from_bytes(&model.to_bytes()).unwrap();
        assert_eq!(back.bits, 10);
        assert_eq!(back.named, model.named);
        assert_eq!(back.calibration, 0.25);
        let step = 5.12 / 127.0;
        for (a, b) in back.hashed.iter().zip(&model.hashed) {
            assert!((a - b).abs() <= step / 2.0 + 1e-6);
        }
    }

    #[test]
    fn corrupt_files_are_errors() {
        let bytes = Model::priors_only(8).to_bytes();
        assert!(Model::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(Model::from_bytes(b"nope").is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(
            Model::from_bytes(&extra)
                .unwrap_err()
                .to_string()
                .contains("trailing")
        );
    }

    #[test]
    fn palette_weights_are_the_model_weights() {
        let model = Model::shipped().unwrap();
        let palette = Palette::of(&model).unwrap();
        for (index, weight) in model.hashed.iter().enumerate() {
            assert_eq!(palette.weight(index).to_bits(), weight.to_bits());
        }
        assert_eq!(palette.weight(model.hashed.len()), 0.0);
        let mut distinct = Model::priors_only(9);
        for (index, weight) in distinct.hashed.iter_mut().enumerate() {
            *weight = index as f32;
        }
        assert!(Palette::of(&distinct).is_none());
    }

    #[test]
    fn quantised_weights_are_the_model_weights() {
        let model = Model::shipped().unwrap();
        let quantised = Quantised::of(&model).unwrap();
        assert_eq!(quantised.multiples.len(), model.hashed.len());
        for (multiple, weight) in quantised.multiples.iter().zip(&model.hashed) {
            assert_eq!(f32::from(*multiple) * quantised.scale, *weight);
        }
        let mut trained = Model::priors_only(9);
        for (index, weight) in trained.hashed.iter_mut().enumerate() {
            *weight = (index as f32).sqrt();
        }
        assert!(Quantised::of(&trained).is_none());
        assert!(Quantised::of(&Model::from_bytes(&trained.to_bytes()).unwrap()).is_some());
    }

    #[test]
    fn shipped_model_loads() {
        let model = Model::shipped().unwrap();
        assert_eq!(model.hashed.len(), 1 << model.bits);
    }
}
