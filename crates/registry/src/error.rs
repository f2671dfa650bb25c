//! The registry's one error type: every variant names the input at fault.

use std::path::PathBuf;

use promptops_core::error::CoreError;

/// Everything that can go wrong in the registry, named after the input at fault.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A prompt name with characters or a length the registry does not accept.
    #[error("invalid prompt name `{name}`: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A version string that is not `MAJOR.MINOR.PATCH`.
    #[error("invalid version `{input}`: {reason}")]
    InvalidVersion {
        /// The version as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `NAME[@VERSION|:LABEL]` reference that cannot be parsed.
    #[error("invalid prompt reference `{input}`: {reason}")]
    InvalidReference {
        /// The reference as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No prompt has this name.
    #[error("unknown prompt `{0}`")]
    UnknownPrompt(String),
    /// The prompt exists but not this version.
    #[error("prompt `{name}` has no version {version}")]
    UnknownVersion {
        /// The prompt.
        name: String,
        /// The version asked for.
        version: String,
    },
    /// The prompt exists but no such label points into it.
    #[error("prompt `{name}` has no label `{label}`")]
    UnknownLabel {
        /// The prompt.
        name: String,
        /// The label asked for.
        label: String,
    },
    /// A traffic fraction outside `[0, 1]` or not a number.
    #[error("invalid {what} {value}: must be a number from 0 to 1")]
    InvalidFraction {
        /// Which fraction (e.g. `canary fraction`).
        what: &'static str,
        /// The value as given.
        value: f64,
    },
    /// A deployment change that the prompt's current rollout state does not allow.
    #[error("cannot {action} `{name}`: {reason}")]
    InvalidTransition {
        /// The prompt.
        name: String,
        /// The attempted change (`deploy`, `expand`, `promote`, `rollback`).
        action: &'static str,
        /// Why it is not allowed now.
        reason: String,
    },
    /// Prompt content that fails validation (templates, variables, schema, tags).
    #[error("invalid content for prompt `{name}`: {reason}")]
    InvalidContent {
        /// The prompt.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A template that does not compile or render (the template error follows as the source).
    #[error("prompt `{name}`")]
    Template {
        /// The prompt.
        name: String,
        /// The template error from the core crate.
        #[source]
        source: CoreError,
    },
    /// A prompt file (sync/export) that cannot be parsed or is inconsistent.
    #[error("{}: {reason}", path.display())]
    InvalidFile {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file or directory failed.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No experiment has this name.
    #[error("unknown experiment `{0}`")]
    UnknownExperiment(String),
    /// An experiment of this name already exists (names are never reused: they salt assignment).
    #[error("experiment `{0}` already exists")]
    ExperimentExists(String),
    /// An experiment definition or outcome that is not acceptable.
    #[error("experiment `{name}`: {reason}")]
    InvalidExperiment {
        /// The experiment.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A review-queue input that is not acceptable (status, decision).
    #[error("invalid review: {0}")]
    InvalidReview(String),
    /// No queued document has this id.
    #[error("no queued document has id {0}")]
    UnknownReview(i64),
    /// The queued document was already decided.
    #[error("queued document {id} is already {status}")]
    ReviewAlreadyResolved {
        /// The queue id.
        id: i64,
        /// Its decision.
        status: String,
    },
    /// A metric outcome that is out of range (negative latency, NaN cost, ...).
    #[error("invalid metric outcome: {0}")]
    InvalidOutcome(String),
    /// Statistics asked of inputs they are not defined for.
    #[error("invalid statistics input: {0}")]
    InvalidStatistics(String),
    /// A database URL the registry cannot open.
    #[error("invalid database URL `{url}`: {reason}")]
    InvalidDatabaseUrl {
        /// The URL (without password) as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A database call failed.
    #[error("database error while trying to {operation}")]
    Database {
        /// What the registry was doing.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the schema migrations failed.
    #[error("database migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored row the registry cannot read back (edited by hand or from a newer version).
    #[error("stored data is corrupt: {0}")]
    CorruptRow(String),
    /// Concurrent writers kept conflicting with this one.
    #[error(
        "gave up after {attempts} attempts to {operation}: concurrent changes kept conflicting"
    )]
    Contention {
        /// What the registry was doing.
        operation: &'static str,
        /// How many times it tried.
        attempts: u32,
    },
}

/// Shorthand for results whose error is [`RegistryError`].
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
