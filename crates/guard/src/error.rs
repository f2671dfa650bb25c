//! The one error type of the guard crate: bad configuration or bad stored data, never a verdict.

use thiserror::Error;

/// What went wrong, naming the input at fault. A detection hit is a verdict, not an error.
#[derive(Debug, Error)]
pub enum GuardError {
    /// The classifier weight file is malformed.
    #[error("injection weights: {0}")]
    BadWeights(String),
    /// A line of a labelled JSONL file could not be used.
    #[error("line {line}: {message}")]
    BadDataLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A setting is out of range or inconsistent.
    #[error("guard config `{field}`: {message}")]
    BadConfig {
        /// The setting at fault.
        field: String,
        /// Why it is rejected.
        message: String,
    },
    /// A tool's JSON schema does not compile.
    #[error("tool `{tool}`: invalid JSON schema: {message}")]
    BadToolSchema {
        /// The tool whose schema is broken.
        tool: String,
        /// The schema compiler's message.
        message: String,
    },
    /// A sealed vault could not be opened (wrong key, tampered or truncated data).
    #[error("sealed vault: {0}")]
    VaultOpen(String),
    /// A key has the wrong length or is empty.
    #[error("{what}: {message}")]
    BadKey {
        /// Which key.
        what: &'static str,
        /// Why it is rejected.
        message: String,
    },
}
