#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The local embedder against reference vectors from the real sentence-transformers pipeline
//! (tests/fixtures/embeddings-all-minilm-l6-v2.json, made by scripts/gen-embedding-fixtures.py),
//! on the real all-MiniLM-L6-v2 files from the model cache (`promptops models pull all-minilm-l6-v2`).

use std::path::PathBuf;
use std::sync::Arc;

use promptops_local::LocalError;
use promptops_local::embed::{Embedder, cosine_similarity};
use promptops_local::models::{EMBEDDING_MODEL, ModelCache};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    max_seq_length: usize,
    dimensions: usize,
    sentences: Vec<Reference>,
}

#[derive(Deserialize)]
struct Reference {
    text: String,
    tokens: usize,
    embedding: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/embeddings-all-minilm-l6-v2.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The installed model folder; fails with the pull command when the model is not installed.
fn model_dir() -> PathBuf {
    let cache = ModelCache::from_env().unwrap();
    cache
        .require(EMBEDDING_MODEL)
        .unwrap_or_else(|err| panic!("embedding tests need the real model: {err}"))
}

fn embedder() -> Embedder {
    Embedder::load(&model_dir()).unwrap()
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[test]
fn every_reference_sentence_matches_sentence_transformers() {
    let fixture = fixture();
    let embedder = embedder();
    assert_eq!(embedder.dimensions(), fixture.dimensions);
    assert_eq!(embedder.dimensions(), 384);
    assert_eq!(embedder.max_tokens(), fixture.max_seq_length);
    assert!(fixture.sentences.len() >= 20);

    let texts: Vec<&str> = fixture.sentences.iter().map(|s| s.text.as_str()).collect();
    let batch = embedder.embed_batch_with_usage(&texts).unwrap();
    assert_eq!(batch.vectors.len(), texts.len());
    assert_eq!(
        batch.input_tokens,
        fixture.sentences.iter().map(|s| s.tokens).sum::<usize>()
    );
    for (reference, vector) in fixture.sentences.iter().zip(&batch.vectors) {
        assert_eq!(vector.len(), 384, "{:?}", reference.text);
        assert!(
            (norm(vector) - 1.0).abs() < 1e-4,
            "norm of {:?}",
            reference.text
        );
        let cosine = cosine_similarity(vector, &reference.embedding);
        assert!(
            cosine >= 0.999,
            "cosine {cosine} for {:?} is below 0.999",
            reference.text
        );
    }
}

#[test]
fn batch_equals_one_at_a_time_and_is_deterministic() {
    let fixture = fixture();
    let embedder = embedder();
    let texts: Vec<&str> = fixture.sentences.iter().map(|s| s.text.as_str()).collect();
    let batch = embedder.embed_batch(&texts).unwrap();
    for (text, batched) in texts.iter().zip(&batch) {
        let single = embedder.embed(text).unwrap();
        let max_diff = single
            .iter()
            .zip(batched)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            max_diff < 1e-5,
            "batched differs by {max_diff} for {text:?}"
        );
    }
    assert_eq!(embedder.embed_batch(&texts).unwrap(), batch);
}

#[test]
fn text_beyond_256_word_pieces_is_truncated() {
    let fixture = fixture();
    let embedder = embedder();
    let long: Vec<&Reference> = fixture
        .sentences
        .iter()
        .filter(|s| s.tokens == fixture.max_seq_length)
        .collect();
    assert_eq!(long.len(), 2, "the fixture holds two over-long texts");
    assert_ne!(long[0].text, long[1].text);
    let batch = embedder
        .embed_batch_with_usage(&[&long[0].text, &long[1].text])
        .unwrap();
    assert_eq!(batch.input_tokens, 2 * 256);
    assert!(cosine_similarity(&batch.vectors[0], &batch.vectors[1]) > 0.99999);
}

#[test]
fn similar_meanings_are_closer_than_unrelated_ones() {
    let embedder = embedder();
    let v = embedder
        .embed_batch(&[
            "The quick brown fox jumps over the lazy dog.",
            "A fast auburn fox leaps above a sleepy hound.",
            "Quarterly revenue grew by twelve percent.",
        ])
        .unwrap();
    let close = cosine_similarity(&v[0], &v[1]);
    let far = cosine_similarity(&v[0], &v[2]);
    assert!(close > far + 0.3, "paraphrase {close} vs unrelated {far}");
}

#[test]
fn empty_input_list_gives_no_vectors() {
    let embedder = embedder();
    let batch = embedder.embed_batch_with_usage::<&str>(&[]).unwrap();
    assert!(batch.vectors.is_empty());
    assert_eq!(batch.input_tokens, 0);
}

#[test]
fn shared_across_threads_gives_the_same_vectors() {
    let embedder = Arc::new(embedder());
    let texts = ["first text", "zweiter Text", "третий текст", "第四"];
    let expected = embedder.embed_batch(&texts).unwrap();
    let handles: Vec<_> = texts
        .iter()
        .map(|text| {
            let embedder = Arc::clone(&embedder);
            let text = text.to_string();
            std::thread::spawn(move || embedder.embed(&text).unwrap())
        })
        .collect();
    for (handle, want) in handles.into_iter().zip(&expected) {
        let got = handle.join().unwrap();
        assert!(cosine_similarity(&got, want) > 0.99999);
    }
}

#[test]
fn missing_files_are_named_with_the_pull_command() {
    let dir = tempfile::tempdir().unwrap();
    let err = Embedder::load(dir.path()).unwrap_err();
    assert!(matches!(err, LocalError::MissingFile { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("config.json"), "{message}");
    assert!(
        message.contains("promptops models pull all-minilm-l6-v2"),
        "{message}"
    );

    let source = model_dir();
    std::fs::copy(source.join("config.json"), dir.path().join("config.json")).unwrap();
    std::fs::copy(
        source.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let message = Embedder::load(dir.path()).unwrap_err().to_string();
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(
        message.contains("models pull all-minilm-l6-v2"),
        "{message}"
    );
}

/// A temporary model folder with the real config and tokenizer and the given weights bytes.
fn folder_with_weights(weights: &[u8]) -> tempfile::TempDir {
    let source = model_dir();
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "tokenizer.json", "sentence_bert_config.json"] {
        std::fs::copy(source.join(name), dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join("model.safetensors"), weights).unwrap();
    dir
}

fn assert_corrupt_weights(dir: &tempfile::TempDir) {
    let err = Embedder::load(dir.path()).unwrap_err();
    assert!(matches!(err, LocalError::InvalidWeights { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(message.contains("corrupt"), "{message}");
    assert!(
        message.contains("models pull all-minilm-l6-v2"),
        "{message}"
    );
}

#[test]
fn garbage_weights_are_reported_as_corrupt() {
    assert_corrupt_weights(&folder_with_weights(b"this is not a safetensors file"));
}

#[test]
fn truncated_weights_are_reported_as_corrupt() {
    let real = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    assert_corrupt_weights(&folder_with_weights(&real[..real.len() / 2]));
}

#[test]
fn weights_without_bert_tensors_are_reported_as_corrupt() {
    // A valid safetensors file holding one unrelated tensor.
    let header = br#"{"other.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 8]);
    assert_corrupt_weights(&folder_with_weights(&bytes));
}

#[test]
fn malformed_tokenizer_and_config_are_named() {
    let dir = folder_with_weights(b"unused");
    std::fs::write(dir.path().join("tokenizer.json"), "{ not json").unwrap();
    let err = Embedder::load(dir.path()).unwrap_err();
    assert!(
        matches!(err, LocalError::InvalidTokenizer { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    std::fs::write(dir.path().join("config.json"), r#"{"hidden_size": 384}"#).unwrap();
    let err = Embedder::load(dir.path()).unwrap_err();
    assert!(matches!(err, LocalError::InvalidConfig { .. }), "{err:?}");
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn non_mean_pooling_is_refused() {
    let dir = folder_with_weights(b"unused");
    std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    std::fs::write(
        dir.path().join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true}"#,
    )
    .unwrap();
    let err = Embedder::load(dir.path()).unwrap_err();
    assert!(matches!(err, LocalError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("mean pooling"), "{err}");
}
