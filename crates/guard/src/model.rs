//! The injection model: logistic regression over hashed n-grams plus named rule and
//! obfuscation features, and its compact weight file (`data/injection.weights`).
//!
//! File layout (little-endian): magic `POGW`, version `1`, hash bits (u8), two zero bytes,
//! bias (f32), calibration offset (f32), hashed scale (f32), named count (u32), then each
//! named weight as name length (u8), name (UTF-8), weight (f32), then `2^bits` hashed weights
//! as `i8` multiples of the scale.

use crate::error::GuardError;
use crate::features::{Analysis, NamedFeature, for_each_hashed, named_features, named_values};

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
        let mut sum = 0.0f32;
        let count = for_each_hashed(&analysis.scan_text, self.bits, |index, sign| {
            sum += self.hashed.get(index).copied().unwrap_or(0.0) * sign;
        });
        let ngrams = if count == 0 {
            0.0
        } else {
            sum / (count as f32).sqrt()
        };
        let named = named_values(analysis)
            .into_iter()
            .map(|(index, value)| self.named.get(index).copied().unwrap_or(0.0) * value)
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
    fn shipped_model_loads() {
        let model = Model::shipped().unwrap();
        assert_eq!(model.hashed.len(), 1 << model.bits);
    }
}
