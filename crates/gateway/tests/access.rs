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
