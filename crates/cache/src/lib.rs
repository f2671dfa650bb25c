//! Response caching for the OpenAI-compatible gateway.
//!
//! Three pieces, all independent of HTTP:
//!
//! - [`CacheKey`]: a SHA-256 digest over the *canonical* JSON form of the request fields the
//!   caller chooses (model, messages, tools, parameters). Canonical means object keys sorted
//!   recursively and no whitespace, so two clients that send the same request with fields in a
//!   different order share one cache entry.
//! - [`ExactCache`]: byte-exact response cache keyed by [`CacheKey`], backed either by an
//!   in-process [`MemoryCache`] (moka, bounded by total bytes, per-entry TTL) or by a shared
//!   [`RedisCache`] (`SET key value PX ttl` under a configurable prefix). A Redis outage surfaces
//!   as [`CacheError::Redis`], which the gateway treats as a miss.
//! - [`SemanticCache`]: approximate nearest-neighbour lookup over L2-normalised embeddings (HNSW
//!   from `hnsw_rs`), partitioned by a scope string, with a cosine-similarity threshold, TTL and
//!   a maximum entry count.
//!
//! Configuration comes from the `[cache]` TOML section ([`CacheSection`] validated into
//! [`CacheConfig`]). Every cache keeps hit/miss/insert counters ([`CacheStats`]).

mod config;
mod error;
mod exact;
mod key;
mod semantic;
mod stats;

pub use config::{
    Backend, CacheConfig, CacheSection, DEFAULT_EMBEDDING_MODEL, SemanticConfig, SemanticSection,
};
pub use error::CacheError;
pub use exact::{ExactCache, MemoryCache, RedisCache};
pub use key::CacheKey;
pub use semantic::{SemanticCache, SemanticHit};
pub use stats::CacheStats;
