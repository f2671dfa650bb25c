//! Sentence embeddings with all-MiniLM-L6-v2, computed in-process on the CPU (candle + tokenizers).
//!
//! The pipeline reproduces sentence-transformers: WordPiece tokenisation truncated at the model's
//! `max_seq_length` (256 word pieces including `[CLS]`/`[SEP]`), a 6-layer BERT, mean pooling over
//! the attention mask and L2 normalisation, giving 384-dimensional unit vectors.
//!
//! [`Embedder`] is `Send + Sync` and does blocking CPU work: async callers share one instance
//! (e.g. in an `Arc`) and call it through `tokio::task::spawn_blocking`.

use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;

use crate::error::LocalError;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// The name the model goes by in the model cache and in `promptops models pull`.
pub const MODEL_NAME: &str = "all-minilm-l6-v2";

/// The command that fetches the embedding model, quoted in every missing-model error.
pub const PULL_COMMAND: &str = "promptops models pull all-minilm-l6-v2";

/// The sentence-transformers default for all-MiniLM-L6-v2, used when the folder has no
/// `sentence_bert_config.json`.
const DEFAULT_MAX_SEQ_LENGTH: usize = 256;

/// Sequences per forward pass: bounds peak memory (attention scores grow with batch x len^2)
/// while keeping matrix products large enough to use both cores well.
const FORWARD_BATCH: usize = 16;

/// Vectors for a batch of texts plus the token count a provider reports as usage.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingBatch {
    /// One L2-normalised vector per input text, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Word pieces fed to the model across all texts, after truncation, special tokens included.
    pub input_tokens: usize,
}

/// `1_Pooling/config.json`: only mean pooling is what all-MiniLM-L6-v2 was trained with.
#[derive(Debug, Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

/// `sentence_bert_config.json`: carries the truncation length sentence-transformers uses.
#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

/// A loaded sentence-embedding model: load once, share across threads.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    dimensions: usize,
    max_tokens: usize,
    device: Device,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dimensions", &self.dimensions)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads a sentence-transformers folder (`config.json`, `tokenizer.json`, `model.safetensors`,
    /// optional `1_Pooling/config.json` and `sentence_bert_config.json`).
    pub fn load(dir: &Path) -> Result<Self, LocalError> {
        let config_path = require(dir, "config.json", "BERT configuration")?;
        let tokenizer_path = require(dir, "tokenizer.json", "WordPiece tokenizer")?;
        let weights_path = require(dir, "model.safetensors", "model weights")?;

        let config: BertConfig = read_json(&config_path)?;
        if let Some(kind) = config.model_type.as_deref().filter(|kind| *kind != "bert") {
            return Err(LocalError::Unsupported {
                path: config_path,
                reason: format!("model_type is {kind:?}, expected \"bert\""),
            });
        }

        let pooling_path = dir.join("1_Pooling").join("config.json");
        if pooling_path.is_file() {
            let pooling: PoolingConfig = read_json(&pooling_path)?;
            check_pooling(&pooling, &config, &pooling_path)?;
        }

        let st_config_path = dir.join("sentence_bert_config.json");
        let max_seq_length = if st_config_path.is_file() {
            read_json::<SentenceBertConfig>(&st_config_path)?.max_seq_length
        } else {
            DEFAULT_MAX_SEQ_LENGTH
        };
        if max_seq_length < 2 || max_seq_length > config.max_position_embeddings {
            return Err(LocalError::Unsupported {
                path: st_config_path,
                reason: format!(
                    "max_seq_length {max_seq_length} must be between 2 and the model's {} positions",
                    config.max_position_embeddings
                ),
            });
        }

        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|source| {
            LocalError::InvalidTokenizer {
                path: tokenizer_path.clone(),
                source,
            }
        })?;
        // tokenizer.json ships its own truncation (128) and padding; sentence-transformers
        // overrides both, so do the same: truncate at max_seq_length, pad per batch ourselves.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|source| LocalError::InvalidTokenizer {
                path: tokenizer_path.clone(),
                source,
            })?;
        tokenizer.with_padding(None);

        let bytes = fs::read(&weights_path).map_err(|source| LocalError::Read {
            path: weights_path.clone(),
            source,
        })?;
        let device = Device::Cpu;
        let invalid_weights = |source| LocalError::InvalidWeights {
            path: weights_path.clone(),
            source,
        };
        let weights = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
            .map_err(invalid_weights)?;
        let model = BertModel::load(weights, &config).map_err(invalid_weights)?;

        Ok(Self {
            model,
            tokenizer,
            dimensions: config.hidden_size,
            max_tokens: max_seq_length,
            device,
        })
    }

    /// Length of every vector this model returns (384 for all-MiniLM-L6-v2).
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Word pieces per text (special tokens included) beyond which input is truncated.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Embeds one text into an L2-normalised vector.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, LocalError> {
        let mut batch = self.embed_batch_with_usage(&[text])?;
        Ok(batch.vectors.pop().unwrap_or_default())
    }

    /// Embeds many texts; the result is in input order and matches embedding each text alone.
    pub fn embed_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>, LocalError> {
        Ok(self.embed_batch_with_usage(texts)?.vectors)
    }

    /// Embeds many texts and also reports how many word pieces were fed to the model.
    pub fn embed_batch_with_usage<S: AsRef<str>>(
        &self,
        texts: &[S],
    ) -> Result<EmbeddingBatch, LocalError> {
        let mut encoded = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let encoding = self
                .tokenizer
                .encode(text.as_ref(), true)
                .map_err(|source| LocalError::Tokenize { index, source })?;
            encoded.push(encoding.get_ids().to_vec());
        }
        let input_tokens = encoded.iter().map(Vec::len).sum();

        // Group texts of similar length so little compute goes to padding; restore order after.
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut vectors = vec![Vec::new(); encoded.len()];
        for chunk in order.chunks(FORWARD_BATCH) {
            let ids: Vec<&[u32]> = chunk.iter().map(|&i| encoded[i].as_slice()).collect();
            for (&i, vector) in chunk.iter().zip(self.forward(&ids)?) {
                vectors[i] = vector;
            }
        }
        Ok(EmbeddingBatch {
            vectors,
            input_tokens,
        })
    }

    /// Runs BERT on one padded batch and returns mean-pooled, normalised vectors.
    fn forward(&self, sequences: &[&[u32]]) -> Result<Vec<Vec<f32>>, LocalError> {
        let rows = sequences.len();
        let width = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        if rows == 0 || width == 0 {
            return Ok(vec![vec![0.0; self.dimensions]; rows]);
        }
        let mut ids = vec![0u32; rows * width];
        let mut mask = vec![0u32; rows * width];
        for (row, sequence) in sequences.iter().enumerate() {
            let start = row * width;
            ids[start..start + sequence.len()].copy_from_slice(sequence);
            mask[start..start + sequence.len()].fill(1);
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;

        // Mean pooling over real tokens only: sum(hidden * mask) / count(mask).
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let pooled = summed.broadcast_div(&counts)?;
        let norms = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        Ok(pooled.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

/// Cosine similarity of two vectors (the dot product when both are unit length); 0 when either
/// is all zeros or the lengths differ.
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm_a = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let norm_b = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm_a == 0.0 || norm_b == 0.0 {
        return 0.0;
    }
    dot / (norm_a * norm_b)
}

/// Path of a required model file, or an error naming it and the command that fetches the model.
fn require(dir: &Path, name: &str, what: &'static str) -> Result<PathBuf, LocalError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(LocalError::MissingFile { path, what })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, LocalError> {
    let text = fs::read_to_string(path).map_err(|source| LocalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| LocalError::InvalidConfig {
        path: path.to_path_buf(),
        source,
    })
}

fn check_pooling(
    pooling: &PoolingConfig,
    config: &BertConfig,
    path: &Path,
) -> Result<(), LocalError> {
    let other_modes = pooling.pooling_mode_cls_token
        || pooling.pooling_mode_max_tokens
        || pooling.pooling_mode_mean_sqrt_len_tokens;
    if !pooling.pooling_mode_mean_tokens || other_modes {
        return Err(LocalError::Unsupported {
            path: path.to_path_buf(),
            reason: "only mean pooling (pooling_mode_mean_tokens alone) is implemented".into(),
        });
    }
    if pooling.word_embedding_dimension != config.hidden_size {
        return Err(LocalError::Unsupported {
            path: path.to_path_buf(),
            reason: format!(
                "word_embedding_dimension {} differs from the model's hidden_size {}",
                pooling.word_embedding_dimension, config.hidden_size
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Embedder>();
    }

    #[test]
    fn cosine_of_parallel_orthogonal_and_mismatched_vectors() {
        assert!((cosine_similarity(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine_similarity(&[1.0, 0.0], &[0.0, 3.0]), 0.0);
        assert_eq!(cosine_similarity(&[1.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn pooling_other_than_mean_is_rejected() {
        let config = BertConfig::default();
        let pooling = PoolingConfig {
            word_embedding_dimension: config.hidden_size,
            pooling_mode_mean_tokens: false,
            pooling_mode_cls_token: true,
            pooling_mode_max_tokens: false,
            pooling_mode_mean_sqrt_len_tokens: false,
        };
        let err = check_pooling(&pooling, &config, Path::new("p.json")).unwrap_err();
        assert!(err.to_string().contains("mean pooling"), "{err}");
    }
}
