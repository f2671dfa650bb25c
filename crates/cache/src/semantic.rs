//! Semantic cache: approximate nearest-neighbour lookup over L2-normalised embeddings.
//!
//! Entries live in per-scope HNSW graphs (`hnsw_rs`, pure Rust, incremental insertion). The
//! scope is an opaque string the caller derives from everything that must match exactly (model,
//! system prompt, sampling parameters), so a lookup can only ever return a response produced
//! under the same conditions. Vectors are L2-normalised on the way in, so cosine similarity is a
//! dot product and the graph uses `1 - dot` as its distance.
//!
//! Eviction: HNSW graphs do not support removal, so removal is by *tombstone*: the entry leaves
//! the live table (searches skip it through a filter) while its node stays in the graph. When a
//! scope's tombstones outnumber its live entries (and there are at least [`REBUILD_MIN`]), the
//! scope's graph is rebuilt from the live entries, which keeps search quality and memory bounded
//! at an amortised O(log n) per insertion. A scope whose last entry goes is dropped whole.
//!
//! All entries share one TTL, so insertion order is expiry order: one FIFO queue serves both TTL
//! expiry and the `max_entries` bound (the oldest entry is evicted first). Expired entries are
//! invisible to lookups at once and are purged on the next insertion.
//!
//! A lookup first checks an exact-duplicate table (hash of the normalised vector's bits), so a
//! vector identical to a stored one always hits regardless of HNSW's approximation; otherwise it
//! asks the graph for the `CANDIDATES` (8) nearest nodes and takes the nearest live,
//! unexpired one; only when all of them are dead does it fall back to a filtered search (slow in
//! `hnsw_rs`, which then visits most of the graph). Rebuilds keep dead nodes to at most half.
//!
//! Concurrency: lookups take a read lock and run in parallel; insertions take the write lock.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;

use crate::config::SemanticConfig;
use crate::stats::Counters;
use crate::{CacheError, CacheStats};

/// Minimum number of tombstones in a scope before its graph is rebuilt.
pub const REBUILD_MIN: usize = 64;
/// Neighbours per node in the HNSW graph.
const MAX_CONNECTIONS: usize = 16;
/// HNSW layers.
const MAX_LAYERS: usize = 16;
/// Candidate list size while building.
const EF_CONSTRUCTION: usize = 64;
/// Candidate list size while searching.
const EF_SEARCH: usize = 24;
/// Nearest candidates fetched per lookup, so tombstoned or expired nodes can be skipped.
const CANDIDATES: usize = 8;
/// Capacity hint per scope graph (graphs grow past it).
const CAPACITY_HINT: usize = 1024;

/// A semantic cache hit.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticHit {
    /// The cached response.
    pub value: Bytes,
    /// Cosine similarity between the query and the cached entry's vector.
    pub similarity: f32,
}

/// `1 - dot(a, b)` for unit vectors, clamped at 0 against rounding (hnsw_rs's own `DistDot`
/// asserts on rounding error, which would panic on a query identical to a stored vector).
#[derive(Debug, Clone, Copy, Default)]
struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// Dot product in eight independent lanes, so the compiler can vectorise it (a single running
/// sum is a serial chain of float additions it may not reorder).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    lanes.iter().sum::<f32>() + tail
}

struct Entry {
    vector: Vec<f32>,
    value: Bytes,
    expires_at: Instant,
}

struct Partition {
    dims: usize,
    graph: Hnsw<'static, f32, UnitCosine>,
    live: HashMap<usize, Entry>,
    /// Hash of a normalised vector's bits -> id of the newest live entry with that vector.
    exact: HashMap<u64, usize>,
    tombstones: usize,
}

/// Hash of a normalised vector's exact bits (for the exact-duplicate fast path).
fn bits_hash(v: &[f32]) -> u64 {
    let mut h = DefaultHasher::new();
    for x in v {
        h.write_u32(x.to_bits());
    }
    h.finish()
}

fn new_graph() -> Hnsw<'static, f32, UnitCosine> {
    Hnsw::new(
        MAX_CONNECTIONS,
        CAPACITY_HINT,
        MAX_LAYERS,
        EF_CONSTRUCTION,
        UnitCosine,
    )
}

impl Partition {
    fn new(dims: usize) -> Partition {
        Partition {
            dims,
            graph: new_graph(),
            live: HashMap::new(),
            exact: HashMap::new(),
            tombstones: 0,
        }
    }

    fn rebuild(&mut self) {
        let graph = new_graph();
        for (id, entry) in &self.live {
            graph.insert((&entry.vector, *id));
        }
        self.graph = graph;
        self.tombstones = 0;
    }
}

#[derive(Default)]
struct Inner {
    scopes: HashMap<String, Partition>,
    /// (expiry, scope, id), oldest first.
    order: VecDeque<(Instant, String, usize)>,
    next_id: usize,
}

impl Inner {
    fn live_len(&self) -> usize {
        self.order.len()
    }

    /// Drop the oldest entry; returns false when there is none.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, scope, id)) = self.order.pop_front() else {
            return false;
        };
        let mut drop_scope = false;
        if let Some(p) = self.scopes.get_mut(&scope) {
            if let Some(entry) = p.live.remove(&id) {
                p.tombstones += 1;
                let h = bits_hash(&entry.vector);
                if p.exact.get(&h) == Some(&id) {
                    p.exact.remove(&h);
                }
            }
            if p.live.is_empty() {
                drop_scope = true;
            } else if p.tombstones >= REBUILD_MIN && p.tombstones > p.live.len() {
                p.rebuild();
            }
        }
        if drop_scope {
            self.scopes.remove(&scope);
        }
        true
    }
}

/// Thread-safe, scope-partitioned semantic cache (see the module docs for its eviction policy).
pub struct SemanticCache {
    threshold: f32,
    max_entries: usize,
    ttl: Duration,
    inner: RwLock<Inner>,
    counters: Counters,
}

impl std::fmt::Debug for SemanticCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticCache")
            .field("threshold", &self.threshold)
            .field("max_entries", &self.max_entries)
            .field("ttl", &self.ttl)
            .field("len", &self.len())
            .finish()
    }
}

fn normalise(scope: &str, v: &[f32]) -> Result<Vec<f32>, CacheError> {
    let invalid = |message: &str| CacheError::InvalidVector {
        scope: scope.to_string(),
        message: message.to_string(),
    };
    if v.is_empty() {
        return Err(invalid("vector is empty"));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(invalid("vector has a NaN or infinite component"));
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !(norm > 0.0 && norm.is_finite()) {
        return Err(invalid("vector has zero (or overflowing) length"));
    }
    Ok(v.iter().map(|x| x / norm).collect())
}

impl SemanticCache {
    /// An empty cache with the given threshold, entry bound and TTL.
    pub fn new(config: &SemanticConfig) -> SemanticCache {
        SemanticCache {
            threshold: config.threshold,
            max_entries: config.max_entries.max(1),
            ttl: config.ttl,
            inner: RwLock::new(Inner::default()),
            counters: Counters::default(),
        }
    }

    /// The best entry in `scope` whose cosine similarity to `vector` is at least the threshold.
    /// A vector that cannot be normalised, or whose dimension differs from the scope's, misses.
    pub fn lookup(&self, scope: &str, vector: &[f32]) -> Option<SemanticHit> {
        let hit = self.lookup_inner(scope, vector);
        if hit.is_some() {
            self.counters.hit();
        } else {
            self.counters.miss();
        }
        hit
    }

    fn lookup_inner(&self, scope: &str, vector: &[f32]) -> Option<SemanticHit> {
        let query = normalise(scope, vector).ok()?;
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let partition = inner.scopes.get(scope)?;
        if partition.dims != query.len() {
            return None;
        }
        let now = Instant::now();
        let alive = |id: &usize| partition.live.get(id).is_some_and(|e| e.expires_at > now);
        // Exact duplicates always hit, whatever the approximate search would find.
        if let Some(id) = partition.exact.get(&bits_hash(&query))
            && alive(id)
            && let Some(entry) = partition.live.get(id)
            && entry.vector == query
        {
            let similarity = dot(&query, &entry.vector).min(1.0);
            if similarity >= self.threshold {
                return Some(SemanticHit {
                    value: entry.value.clone(),
                    similarity,
                });
            }
        }
        // Unfiltered search first: hnsw_rs's filtered search gives up its early exit and walks
        // most of the graph, so it is only the fallback when every candidate is dead.
        let found = partition.graph.search(&query, CANDIDATES, EF_SEARCH);
        let best = match found.iter().find(|n| alive(&n.d_id)) {
            Some(n) => n.d_id,
            None => {
                let filtered = partition
                    .graph
                    .search_filter(&query, 1, EF_SEARCH, Some(&alive));
                filtered.first()?.d_id
            }
        };
        let entry = partition.live.get(&best)?;
        let similarity = dot(&query, &entry.vector).min(1.0);
        (similarity >= self.threshold).then(|| SemanticHit {
            value: entry.value.clone(),
            similarity,
        })
    }

    /// Insert `value` under `vector` in `scope`, evicting expired and (beyond `max_entries`)
    /// oldest entries first. Fails on an empty, zero, non-finite or wrong-dimension vector.
    pub fn insert(&self, scope: &str, vector: Vec<f32>, value: Bytes) -> Result<(), CacheError> {
        let result = self.insert_inner(scope, &vector, value);
        match &result {
            Ok(()) => self.counters.insert(),
            Err(_) => self.counters.error(),
        }
        result
    }

    fn insert_inner(&self, scope: &str, vector: &[f32], value: Bytes) -> Result<(), CacheError> {
        let vector = normalise(scope, vector)?;
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = inner.scopes.get(scope)
            && p.dims != vector.len()
        {
            return Err(CacheError::InvalidVector {
                scope: scope.to_string(),
                message: format!(
                    "dimension {} differs from the scope's {}",
                    vector.len(),
                    p.dims
                ),
            });
        }
        let now = Instant::now();
        while inner.order.front().is_some_and(|(exp, _, _)| *exp <= now) {
            inner.evict_oldest();
        }
        while inner.live_len() >= self.max_entries {
            if !inner.evict_oldest() {
                break;
            }
        }
        let id = inner.next_id;
        inner.next_id = inner.next_id.wrapping_add(1);
        let expires_at = now + self.ttl;
        let dims = vector.len();
        let partition = inner
            .scopes
            .entry(scope.to_string())
            .or_insert_with(|| Partition::new(dims));
        partition.graph.insert((&vector, id));
        partition.exact.insert(bits_hash(&vector), id);
        partition.live.insert(
            id,
            Entry {
                vector,
                value,
                expires_at,
            },
        );
        inner.order.push_back((expires_at, scope.to_string(), id));
        Ok(())
    }

    /// Number of entries held (including expired ones not yet purged).
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .live_len()
    }

    /// True when the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The similarity threshold for a hit.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Counter snapshot (`errors` counts rejected insertions).
    pub fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }

    /// Number of tombstoned graph nodes in `scope` (for tests and diagnostics).
    pub fn tombstones(&self, scope: &str) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .scopes
            .get(scope)
            .map_or(0, |p| p.tombstones)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(threshold: f32, max_entries: usize, ttl: Duration) -> SemanticConfig {
        SemanticConfig {
            threshold,
            max_entries,
            ttl,
            embedding_model: crate::config::DEFAULT_EMBEDDING_MODEL.to_owned(),
        }
    }

    fn random_vec(rng: &mut fastrand::Rng, dims: usize) -> Vec<f32> {
        (0..dims).map(|_| rng.f32() * 2.0 - 1.0).collect()
    }

    fn perturb(rng: &mut fastrand::Rng, v: &[f32], eps: f32) -> Vec<f32> {
        v.iter()
            .map(|x| x + (rng.f32() * 2.0 - 1.0) * eps)
            .collect()
    }

    #[test]
    fn near_hits_far_misses_other_scope_misses() {
        let mut rng = fastrand::Rng::with_seed(7);
        let cache = SemanticCache::new(&config(0.95, 1000, Duration::from_secs(60)));
        let mut stored = Vec::new();
        for i in 0..200u32 {
            let v = random_vec(&mut rng, 32);
            cache
                .insert("s", v.clone(), Bytes::from(i.to_string()))
                .unwrap();
            stored.push(v);
        }
        for (i, v) in stored.iter().enumerate().step_by(10) {
            let hit = cache.lookup("s", &perturb(&mut rng, v, 0.01)).unwrap();
            assert_eq!(hit.value, Bytes::from(i.to_string()));
            assert!(hit.similarity >= 0.95 && hit.similarity <= 1.0);
            // Scaling does not matter (vectors are normalised).
            let scaled: Vec<f32> = v.iter().map(|x| x * 3.0).collect();
            assert_eq!(
                cache.lookup("s", &scaled).unwrap().value,
                Bytes::from(i.to_string())
            );
            assert_eq!(cache.lookup("other", v), None);
        }
        for _ in 0..20 {
            assert_eq!(cache.lookup("s", &random_vec(&mut rng, 32)), None);
        }
        let stats = cache.stats();
        assert_eq!(stats.inserts, 200);
        assert_eq!(stats.hits, 40);
        assert_eq!(stats.misses, 40);
    }

    #[test]
    fn threshold_is_respected() {
        // Unit vectors at a known angle: cos = 0.9.
        let a = vec![1.0f32, 0.0];
        let b = vec![0.9f32, (1.0f32 - 0.81).sqrt()];
        let strict = SemanticCache::new(&config(0.95, 10, Duration::from_secs(60)));
        strict
            .insert("s", a.clone(), Bytes::from_static(b"a"))
            .unwrap();
        assert_eq!(strict.lookup("s", &b), None);
        let loose = SemanticCache::new(&config(0.85, 10, Duration::from_secs(60)));
        loose.insert("s", a, Bytes::from_static(b"a")).unwrap();
        let hit = loose.lookup("s", &b).unwrap();
        assert!((hit.similarity - 0.9).abs() < 1e-4, "{}", hit.similarity);
    }

    #[test]
    fn entries_expire() {
        let cache = SemanticCache::new(&config(0.9, 10, Duration::from_millis(50)));
        cache
            .insert("s", vec![1.0, 2.0, 3.0], Bytes::from_static(b"x"))
            .unwrap();
        assert!(cache.lookup("s", &[1.0, 2.0, 3.0]).is_some());
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(cache.lookup("s", &[1.0, 2.0, 3.0]), None);
        // The next insertion purges the expired entry.
        cache
            .insert("t", vec![1.0, 0.0, 0.0], Bytes::from_static(b"y"))
            .unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn oldest_entries_are_evicted_and_graphs_rebuilt() {
        let mut rng = fastrand::Rng::with_seed(3);
        let cache = SemanticCache::new(&config(0.99, 50, Duration::from_secs(60)));
        let mut stored = Vec::new();
        for i in 0..400u32 {
            let v = random_vec(&mut rng, 16);
            cache
                .insert("s", v.clone(), Bytes::from(i.to_string()))
                .unwrap();
            stored.push(v);
            assert!(cache.len() <= 50);
            // Rebuilds keep tombstones bounded.
            assert!(cache.tombstones("s") <= REBUILD_MIN.max(cache.len()));
        }
        assert_eq!(cache.len(), 50);
        assert_eq!(cache.lookup("s", &stored[0]), None);
        for (i, v) in stored.iter().enumerate().skip(350) {
            assert_eq!(
                cache.lookup("s", v).unwrap().value,
                Bytes::from(i.to_string())
            );
        }
    }

    #[test]
    fn dead_nearest_candidates_fall_back_to_filtered_search() {
        let mut rng = fastrand::Rng::with_seed(11);
        let cache = SemanticCache::new(&config(0.9, 61, Duration::from_secs(60)));
        let v = random_vec(&mut rng, 16);
        // 60 near-copies of v, then a target further from v, then 60 unrelated vectors that
        // evict the copies (60 tombstones: below REBUILD_MIN, so no rebuild hides them).
        for _ in 0..60 {
            cache
                .insert(
                    "s",
                    perturb(&mut rng, &v, 0.001),
                    Bytes::from_static(b"copy"),
                )
                .unwrap();
        }
        let target = perturb(&mut rng, &v, 0.15);
        let expected = dot(
            &normalise("s", &v).unwrap(),
            &normalise("s", &target).unwrap(),
        );
        assert!(expected >= 0.9, "test setup: similarity {expected}");
        cache
            .insert("s", target, Bytes::from_static(b"target"))
            .unwrap();
        for _ in 0..60 {
            cache
                .insert("s", random_vec(&mut rng, 16), Bytes::from_static(b"other"))
                .unwrap();
        }
        assert_eq!(cache.tombstones("s"), 60);
        let hit = cache.lookup("s", &v).unwrap();
        assert_eq!(hit.value, Bytes::from_static(b"target"));
    }

    #[test]
    fn bad_vectors_are_rejected() {
        let cache = SemanticCache::new(&config(0.9, 10, Duration::from_secs(60)));
        cache.insert("s", vec![1.0, 0.0], Bytes::new()).unwrap();
        for bad in [
            vec![],
            vec![0.0, 0.0],
            vec![f32::NAN, 1.0],
            vec![1.0, 0.0, 0.0],
        ] {
            let err = cache.insert("s", bad.clone(), Bytes::new()).unwrap_err();
            assert!(err.to_string().contains("\"s\""), "{err}");
            assert_eq!(cache.lookup("s", &bad), None);
        }
        assert_eq!(cache.stats().errors, 4);
        // A different scope may use a different dimension.
        cache
            .insert("t", vec![1.0, 0.0, 0.0], Bytes::new())
            .unwrap();
    }

    #[test]
    fn concurrent_lookups_and_inserts() {
        let cache = std::sync::Arc::new(SemanticCache::new(&config(
            0.99,
            500,
            Duration::from_secs(60),
        )));
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t);
                    for i in 0..100u32 {
                        let v = random_vec(&mut rng, 24);
                        cache
                            .insert("s", v.clone(), Bytes::from(format!("{t}-{i}")))
                            .unwrap();
                        assert!(cache.lookup("s", &v).is_some());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(cache.len(), 400);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]
        #[test]
        fn exact_duplicate_always_hits(
            vectors in proptest::collection::vec(proptest::collection::vec(-1.0f32..1.0, 12), 1..60),
            pick in 0usize..1000,
        ) {
            let cache = SemanticCache::new(&config(0.999, 1000, Duration::from_secs(60)));
            let mut inserted = Vec::new();
            for v in &vectors {
                if cache.insert("scope", v.clone(), Bytes::new()).is_ok() {
                    inserted.push(v.clone());
                }
            }
            if !inserted.is_empty() {
                let v = &inserted[pick % inserted.len()];
                let hit = cache.lookup("scope", v);
                proptest::prop_assert!(hit.is_some());
                proptest::prop_assert!(hit.map(|h| h.similarity).unwrap_or(0.0) >= 0.999);
            }
        }
    }
}
