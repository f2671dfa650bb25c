//! Virtual API keys, rate limits and spend budgets for the gateway.
//!
//! - [`KeyStore`]: the `[[keys]]` of the config file. Only SHA-256 digests of secret keys are
//!   configured or held in memory; [`KeyStore::authenticate`] hashes the presented key, looks the
//!   digest up and confirms it in constant time. [`ApiKey::allows_model`] applies the key's model
//!   allow list (exact names, `prompt:NAME`, trailing-`*` prefix globs). [`generate_key`] makes a
//!   new `po-...` secret and its digest.
//! - [`Limiter`]: requests-per-minute, tokens-per-minute and spend budgets per key name, either
//!   in process ([`MemoryLimiter`], exact sliding window, one replica) or in Redis
//!   ([`RedisLimiter`], atomic Lua fixed windows, shared by all replicas). Time comes from a
//!   [`Clock`] so tests drive it by hand ([`ManualClock`]).
//! - [`LimitsConfig`]: the `[limits]` section (limiter backend plus the request size limits the
//!   gateway enforces itself).
//!
//! No HTTP here: the gateway maps [`AccessError`] and [`Decision`] to responses and headers.

mod clock;
mod config;
mod error;
mod keys;
mod limiter;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    AccessConfig, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_MESSAGES, KeyEntry, LimiterBackend,
    LimitsConfig, LimitsSection,
};
pub use error::AccessError;
pub use keys::{ApiKey, KeyStore, ModelPattern, Role, generate_key, sha256_hex};
pub use limiter::{Decision, Limiter, Limits, MemoryLimiter, RedisLimiter, WINDOW};
