//! The `[cache]` configuration section and its validation.
//!
//! ```toml
//! [cache]
//! backend = "memory"          # or "redis"
//! redis_url = "redis://127.0.0.1:6379"   # required for (and only allowed with) redis
//! redis_prefix = "promptops:cache:"      # optional, redis only
//! ttl_seconds = 3600
//! max_bytes = 67108864        # memory only
//!
//! [cache.semantic]
//! enabled = true
//! threshold = 0.95
//! max_entries = 10000
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::CacheError;

/// Default TTL of cached responses: one hour.
pub const DEFAULT_TTL_SECONDS: u64 = 3600;
/// Default memory budget of the in-process exact cache: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default Redis key prefix.
pub const DEFAULT_REDIS_PREFIX: &str = "promptops:cache:";
/// Default cosine-similarity threshold of the semantic cache.
pub const DEFAULT_THRESHOLD: f32 = 0.95;
/// Default maximum number of semantic cache entries.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// The raw `[cache]` section as written in TOML (validate it with [`CacheSection::validate`]).
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// `"memory"` (default) or `"redis"`.
    #[serde(default)]
    pub backend: Option<String>,
    /// Redis URL, required when `backend = "redis"`.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (default `promptops:cache:`).
    #[serde(default)]
    pub redis_prefix: Option<String>,
    /// Time to live of cached responses in seconds (default 3600).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Memory budget of the in-process exact cache in bytes (default 64 MiB).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// The `[cache.semantic]` subsection.
    #[serde(default)]
    pub semantic: Option<SemanticSection>,
}

/// The raw `[cache.semantic]` subsection.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SemanticSection {
    /// Whether the semantic cache is on (default false).
    #[serde(default)]
    pub enabled: bool,
    /// Minimum cosine similarity for a hit, in (0, 1] (default 0.95).
    #[serde(default)]
    pub threshold: Option<f32>,
    /// Maximum number of entries over all scopes (default 10000).
    #[serde(default)]
    pub max_entries: Option<usize>,
    /// The embedding model (route or `PROVIDER/MODEL`) that compares final user turns
    /// (default `local/all-minilm-l6-v2`, the embedded model).
    #[serde(default)]
    pub embedding_model: Option<String>,
}

/// Which store backs the exact cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In-process moka cache bounded by total bytes.
    Memory {
        /// Total weight (value bytes plus key overhead) the cache may hold.
        max_bytes: u64,
    },
    /// Shared Redis.
    Redis {
        /// Connection URL (`redis://` or `rediss://`).
        url: String,
        /// Prefix of every key written.
        prefix: String,
    },
}

/// Validated semantic cache settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticConfig {
    /// Minimum cosine similarity for a hit.
    pub threshold: f32,
    /// Maximum number of live entries over all scopes.
    pub max_entries: usize,
    /// Entry lifetime (the cache TTL).
    pub ttl: Duration,
    /// The embedding model (route or `PROVIDER/MODEL`) the caller embeds with.
    pub embedding_model: String,
}

/// Default embedding model of the semantic cache: the embedded MiniLM.
pub const DEFAULT_EMBEDDING_MODEL: &str = "local/all-minilm-l6-v2";

/// Validated cache configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Exact cache backend.
    pub backend: Backend,
    /// Lifetime of exact (and semantic) entries.
    pub ttl: Duration,
    /// Semantic cache settings, `None` when disabled.
    pub semantic: Option<SemanticConfig>,
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    cache: CacheSection,
}

impl CacheConfig {
    /// Parse the `[cache]` section out of a whole TOML document (other sections are ignored;
    /// unknown keys inside `[cache]` are errors) and validate it.
    pub fn from_toml_str(text: &str) -> Result<CacheConfig, CacheError> {
        let doc: Document = toml::from_str(text)?;
        doc.cache.validate()
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> CacheError {
    CacheError::Config {
        key,
        message: message.into(),
    }
}

impl CacheSection {
    /// Check ranges and consistency, apply defaults and build a [`CacheConfig`].
    pub fn validate(&self) -> Result<CacheConfig, CacheError> {
        let ttl_seconds = self.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
        if ttl_seconds == 0 {
            return Err(invalid("cache.ttl_seconds", "must be at least 1"));
        }
        let ttl = Duration::from_secs(ttl_seconds);
        let backend = match self.backend.as_deref().unwrap_or("memory") {
            "memory" => {
                if self.redis_url.is_some() {
                    return Err(invalid(
                        "cache.redis_url",
                        "is only allowed with backend = \"redis\"",
                    ));
                }
                if self.redis_prefix.is_some() {
                    return Err(invalid(
                        "cache.redis_prefix",
                        "is only allowed with backend = \"redis\"",
                    ));
                }
                let max_bytes = self.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
                if max_bytes == 0 {
                    return Err(invalid("cache.max_bytes", "must be at least 1"));
                }
                Backend::Memory { max_bytes }
            }
            "redis" => {
                if self.max_bytes.is_some() {
                    return Err(invalid(
                        "cache.max_bytes",
                        "is only allowed with backend = \"memory\" (size Redis with maxmemory)",
                    ));
                }
                let Some(url) = self.redis_url.clone() else {
                    return Err(invalid(
                        "cache.redis_url",
                        "is required when backend = \"redis\"",
                    ));
                };
                if let Err(e) = redis::Client::open(url.as_str()) {
                    return Err(invalid(
                        "cache.redis_url",
                        format!("{url:?} is not a Redis URL: {e}"),
                    ));
                }
                let prefix = self
                    .redis_prefix
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_string());
                Backend::Redis { url, prefix }
            }
            other => {
                return Err(invalid(
                    "cache.backend",
                    format!("{other:?} is not one of \"memory\", \"redis\""),
                ));
            }
        };
        let semantic = match &self.semantic {
            Some(s) if s.enabled => {
                let threshold = s.threshold.unwrap_or(DEFAULT_THRESHOLD);
                if !(threshold > 0.0 && threshold <= 1.0) {
                    return Err(invalid(
                        "cache.semantic.threshold",
                        format!("{threshold} is not in (0, 1]"),
                    ));
                }
                let max_entries = s.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES);
                if max_entries == 0 {
                    return Err(invalid("cache.semantic.max_entries", "must be at least 1"));
                }
                let embedding_model = s
                    .embedding_model
                    .clone()
                    .unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL.to_owned());
                if embedding_model.trim().is_empty() {
                    return Err(invalid(
                        "cache.semantic.embedding_model",
                        "must not be empty",
                    ));
                }
                Some(SemanticConfig {
                    threshold,
                    max_entries,
                    ttl,
                    embedding_model,
                })
            }
            _ => None,
        };
        Ok(CacheConfig {
            backend,
            ttl,
            semantic,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml: &str, expected: Result<CacheConfig, &str>) {
        let got = CacheConfig::from_toml_str(toml);
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(e), Err(fragment)) => {
                let msg = e.to_string();
                assert!(msg.contains(fragment), "error {msg:?} lacks {fragment:?}");
            }
            (got, want) => panic!("for {toml:?}: got {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn defaults_when_section_absent() {
        check(
            "[server]\nport = 1\n",
            Ok(CacheConfig {
                backend: Backend::Memory {
                    max_bytes: DEFAULT_MAX_BYTES,
                },
                ttl: Duration::from_secs(3600),
                semantic: None,
            }),
        );
    }

    #[test]
    fn full_redis_with_semantic() {
        check(
            "[cache]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\nttl_seconds = 60\n[cache.semantic]\nenabled = true\nmax_entries = 5\n",
            Ok(CacheConfig {
                backend: Backend::Redis {
                    url: "redis://127.0.0.1:6379".into(),
                    prefix: DEFAULT_REDIS_PREFIX.into(),
                },
                ttl: Duration::from_secs(60),
                semantic: Some(SemanticConfig {
                    threshold: 0.95,
                    max_entries: 5,
                    ttl: Duration::from_secs(60),
                    embedding_model: DEFAULT_EMBEDDING_MODEL.to_owned(),
                }),
            }),
        );
    }

    #[test]
    fn memory_with_size() {
        check(
            "[cache]\nbackend = \"memory\"\nmax_bytes = 1000\n[cache.semantic]\nenabled = false\nthreshold = 2.0\n",
            Ok(CacheConfig {
                backend: Backend::Memory { max_bytes: 1000 },
                ttl: Duration::from_secs(3600),
                semantic: None,
            }),
        );
    }

    #[test]
    fn errors_name_the_key() {
        check(
            "[cache]\nbakend = \"memory\"\n",
            Err("unknown field `bakend`"),
        );
        check(
            "[cache.semantic]\nenabld = true\n",
            Err("unknown field `enabld`"),
        );
        check("[cache]\nbackend = \"disk\"\n", Err("cache.backend"));
        check("[cache]\nttl_seconds = 0\n", Err("cache.ttl_seconds"));
        check("[cache]\nmax_bytes = 0\n", Err("cache.max_bytes"));
        check(
            "[cache]\nbackend = \"redis\"\n",
            Err("cache.redis_url: is required"),
        );
        check(
            "[cache]\nbackend = \"redis\"\nredis_url = \"http://x\"\n",
            Err("cache.redis_url"),
        );
        check(
            "[cache]\nredis_url = \"redis://x\"\n",
            Err("cache.redis_url: is only allowed"),
        );
        check(
            "[cache]\nbackend = \"redis\"\nredis_url = \"redis://x\"\nmax_bytes = 5\n",
            Err("cache.max_bytes"),
        );
        check(
            "[cache.semantic]\nenabled = true\nthreshold = 1.5\n",
            Err("cache.semantic.threshold"),
        );
        check(
            "[cache.semantic]\nenabled = true\nmax_entries = 0\n",
            Err("cache.semantic.max_entries"),
        );
        check("[cache]\nttl_seconds = -1\n", Err("ttl_seconds"));
    }
}
