//! Redis limiter tests against the real Redis at 127.0.0.1:6379. Each test uses its own random
//! key prefix and deletes its keys afterwards; time comes from a `ManualClock`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use promptops_access::{
    AccessConfig, AccessError, Clock, Limiter, Limits, ManualClock, RedisLimiter,
};

const URL: &str = "redis://127.0.0.1:6379";
/// A clock reading exactly the start of a minute (a multiple of 60 000 ms), so window
/// arithmetic is predictable.
const START_MS: u64 = 1_800_000_000_000;

fn unique_prefix() -> String {
    format!(
        "promptops-test:limits:{}:{:016x}:",
        std::process::id(),
        fastrand::u64(..)
    )
}

async fn delete_prefix(prefix: &str) {
    let mut conn = redis::Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
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

fn rpm(n: u32) -> Limits {
    Limits {
        requests_per_minute: Some(n),
        ..Limits::default()
    }
}

#[tokio::test]
async fn two_instances_share_one_budget() {
    let prefix = unique_prefix();
    let clock = Arc::new(ManualClock::new(START_MS + 5_000));
    let a = RedisLimiter::connect(URL, &prefix, clock.clone())
        .await
        .unwrap();
    let b = RedisLimiter::connect(URL, &prefix, clock.clone())
        .await
        .unwrap();
    let mut allowed = 0;
    for i in 0..10 {
        let lim = if i % 2 == 0 { &a } else { &b };
        let d = lim.check_request("shared", &rpm(4)).await.unwrap();
        if d.allowed {
            allowed += 1;
            assert_eq!(d.remaining, Some(4 - allowed));
        } else {
            assert_eq!(d.remaining, Some(0));
            // Fixed window: retry at the start of the next minute.
            assert_eq!(d.retry_after, Some(Duration::from_secs(55)));
        }
    }
    assert_eq!(allowed, 4);
    // Another key has its own budget.
    assert!(b.check_request("other", &rpm(4)).await.unwrap().allowed);
    // The next window starts fresh for both instances.
    clock.advance_ms(55_000);
    assert!(a.check_request("shared", &rpm(4)).await.unwrap().allowed);
    assert!(b.check_request("shared", &rpm(4)).await.unwrap().allowed);
    delete_prefix(&prefix).await;
}

#[tokio::test]
async fn concurrent_requests_never_exceed_the_limit() {
    let prefix = unique_prefix();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(START_MS));
    let lim = RedisLimiter::connect(URL, &prefix, clock).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let lim = lim.clone();
            tokio::spawn(async move { lim.check_request("k", &rpm(7)).await.unwrap().allowed })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        if t.await.unwrap() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 7);
    delete_prefix(&prefix).await;
}

#[tokio::test]
async fn window_keys_expire() {
    let prefix = unique_prefix();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(START_MS + 59_000));
    let lim = RedisLimiter::connect(URL, &prefix, clock).await.unwrap();
    assert!(lim.check_request("k", &rpm(1)).await.unwrap().allowed);
    let mut conn = redis::Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{prefix}rpm:k:{}", (START_MS + 59_000) / 60_000);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    // One second left in the window plus one second of slack.
    assert!(pttl > 0 && pttl <= 2_000, "pttl {pttl}");
    delete_prefix(&prefix).await;
}

#[tokio::test]
async fn tokens_and_budget_are_shared() {
    let prefix = unique_prefix();
    let clock = Arc::new(ManualClock::new(START_MS));
    let cfg = AccessConfig::from_toml_str(&format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{URL}\"\nredis_prefix = \"{prefix}\"\n"
    ))
    .unwrap();
    let a = Limiter::from_config(&cfg.limits, clock.clone())
        .await
        .unwrap();
    let b = Limiter::from_config(&cfg.limits, clock.clone())
        .await
        .unwrap();
    assert!(matches!(a, Limiter::Redis(_)));
    let limits = Limits {
        tokens_per_minute: Some(1000),
        budget_usd: Some(1.0),
        ..Limits::default()
    };
    assert!(a.check_tokens("k", &limits, 900).await.unwrap().allowed);
    a.record_tokens("k", 900).await.unwrap();
    let d = b.check_tokens("k", &limits, 200).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.remaining, Some(100));
    assert_eq!(d.retry_after, Some(Duration::from_secs(60)));
    assert!(b.check_tokens("k", &limits, 100).await.unwrap().allowed);
    let d = b.check_tokens("k", &limits, 5000).await.unwrap();
    assert_eq!(d.retry_after, None);
    clock.advance_ms(60_000);
    assert!(b.check_tokens("k", &limits, 1000).await.unwrap().allowed);

    assert_eq!(a.budget_left("k", &limits).await.unwrap(), Some(1.0));
    a.record_spend("k", 0.4).await.unwrap();
    b.record_spend("k", 0.35).await.unwrap();
    let left = b.budget_left("k", &limits).await.unwrap().unwrap();
    assert!((left - 0.25).abs() < 1e-9, "{left}");
    assert!(matches!(
        a.record_spend("k", -1.0).await,
        Err(AccessError::InvalidAmount { .. })
    ));
    assert_eq!(a.budget_left("k", &Limits::default()).await.unwrap(), None);
    delete_prefix(&prefix).await;
}

#[tokio::test]
async fn unreachable_redis_is_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
    let err = RedisLimiter::connect(&format!("redis://127.0.0.1:{port}"), "p:", clock)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, AccessError::Redis { op: "connect", .. }),
        "{err}"
    );
}
