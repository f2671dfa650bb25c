#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Embeddings per second of the local all-MiniLM-L6-v2 embedder: one text per call and batches
//! of 32, on short sentences and on texts long enough to hit the 256 word-piece limit.
//!
//! Run: `cargo bench -p promptops-local --bench embed` (needs `promptops models pull all-minilm-l6-v2`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promptops_local::embed::Embedder;
use promptops_local::models::{EMBEDDING_MODEL, ModelCache};

/// Typical retrieval-sized inputs: 8-20 word pieces each.
fn short_texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "Request {i}: summarise the customer's complaint about invoice number {}.",
                i * 37
            )
        })
        .collect()
}

/// Paragraphs that are truncated at 256 word pieces.
fn long_texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            (0..30)
                .map(|j| {
                    format!("Paragraph {i} sentence {j} describes the prompt pipeline in detail.")
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = ModelCache::from_env()
        .unwrap()
        .require(EMBEDDING_MODEL)
        .unwrap_or_else(|err| panic!("{err}"));
    let embedder = Embedder::load(&dir).unwrap();

    let mut group = c.benchmark_group("embed");
    group.sample_size(10);
    for (name, texts) in [("short", short_texts(32)), ("long256", long_texts(32))] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}/single"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % texts.len();
                embedder.embed(&texts[i]).unwrap()
            })
        });
        group.throughput(Throughput::Elements(texts.len() as u64));
        group.bench_function(format!("{name}/batch32"), |b| {
            b.iter(|| embedder.embed_batch(&texts).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
