//! Hot-path benchmarks: route resolution through the in-memory router, the routing hash
//! alone, metric recording, and flushing a metrics batch to SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promptops_registry::metrics::{MetricsRecorder, Outcome};
use promptops_registry::routing::{Deployment, PromptRoutes, Router, RoutingTable, bucket};
use promptops_registry::store::{SqliteStore, Store};
use promptops_registry::version::{PromptContent, PromptVersion, VersionStatus};
use semver::Version;

fn version(name: &str, patch: u64) -> Arc<PromptVersion> {
    let content = PromptContent::system_user(Some("Be brief.".into()), "Hi {{ who }}".into());
    Arc::new(PromptVersion {
        name: name.to_owned(),
        version: Version::new(1, 0, patch),
        content_hash: content.content_hash().unwrap(),
        content,
        status: VersionStatus::Production,
        author: "bench".into(),
        message: None,
        created_at_ms: 0,
    })
}

/// 200 prompts, each with a stable version and a 5% canary.
fn table() -> RoutingTable {
    let mut prompts = HashMap::new();
    for i in 0..200 {
        let name = format!("prompt-{i}");
        let (stable, candidate) = (version(&name, 0), version(&name, 1));
        let deployment = Deployment {
            prompt: name.clone(),
            stable: stable.version.clone(),
            candidate: Some(candidate.version.clone()),
            candidate_fraction: 0.05,
        };
        let versions = HashMap::from([
            (stable.version.clone(), Arc::clone(&stable)),
            (candidate.version.clone(), Arc::clone(&candidate)),
        ]);
        prompts.insert(
            name,
            PromptRoutes {
                deployment: Some(deployment),
                latest: candidate,
                versions,
            },
        );
    }
    RoutingTable {
        revision: 1,
        prompts,
    }
}

fn routing(c: &mut Criterion) {
    let router = Router::new(table());
    let ids: Vec<String> = (0..4096).map(|i| format!("req-{i:08}")).collect();
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("router_resolve", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(router.resolve(black_box("prompt-42"), black_box(&ids[i])))
        })
    });
    group.bench_function("bucket_hash_only", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(bucket(black_box("prompt-42"), black_box(&ids[i])))
        })
    });
    group.finish();
}

fn metrics(c: &mut Criterion) {
    let recorder = MetricsRecorder::new();
    let v = Version::new(1, 0, 0);
    let outcome = Outcome {
        success: true,
        parse_error: false,
        validation_error: false,
        latency_ms: 123.0,
        input_tokens: 500,
        output_tokens: 80,
        cost: 0.0012,
    };
    let mut group = c.benchmark_group("metrics");
    group.throughput(Throughput::Elements(1));
    group.bench_function("recorder_record", |b| {
        b.iter(|| recorder.record(black_box("prompt-42"), black_box(&v), black_box(&outcome)))
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = runtime.block_on(SqliteStore::open(&url)).unwrap();
    group.throughput(Throughput::Elements(1000));
    group.sample_size(20);
    group.bench_function("flush_1000_outcomes_to_sqlite", |b| {
        b.iter(|| {
            for i in 0..1000 {
                let o = Outcome {
                    latency_ms: 50.0 + f64::from(i % 200),
                    ..outcome.clone()
                };
                recorder.record("prompt-42", &v, &o).unwrap();
            }
            runtime
                .block_on(store.add_metrics(&recorder.take()))
                .unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, routing, metrics);
criterion_main!(benches);
