//! Access hot paths: in-memory `check_request` (allowed at steady state, and denied) and
//! `KeyStore::authenticate` over 100 configured keys (hit and miss).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use promptops_access::{AccessConfig, Clock, Limits, ManualClock, MemoryLimiter, sha256_hex};

fn benches(c: &mut Criterion) {
    let clock = Arc::new(ManualClock::new(0));
    let limiter = MemoryLimiter::new(clock.clone() as Arc<dyn Clock>);
    let limits = Limits {
        requests_per_minute: Some(1000),
        ..Limits::default()
    };
    // 1000 per minute, one request every 60 ms: always allowed, ~1000 entries in the window.
    c.bench_function("memory_check_request_allowed", |b| {
        b.iter(|| {
            clock.advance_ms(60);
            let d = limiter.check_request(black_box("key-42"), &limits);
            assert!(d.allowed);
            d
        })
    });
    let tight = Limits {
        requests_per_minute: Some(10),
        ..Limits::default()
    };
    for _ in 0..10 {
        limiter.check_request("denied", &tight);
    }
    c.bench_function("memory_check_request_denied", |b| {
        b.iter(|| limiter.check_request(black_box("denied"), &tight))
    });

    let mut toml = String::new();
    for i in 0..100 {
        toml.push_str(&format!(
            "[[keys]]\nname = \"k{i}\"\nkey_sha256 = \"{}\"\nrole = \"user\"\n",
            sha256_hex(&format!("po-secret-{i}"))
        ));
    }
    let store = AccessConfig::from_toml_str(&toml).unwrap().keys;
    c.bench_function("authenticate_hit_100_keys", |b| {
        b.iter(|| store.authenticate(black_box("po-secret-57")).unwrap())
    });
    c.bench_function("authenticate_miss_100_keys", |b| {
        b.iter(|| store.authenticate(black_box("po-wrong-secret")).is_err())
    });
}

criterion_group!(access, benches);
criterion_main!(access);
