//! Redis backend tests against the real Redis at 127.0.0.1:6379 (and a private, short-lived
//! `redis-server` for the outage test). Every test uses its own random key prefix and deletes
//! its keys afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use promptops_cache::{CacheConfig, CacheKey, ExactCache, RedisCache};
use serde_json::json;

const URL: &str = "redis://127.0.0.1:6379";

fn unique_prefix() -> String {
    format!(
        "promptops-test:cache:{}:{:016x}:",
        std::process::id(),
        fastrand::u64(..)
    )
}

async fn raw_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn delete_prefix(prefix: &str) {
    let mut conn = raw_conn(URL).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn put_get_roundtrip_under_prefix() {
    let prefix = unique_prefix();
    let cache = RedisCache::connect(URL, &prefix).await.unwrap();
    let key = CacheKey::of(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(cache.get(&key).await.unwrap(), None);
    cache
        .put(
            &key,
            Bytes::from_static(b"{\"ok\":true}"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key).await.unwrap(),
        Some(Bytes::from_static(b"{\"ok\":true}"))
    );

    // Stored under the prefix with a TTL.
    let mut conn = raw_conn(URL).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}{key}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 30_000, "pttl {pttl}");

    cache
        .put(&key, Bytes::from_static(b"second"), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key).await.unwrap(),
        Some(Bytes::from_static(b"second"))
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.inserts, stats.errors),
        (2, 1, 2, 0)
    );
    delete_prefix(&prefix).await;
}

#[tokio::test]
async fn binary_values_survive() {
    let prefix = unique_prefix();
    let cache = RedisCache::connect(URL, &prefix).await.unwrap();
    let key = CacheKey::of(&json!([1, 2, 3]));
    let value: Vec<u8> = (0..=255u8).collect();
    cache
        .put(&key, Bytes::from(value.clone()), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key).await.unwrap().unwrap().as_ref(),
        value.as_slice()
    );
    delete_prefix(&prefix).await;
}

#[tokio::test]
async fn entries_expire_after_ttl() {
    let prefix = unique_prefix();
    let cfg = CacheConfig::from_toml_str(&format!(
        "[cache]\nbackend = \"redis\"\nredis_url = \"{URL}\"\nredis_prefix = \"{prefix}\"\n"
    ))
    .unwrap();
    let cache = ExactCache::from_config(&cfg).await.unwrap();
    let key = CacheKey::of(&json!({"n": 1}));
    cache
        .put(&key, Bytes::from_static(b"v"), Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(cache.get(&key).await.unwrap(), None);
    delete_prefix(&prefix).await;
}

/// A private redis-server on a free port; killed (by its own PID) on drop.
struct PrivateRedis {
    child: std::process::Child,
    url: String,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("redis://127.0.0.1:{port}");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        PrivateRedis { child, url }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn outage_surfaces_as_an_unavailable_error() {
    let mut server = PrivateRedis::start().await;
    let cache = RedisCache::connect(&server.url, "p:").await.unwrap();
    let key = CacheKey::of(&json!({"n": 2}));
    cache
        .put(&key, Bytes::from_static(b"v"), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(cache.get(&key).await.unwrap().is_some());
    server.stop();
    let err = cache.get(&key).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("redis cache get failed"), "{err}");
    let err = cache
        .put(&key, Bytes::from_static(b"v"), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(err.is_unavailable());
    let stats = cache.stats();
    assert_eq!(stats.errors, 2);
    assert_eq!(stats.misses, 1);
}

#[tokio::test]
async fn connecting_to_nothing_fails_cleanly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = RedisCache::connect(&format!("redis://127.0.0.1:{port}"), "p:")
        .await
        .unwrap_err();
    assert!(err.is_unavailable());
    assert!(err.to_string().contains("connect"), "{err}");
}
