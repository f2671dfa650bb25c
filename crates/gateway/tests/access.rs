//! Keys and limits (crates/access) wired into the gateway: bearer auth, admin-only routes,
//! per-key model allow lists, 429 with Retry-After from the limiter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::{error_of, start};
use promptops_access::sha256_hex;
use serde_json::json;

fn keys() -> String {
    format!(
        r#"
[[keys]]
name = "user"
key_sha256 = "{user}"
role = "user"
models = ["up/*"]
requests_per_minute = 2

[[keys]]
name = "boss"
key_sha256 = "{admin}"
role = "admin"
"#,
        user = sha256_hex("po-user-secret"),
        admin = sha256_hex("po-admin-secret"),
    )
}

#[tokio::test]
async fn bearer_keys_models_and_rate_limits() {
    let gw = start(&keys(), true).await;
    let body = json!({"model": "up/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]});
    let missing = error_of(gw.post("/v1/chat/completions", body.clone()).await, 401).await;
    assert_eq!(missing["code"], "invalid_api_key");
    let wrong = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("po-nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    error_of(wrong, 401).await;
    // Health and metrics stay open.
    assert_eq!(gw.get("/healthz").await.status(), 200);

    let as_user = |body: serde_json::Value| {
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("po-user-secret")
            .json(&body)
            .send()
    };
    let other_model = json!({"model": "fallback", "messages": [{"role": "user", "content": "x"}]});
    let denied = error_of(as_user(other_model).await.unwrap(), 403).await;
    assert_eq!(denied["code"], "model_not_allowed");
    assert_eq!(denied["param"], "model");
    // Two requests per minute; the refused model above consumed none.
    assert_eq!(as_user(body.clone()).await.unwrap().status(), 200);
    assert_eq!(as_user(body.clone()).await.unwrap().status(), 200);
    let limited = as_user(body.clone()).await.unwrap();
    assert!(limited.headers().get("retry-after").is_some());
    let error = error_of(limited, 429).await;
    assert_eq!(error["code"], "rate_limit_exceeded");

    // Admin routes need an admin key.
    let forbidden = gw
        .client
        .get(gw.url("/admin/v1/prompts"))
        .bearer_auth("po-user-secret")
        .send()
        .await
        .unwrap();
    error_of(forbidden, 403).await;
    let admin = gw
        .client
        .get(gw.url("/admin/v1/prompts"))
        .bearer_auth("po-admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    let metrics = gw.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("promptops_rate_limit_rejections_total{name=\"rate_limit_exceeded\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn non_loopback_bind_needs_keys_or_an_explicit_opt_out() {
    let public: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let loopback: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
    assert!(promptops_gateway::check_bind(public, false, false).is_err());
    assert!(promptops_gateway::check_bind(public, false, true).is_ok());
    assert!(promptops_gateway::check_bind(public, true, false).is_ok());
    assert!(promptops_gateway::check_bind(loopback, false, false).is_ok());
}

/// Two gateways (replicas) with `[limits] backend = "redis"` and `[cache] backend = "redis"`
/// against the real Redis: a key's requests per minute are counted across both, and an answer
/// cached by one is served by the other without its upstream.
#[tokio::test]
async fn redis_limits_and_cache_are_shared_between_replicas() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let prefix = format!(
        "promptops:test:{}:{}:",
        std::process::id(),
        nanos.as_nanos()
    );
    let config = format!(
        r#"
[[keys]]
name = "shared"
key_sha256 = "{key}"
role = "user"
requests_per_minute = 3

[limits]
backend = "redis"
redis_url = "redis://127.0.0.1:6379"
redis_prefix = "{prefix}limits:"

[cache]
backend = "redis"
redis_url = "redis://127.0.0.1:6379"
redis_prefix = "{prefix}cache:"
ttl_seconds = 60
"#,
        key = sha256_hex("po-shared-secret"),
    );
    // Redis windows are wall-clock minutes: start well inside one so the test never straddles
    // two (which would legitimately reset the count).
    let into_minute = nanos.as_secs() % 60;
    if into_minute >= 50 {
        tokio::time::sleep(std::time::Duration::from_secs(61 - into_minute)).await;
    }
    let a = start(&config, false).await;
    let b = start(&config, false).await;
    let send = |gw: &common::Gateway, body: serde_json::Value| {
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("po-shared-secret")
            .json(&body)
            .send()
    };
    let question = json!({
        "model": "up/gpt-4o-mini",
        "messages": [{"role": "user", "content": "Shared question?"}],
        "temperature": 0,
    });
    let first = send(&a, question.clone()).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-promptops-cache"], "miss");
    let first: serde_json::Value = first.json().await.unwrap();
    // A writes its answer in the background: wait until it is in Redis, then B must find it.
    let redis = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let pattern = format!("{prefix}cache:*");
    for attempt in 0.. {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            break;
        }
        assert!(attempt < 250, "A's answer never reached Redis");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let response = send(&b, question.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-promptops-cache"], "hit");
    let from_b: serde_json::Value = response.json().await.unwrap();
    assert_eq!(from_b["choices"], first["choices"]);
    assert_eq!(b.upstream.hits(), 0, "B answered from the shared cache");
    // Two requests spent (one on A, one on B); the third of the minute is allowed, the fourth
    // is refused on either replica.
    let other = json!({"model": "up/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(send(&a, other.clone()).await.unwrap().status(), 200);
    let limited = error_of(send(&b, other.clone()).await.unwrap(), 429).await;
    assert_eq!(limited["code"], "rate_limit_exceeded");
    let limited = error_of(send(&a, other).await.unwrap(), 429).await;
    assert_eq!(limited["code"], "rate_limit_exceeded");
}

/// `user_requests_per_minute` limits each end user of a key (the request's `user` field)
/// separately, under the key's own limit.
#[tokio::test]
async fn end_users_of_a_key_are_limited_separately() {
    let config = format!(
        r#"
[[keys]]
name = "app"
key_sha256 = "{key}"
role = "user"
requests_per_minute = 100
user_requests_per_minute = 2
"#,
        key = sha256_hex("po-app-secret"),
    );
    let gw = start(&config, false).await;
    let send = |user: Option<&str>| {
        let mut body =
            json!({"model": "up/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]});
        if let Some(user) = user {
            body["user"] = json!(user);
        }
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("po-app-secret")
            .json(&body)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(send(Some("alice@example.com")).await.unwrap().status(), 200);
    }
    let limited = send(Some("alice@example.com")).await.unwrap();
    assert!(limited.headers().get("retry-after").is_some());
    let error = error_of(limited, 429).await;
    assert_eq!(error["code"], "user_rate_limit_exceeded");
    assert!(
        !error["message"].as_str().unwrap().contains("alice"),
        "the user id is not echoed: {error}"
    );
    // Another user of the same key, and requests without a user, have their own buckets.
    assert_eq!(send(Some("bob@example.com")).await.unwrap().status(), 200);
    assert_eq!(send(None).await.unwrap().status(), 200);
    assert_eq!(send(None).await.unwrap().status(), 200);
    error_of(send(None).await.unwrap(), 429).await;
}

#[tokio::test]
async fn a_guard_role_limits_each_end_user_of_its_keys() {
    let config = format!(
        r#"
[[keys]]
name = "shop"
key_sha256 = "{key}"
role = "user"
guard_role = "customer"

[guard]
enabled = true
[guard.output]
enabled = false
[guard.rbac.roles.customer]
rate_limit_per_minute = 2
"#,
        key = sha256_hex("po-shop-secret"),
    );
    let gw = start(&config, false).await;
    let send = |user: &str| {
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("po-shop-secret")
            .json(&json!({"model": "up/gpt-4o-mini", "user": user,
                "messages": [{"role": "user", "content": "x"}]}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(send("carol").await.unwrap().status(), 200);
    }
    let error = error_of(send("carol").await.unwrap(), 429).await;
    assert_eq!(error["code"], "user_rate_limit_exceeded");
    assert_eq!(send("dave").await.unwrap().status(), 200);
}
