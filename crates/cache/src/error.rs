//! The crate's error type.

/// Everything that can go wrong while configuring or using a cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The `[cache]` section could not be parsed as TOML of the expected shape.
    #[error("invalid [cache] configuration: {0}")]
    ConfigParse(#[from] toml::de::Error),
    /// A configuration value is out of range or inconsistent; `key` is its dotted TOML path.
    #[error("invalid configuration value {key}: {message}")]
    Config {
        /// Dotted TOML path of the offending key, e.g. `cache.ttl_seconds`.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A Redis command failed (connection refused, timeout, server error). Callers should treat
    /// this as a cache miss on `get` and ignore it on `put`.
    #[error("redis cache {op} failed: {source}")]
    Redis {
        /// The operation that failed (`connect`, `get`, `put`).
        op: &'static str,
        /// The underlying Redis error.
        #[source]
        source: redis::RedisError,
    },
    /// A vector given to the semantic cache is unusable.
    #[error("invalid embedding for scope {scope:?}: {message}")]
    InvalidVector {
        /// The scope the vector was meant for.
        scope: String,
        /// Why it was rejected (dimension mismatch, zero norm, NaN).
        message: String,
    },
}

impl CacheError {
    /// True when the error means the backing store is unavailable (so a `get` is just a miss).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CacheError::Redis { .. })
    }
}
