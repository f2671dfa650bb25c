#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Scan throughput on a mix of prompts: plain chat, code, non-ASCII text, documents and attacks.
//! `guard/scan_mixed` is the full `Guard::scan` (injection, PII, secrets: what `promptops guard
//! scan` runs); `guard/injection_scan_mixed` is injection detection alone; and
//! `guard/reference_rule_pass` is the reference figures are quoted against: one pass of the
//! injection rule `RegexSet` over each lower-cased text, the cost of a plain pattern scanner.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promptops_guard::rules::rule_set;
use promptops_guard::{Guard, InjectionDetector};
use std::hint::black_box;

#[path = "common/corpus.rs"]
mod corpus;
use corpus::mixed_corpus;

fn scan_throughput(c: &mut Criterion) {
    let corpus = mixed_corpus(256 * 1024);
    let bytes: usize = corpus.iter().map(String::len).sum();
    let detector = InjectionDetector::shipped().unwrap();
    let guard = Guard::new().unwrap();
    let set = rule_set().unwrap();
    let mut group = c.benchmark_group("guard");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(20);
    group.bench_function("injection_scan_mixed", |b| {
        b.iter(|| {
            for text in &corpus {
                black_box(detector.scan(black_box(text)));
            }
        })
    });
    group.bench_function("scan_mixed", |b| {
        b.iter(|| {
            for text in &corpus {
                black_box(guard.scan(black_box(text)));
            }
        })
    });
    group.bench_function("reference_rule_pass", |b| {
        b.iter(|| {
            for text in &corpus {
                black_box(set.matches(&black_box(text).to_lowercase()));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, scan_throughput);
criterion_main!(benches);
