//! Cache hot paths: `CacheKey::of` on a typical chat request, a memory-cache hit, and a semantic
//! lookup over 10,000 entries of 384 dimensions (HNSW) against a brute-force scan of the same
//! vectors in the same process (the ratio of the two is the point of the HNSW index).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use promptops_cache::{CacheKey, MemoryCache, SemanticCache, SemanticConfig};
use serde_json::json;

const DIMS: usize = 384;
const ENTRIES: usize = 10_000;

fn chat_request() -> serde_json::Value {
    json!({
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 512,
        "messages": [
            {"role": "system", "content": "You are a concise assistant that answers questions about the promptops gateway."},
            {"role": "user", "content": "How do I configure a Redis-backed response cache with a one hour TTL?"},
            {"role": "assistant", "content": "Add a [cache] section with backend = \"redis\", redis_url and ttl_seconds = 3600."},
            {"role": "user", "content": "And the semantic cache threshold?"}
        ],
        "tools": [{"type": "function", "function": {"name": "lookup_docs", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]
    })
}

fn unit(rng: &mut fastrand::Rng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMS).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// The same eight-lane dot product the cache uses, so the comparison is about the index only.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum()
}

fn brute_force(stored: &[Vec<f32>], query: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::MIN);
    for (i, v) in stored.iter().enumerate() {
        let s = dot(v, query);
        if s > best.1 {
            best = (i, s);
        }
    }
    best
}

fn benches(c: &mut Criterion) {
    let request = chat_request();
    c.bench_function("cache_key_of_chat_request", |b| {
        b.iter(|| CacheKey::of(black_box(&request)))
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let memory = MemoryCache::new(64 << 20);
    let key = CacheKey::of(&request);
    rt.block_on(memory.put(
        &key,
        Bytes::from(vec![b'x'; 2048]),
        Duration::from_secs(3600),
    ));
    c.bench_function("memory_get_hit_2kb", |b| {
        b.iter(|| rt.block_on(memory.get(black_box(&key))).unwrap())
    });

    let mut rng = fastrand::Rng::with_seed(42);
    let uniform: Vec<Vec<f32>> = (0..ENTRIES).map(|_| unit(&mut rng)).collect();
    semantic_group(c, "semantic_lookup_10k_384d_uniform", &uniform, &mut rng);
    // Embeddings of real prompts are clustered by topic: 200 centres, each point a centre plus
    // noise (cosine about 0.7 to its centre).
    let centres: Vec<Vec<f32>> = (0..200).map(|_| unit(&mut rng)).collect();
    let clustered: Vec<Vec<f32>> = (0..ENTRIES)
        .map(|i| {
            let noise = unit(&mut rng);
            let v: Vec<f32> = centres[i % centres.len()]
                .iter()
                .zip(&noise)
                .map(|(c, n)| c + n)
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect();
    semantic_group(
        c,
        "semantic_lookup_10k_384d_clustered",
        &clustered,
        &mut rng,
    );
}

/// HNSW lookup against a brute-force scan over the same stored vectors; queries are small
/// perturbations of stored vectors (they should hit).
fn semantic_group(c: &mut Criterion, name: &str, stored: &[Vec<f32>], rng: &mut fastrand::Rng) {
    let semantic = SemanticCache::new(&SemanticConfig {
        threshold: 0.9,
        max_entries: ENTRIES,
        ttl: Duration::from_secs(3600),
        embedding_model: promptops_cache::DEFAULT_EMBEDDING_MODEL.to_owned(),
    });
    for (i, v) in stored.iter().enumerate() {
        semantic
            .insert("scope", v.clone(), Bytes::from(i.to_string()))
            .unwrap();
    }
    let queries: Vec<Vec<f32>> = (0..64)
        .map(|i| {
            stored[i * 97]
                .iter()
                .map(|x| x + (rng.f32() - 0.5) * 0.002)
                .collect()
        })
        .collect();
    let hits = queries
        .iter()
        .filter(|q| semantic.lookup("scope", q).is_some())
        .count();
    assert_eq!(
        hits,
        queries.len(),
        "{name}: every perturbed query should hit"
    );
    let mut group = c.benchmark_group(name);
    let mut qi = 0;
    group.bench_function("hnsw", |b| {
        b.iter(|| {
            qi = (qi + 1) % queries.len();
            semantic.lookup("scope", black_box(&queries[qi]))
        })
    });
    group.bench_function("brute_force_reference", |b| {
        b.iter(|| {
            qi = (qi + 1) % queries.len();
            brute_force(stored, black_box(&queries[qi]))
        })
    });
    group.finish();
}

criterion_group!(cache, benches);
criterion_main!(cache);
