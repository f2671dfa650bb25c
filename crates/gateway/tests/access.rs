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
    // Both Redis backends answer a PING.
    assert_eq!(a.get("/readyz").await.status(), 200);
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

/// `[limits] max_messages` refuses a longer conversation before any upstream call.
#[tokio::test]
async fn too_many_messages_are_refused_naming_the_param() {
    let gw = start("[limits]\nmax_messages = 2\n", false).await;
    let turn = json!({"role": "user", "content": "x"});
    let two = json!({"model": "up/gpt-4o-mini", "messages": [turn.clone(), turn.clone()]});
    assert_eq!(gw.post("/v1/chat/completions", two).await.status(), 200);
    let three = json!({"model": "up/gpt-4o-mini", "messages": [turn.clone(), turn.clone(), turn]});
    let error = error_of(gw.post("/v1/chat/completions", three).await, 400).await;
    assert_eq!(error["param"], "messages");
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(
        gw.upstream.hits(),
        1,
        "the refused request never went upstream"
    );
}

/// Waits until the key's charges (written in the background after a call) make `done` true.
async fn until_charged(
    gw: &common::Gateway,
    what: &str,
    done: impl AsyncFn(&common::Gateway) -> bool,
) {
    for attempt in 0.. {
        if done(gw).await {
            return;
        }
        assert!(attempt < 250, "{what} was never charged");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `tokens_per_minute` counts the tokens calls actually used, streamed or not: once a call's
/// usage is charged, a request whose estimate no longer fits is refused with Retry-After.
#[tokio::test]
async fn tokens_per_minute_are_charged_after_plain_and_streamed_calls() {
    let config = format!(
        r#"
[[keys]]
name = "plain"
key_sha256 = "{plain}"
role = "user"
tokens_per_minute = 60

[[keys]]
name = "streamer"
key_sha256 = "{streamer}"
role = "user"
tokens_per_minute = 60
"#,
        plain = sha256_hex("po-plain-secret"),
        streamer = sha256_hex("po-streamer-secret"),
    );
    let gw = start(&config, false).await;
    // The estimate (body bytes / 4 + max_tokens) is about 40 tokens: one call fits in 60, but
    // not after the 32 tokens the fixture reports have been charged.
    let send = |secret: &'static str, stream: bool| {
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(secret)
            .json(
                &json!({"model": "up/gpt-4o-mini", "max_tokens": 20, "stream": stream,
                "messages": [{"role": "user", "content": "x"}]}),
            )
            .send()
    };
    let limits = promptops_access::Limits {
        tokens_per_minute: Some(60),
        ..promptops_access::Limits::default()
    };
    let charged = move |name: &'static str| {
        async move |gw: &common::Gateway| {
            // 29 more tokens no longer fit once 32 are charged.
            !gw.state
                .limiter()
                .check_tokens(name, &limits, 29)
                .await
                .unwrap()
                .allowed
        }
    };

    assert!(
        !charged("plain")(&gw).await,
        "nothing charged before the call"
    );
    assert_eq!(send("po-plain-secret", false).await.unwrap().status(), 200);
    until_charged(&gw, "the plain call", charged("plain")).await;
    let limited = send("po-plain-secret", false).await.unwrap();
    assert!(limited.headers().get("retry-after").is_some());
    let error = error_of(limited, 429).await;
    assert_eq!(error["code"], "tokens_per_minute_exceeded");

    // The streamed call is charged from its usage event once the stream has been read.
    let streamed = send("po-streamer-secret", true).await.unwrap();
    assert_eq!(streamed.status(), 200);
    let events = common::sse_events(&streamed.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    until_charged(&gw, "the streamed call", charged("streamer")).await;
    let limited = send("po-streamer-secret", true).await.unwrap();
    assert!(limited.headers().get("retry-after").is_some());
    let error = error_of(limited, 429).await;
    assert_eq!(error["code"], "tokens_per_minute_exceeded");
    assert_eq!(
        gw.upstream.hits(),
        2,
        "refused requests never went upstream"
    );
}

/// `budget_usd` is spent by priced calls; an exhausted key gets 429 `budget_exceeded`.
#[tokio::test]
async fn a_spent_budget_is_refused() {
    let config = format!(
        r#"
[[keys]]
name = "thrifty"
key_sha256 = "{key}"
role = "user"
budget_usd = 0.000001
"#,
        key = sha256_hex("po-thrifty-secret"),
    );
    let gw = start(&config, false).await;
    let send = || {
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("po-thrifty-secret")
            .json(
                &json!({"model": "up/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}),
            )
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 200);
    let cost: f64 = first.headers()["x-promptops-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cost > 0.000001, "one call overspends the budget: {cost}");
    let limits = promptops_access::Limits {
        budget_usd: Some(0.000001),
        ..promptops_access::Limits::default()
    };
    until_charged(&gw, "the call's cost", async |gw: &common::Gateway| {
        let left = gw.state.limiter().budget_left("thrifty", &limits).await;
        left.unwrap().unwrap() <= 0.0
    })
    .await;
    let limited = send().await.unwrap();
    assert!(limited.headers().get("retry-after").is_some());
    let error = error_of(limited, 429).await;
    assert_eq!(error["code"], "budget_exceeded");
    assert_eq!(gw.upstream.hits(), 1);
}

/// `/readyz` reports a Redis cache backend that stops answering: the gateway reaches the real
/// Redis through a loopback relay that the test then closes.
#[tokio::test]
async fn readyz_names_a_redis_backend_that_stops_answering() {
    use std::sync::{Arc, Mutex};
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = relay.local_addr().unwrap();
    let links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
    let tracked = Arc::clone(&links);
    let acceptor = tokio::spawn(async move {
        loop {
            let (mut inbound, _) = relay.accept().await.unwrap();
            let link = tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect("127.0.0.1:6379")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
            tracked.lock().unwrap().push(link);
        }
    });
    let config = format!(
        "[cache]\nbackend = \"redis\"\nredis_url = \"redis://{address}\"\n\
         redis_prefix = \"promptops:test:{}:readyz:\"\nttl_seconds = 60\n",
        std::process::id()
    );
    let gw = start(&config, false).await;
    assert_eq!(gw.get("/readyz").await.status(), 200);
    // Close the relay: no listener, every open connection dropped.
    acceptor.abort();
    let _ = acceptor.await;
    let open: Vec<_> = links.lock().unwrap().drain(..).collect();
    for link in open {
        link.abort();
        let _ = link.await;
    }
    let response = gw.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["problems"].to_string().contains("cache backend"),
        "{body}"
    );
}
