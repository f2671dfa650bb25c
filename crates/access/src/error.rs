//! The crate's error type.

/// Everything that can go wrong in configuration, authentication and limiting.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A configuration value is missing, malformed or inconsistent; `key` is its path
    /// (`keys[2].key_sha256`, `limits.redis_url`).
    #[error("invalid configuration {key}: {reason}")]
    Config {
        /// Path of the offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request carried no API key.
    #[error("missing API key")]
    MissingKey,
    /// The presented API key is not configured.
    #[error("invalid API key")]
    InvalidKey,
    /// A spend amount or token count is unusable (negative, NaN).
    #[error("invalid {what}: {value}")]
    InvalidAmount {
        /// Which quantity.
        what: &'static str,
        /// Its printed value.
        value: String,
    },
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
    /// A Redis command failed; the gateway decides whether to fail open or closed.
    #[error("redis limiter {op} failed: {source}")]
    Redis {
        /// The operation that failed.
        op: &'static str,
        /// The underlying Redis error.
        #[source]
        source: redis::RedisError,
    },
}
