//! Exact (byte-for-byte) response caches keyed by [`CacheKey`]: in-process moka or shared Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use redis::aio::ConnectionManager;

use crate::config::{Backend, CacheConfig};
use crate::stats::Counters;
use crate::{CacheError, CacheKey, CacheStats};

/// Bytes charged per entry on top of the value, for the key and moka's bookkeeping.
const ENTRY_OVERHEAD: usize = 96;

/// Timeout for connecting to Redis and for each command, so an outage turns into an error
/// quickly instead of stalling the request.
const REDIS_TIMEOUT: Duration = Duration::from_millis(1000);

/// An exact cache: the in-process or the Redis backend, chosen by configuration.
#[derive(Clone, Debug)]
pub enum ExactCache {
    /// In-process cache.
    Memory(MemoryCache),
    /// Shared Redis cache.
    Redis(RedisCache),
}

impl ExactCache {
    /// Build the backend named by `config` (connects to Redis for the Redis backend).
    pub async fn from_config(config: &CacheConfig) -> Result<ExactCache, CacheError> {
        match &config.backend {
            Backend::Memory { max_bytes } => Ok(ExactCache::Memory(MemoryCache::new(*max_bytes))),
            Backend::Redis { url, prefix } => {
                Ok(ExactCache::Redis(RedisCache::connect(url, prefix).await?))
            }
        }
    }

    /// Look a key up; `Ok(None)` is a miss. A Redis error should be treated as a miss.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, CacheError> {
        match self {
            ExactCache::Memory(c) => Ok(c.get(key).await),
            ExactCache::Redis(c) => c.get(key).await,
        }
    }

    /// Store a value for `ttl`, replacing any previous value and TTL.
    pub async fn put(&self, key: &CacheKey, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        match self {
            ExactCache::Memory(c) => {
                c.put(key, value, ttl).await;
                Ok(())
            }
            ExactCache::Redis(c) => c.put(key, value, ttl).await,
        }
    }

    /// Counter snapshot.
    pub fn stats(&self) -> CacheStats {
        match self {
            ExactCache::Memory(c) => c.stats(),
            ExactCache::Redis(c) => c.stats(),
        }
    }

    /// Whether the backend answers (readiness): always for memory, a `PING` for Redis.
    pub async fn ping(&self) -> Result<(), CacheError> {
        match self {
            ExactCache::Memory(_) => Ok(()),
            ExactCache::Redis(c) => c.ping().await,
        }
    }
}

#[derive(Clone)]
struct Entry {
    value: Bytes,
    ttl: Duration,
}

/// moka expiry policy: every entry lives for the TTL it was (last) put with.
struct PerEntryTtl;

impl Expiry<CacheKey, Entry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Entry,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &Entry,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// In-process exact cache (moka), bounded by the total bytes of its values, per-entry TTL.
#[derive(Clone)]
pub struct MemoryCache {
    inner: moka::future::Cache<CacheKey, Entry>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.inner.entry_count())
            .field("weighted_size", &self.inner.weighted_size())
            .finish()
    }
}

impl MemoryCache {
    /// A cache holding at most about `max_bytes` of values (plus a small per-entry overhead).
    /// A single value larger than `max_bytes` is not retained.
    pub fn new(max_bytes: u64) -> MemoryCache {
        let inner = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &CacheKey, entry: &Entry| {
                u32::try_from(entry.value.len().saturating_add(ENTRY_OVERHEAD)).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        MemoryCache {
            inner,
            counters: Arc::new(Counters::default()),
        }
    }

    /// Look a key up; `None` is a miss (absent or expired).
    pub async fn get(&self, key: &CacheKey) -> Option<Bytes> {
        match self.inner.get(key).await {
            Some(entry) => {
                self.counters.hit();
                Some(entry.value)
            }
            None => {
                self.counters.miss();
                None
            }
        }
    }

    /// Store a value for `ttl` (a zero TTL stores nothing).
    pub async fn put(&self, key: &CacheKey, value: Bytes, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        self.inner.insert(*key, Entry { value, ttl }).await;
        self.counters.insert();
    }

    /// Approximate total weight in bytes currently held (after pending maintenance).
    pub async fn weighted_size(&self) -> u64 {
        self.inner.run_pending_tasks().await;
        self.inner.weighted_size()
    }

    /// Counter snapshot.
    pub fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }
}

/// Shared exact cache in Redis: `SET {prefix}{hex key} value PX ttl_ms`.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisCache {
    /// `PING`, bounded by the connection's response timeout.
    pub async fn ping(&self) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|source| CacheError::Redis { op: "ping", source })
    }

    /// Connect to `url`; every key is written as `{prefix}{64 hex digits}`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisCache, CacheError> {
        let map = |source| CacheError::Redis {
            op: "connect",
            source,
        };
        let client = redis::Client::open(url).map_err(map)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(map)?;
        Ok(RedisCache {
            conn,
            prefix: prefix.to_string(),
            counters: Arc::new(Counters::default()),
        })
    }

    /// The Redis key used for `key`.
    pub fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// Look a key up; an error (e.g. Redis down) is counted as a miss and returned.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, CacheError> {
        let mut conn = self.conn.clone();
        let got: Result<Option<Vec<u8>>, _> = redis::cmd("GET")
            .arg(self.redis_key(key))
            .query_async(&mut conn)
            .await;
        match got {
            Ok(Some(v)) => {
                self.counters.hit();
                Ok(Some(Bytes::from(v)))
            }
            Ok(None) => {
                self.counters.miss();
                Ok(None)
            }
            Err(source) => {
                self.counters.miss();
                self.counters.error();
                Err(CacheError::Redis { op: "get", source })
            }
        }
    }

    /// Store a value for `ttl` (millisecond precision, at least 1 ms; a zero TTL stores nothing).
    pub async fn put(&self, key: &CacheKey, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        if ttl.is_zero() {
            return Ok(());
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn.clone();
        let done: Result<(), _> = redis::cmd("SET")
            .arg(self.redis_key(key))
            .arg(value.as_ref())
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await;
        match done {
            Ok(()) => {
                self.counters.insert();
                Ok(())
            }
            Err(source) => {
                self.counters.error();
                Err(CacheError::Redis { op: "put", source })
            }
        }
    }

    /// Counter snapshot.
    pub fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(n: u64) -> CacheKey {
        CacheKey::of(&json!({ "n": n }))
    }

    #[tokio::test]
    async fn memory_put_get_and_stats() {
        let cache = MemoryCache::new(1 << 20);
        assert_eq!(cache.get(&key(1)).await, None);
        cache
            .put(
                &key(1),
                Bytes::from_static(b"hello"),
                Duration::from_secs(60),
            )
            .await;
        assert_eq!(cache.get(&key(1)).await, Some(Bytes::from_static(b"hello")));
        assert_eq!(cache.get(&key(2)).await, None);
        cache
            .put(
                &key(1),
                Bytes::from_static(b"again"),
                Duration::from_secs(60),
            )
            .await;
        assert_eq!(cache.get(&key(1)).await, Some(Bytes::from_static(b"again")));
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 2,
                misses: 2,
                inserts: 2,
                errors: 0
            }
        );
    }

    #[tokio::test]
    async fn memory_entries_expire() {
        let cache = ExactCache::Memory(MemoryCache::new(1 << 20));
        cache
            .put(
                &key(1),
                Bytes::from_static(b"short"),
                Duration::from_millis(50),
            )
            .await
            .unwrap();
        cache
            .put(
                &key(2),
                Bytes::from_static(b"long"),
                Duration::from_secs(600),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(cache.get(&key(1)).await.unwrap(), None);
        assert_eq!(
            cache.get(&key(2)).await.unwrap(),
            Some(Bytes::from_static(b"long"))
        );
    }

    #[tokio::test]
    async fn memory_is_bounded_by_bytes() {
        let cache = MemoryCache::new(10_000);
        let value = Bytes::from(vec![7u8; 1000]);
        for n in 0..100 {
            cache
                .put(&key(n), value.clone(), Duration::from_secs(60))
                .await;
        }
        let size = cache.weighted_size().await;
        assert!(size <= 10_000, "weighted size {size} exceeds the budget");
        let mut present = 0;
        for n in 0..100 {
            if cache.get(&key(n)).await.is_some() {
                present += 1;
            }
        }
        assert!(present < 100, "all 100 KB of entries kept in a 10 KB cache");
        assert!(present >= 1);
    }

    #[tokio::test]
    async fn memory_zero_ttl_stores_nothing() {
        let cache = MemoryCache::new(1 << 20);
        cache
            .put(&key(1), Bytes::from_static(b"x"), Duration::ZERO)
            .await;
        assert_eq!(cache.get(&key(1)).await, None);
        assert_eq!(cache.stats().inserts, 0);
    }

    #[tokio::test]
    async fn from_config_builds_memory_backend() {
        let cfg = CacheConfig::from_toml_str("[cache]\nmax_bytes = 4096\n").unwrap();
        let cache = ExactCache::from_config(&cfg).await.unwrap();
        assert!(matches!(cache, ExactCache::Memory(_)));
        cache
            .put(&key(9), Bytes::from_static(b"v"), cfg.ttl)
            .await
            .unwrap();
        assert_eq!(
            cache.get(&key(9)).await.unwrap(),
            Some(Bytes::from_static(b"v"))
        );
        assert_eq!(cache.stats().hits, 1);
    }
}
