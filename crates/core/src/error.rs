//! The one error type of promptops-core; every variant names the input at fault.

use thiserror::Error;

/// Errors raised by the prompt core.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A model name that the catalog and the encoding table do not know.
    #[error("unknown model `{model}`; known models: {known}")]
    UnknownModel {
        /// The model that was asked for.
        model: String,
        /// Comma-separated list of the names that are known.
        known: String,
    },
    /// An encoding name that is not built in.
    #[error("unknown encoding `{encoding}`; known encodings: {known}")]
    UnknownEncoding {
        /// The encoding that was asked for.
        encoding: String,
        /// Comma-separated list of the names that are known.
        known: String,
    },
    /// A wire-format payload that does not have the expected shape.
    #[error("invalid {format} payload at {path}: {reason}")]
    InvalidWire {
        /// The format being read ("openai", "anthropic").
        format: &'static str,
        /// JSON path of the offending value, e.g. `messages[2].content`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A generation parameter outside its allowed range.
    #[error("invalid generation parameter `{field}`: {reason}")]
    InvalidParameter {
        /// The field at fault, e.g. `temperature`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
