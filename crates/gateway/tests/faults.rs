#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Upstream faults end to end: the real gateway on loopback against scripted upstreams (real
//! HTTP servers) that answer late, close the connection, send malformed JSON or cut a stream
//! before its first delta. Each falls back to the next target, or ends in the OpenAI error
//! envelope naming every attempt when no target answers.

mod common;

use std::time::Duration;

use common::{FakeUpstream, Gateway, Mode, error_of, sse_events, start};
use serde_json::{Value, json};

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// The gateway with the scripted fault upstreams as providers `slow`, `closing`, `malformed`
/// and `cut`, and `routes` (TOML) appended.
async fn gateway(routes: &str) -> (Gateway, Vec<FakeUpstream>) {
    let slow = FakeUpstream::start(Mode::Delay(Duration::from_secs(3))).await;
    let closing = FakeUpstream::start(Mode::Close).await;
    let malformed = FakeUpstream::start(Mode::Malformed).await;
    let cut = FakeUpstream::start(Mode::EmptyStream).await;
    let mut extra = String::new();
    for (name, upstream) in [
        ("slow", &slow),
        ("closing", &closing),
        ("malformed", &malformed),
        ("cut", &cut),
    ] {
        extra.push_str(&format!(
            "\n[[providers]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"{}\"\n",
            upstream.base_url
        ));
    }
    extra.push_str(routes);
    let gw = start(&extra, false).await;
    (gw, vec![slow, closing, malformed, cut])
}

#[tokio::test]
async fn a_slow_target_times_out_and_falls_back_or_answers_504() {
    let (gw, upstreams) = gateway(
        r#"
[[routes]]
name = "slowfirst"
targets = ["slow/gpt-4o-mini", "up/gpt-4o-mini"]
retries = 0
timeout_ms = 300

[[routes]]
name = "slowonly"
targets = ["slow/gpt-4o-mini"]
retries = 0
timeout_ms = 300
"#,
    )
    .await;
    let response = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "slowfirst", "messages": user("x")}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-promptops-provider"], "up/gpt-4o-mini");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Paris is the capital of France."
    );
    assert_eq!(upstreams[0].hits(), 1);
    assert_eq!(gw.upstream.hits(), 1);

    let error = error_of(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "slowonly", "messages": user("x")}),
        )
        .await,
        504,
    )
    .await;
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("slow/gpt-4o-mini") && message.contains("no answer within"),
        "{error}"
    );
}

#[tokio::test]
async fn closed_connections_and_malformed_bodies_fall_back_or_answer_502() {
    let (gw, upstreams) = gateway(
        r#"
[[routes]]
name = "closefirst"
targets = ["closing/gpt-4o-mini", "up/gpt-4o-mini"]
retries = 0

[[routes]]
name = "malformedfirst"
targets = ["malformed/gpt-4o-mini", "up/gpt-4o-mini"]
retries = 0

[[routes]]
name = "broken"
targets = ["closing/gpt-4o-mini", "malformed/gpt-4o"]
retries = 0
"#,
    )
    .await;
    for route in ["closefirst", "malformedfirst"] {
        let response = gw
            .post(
                "/v1/chat/completions",
                json!({"model": route, "messages": user("x")}),
            )
            .await;
        assert_eq!(response.status(), 200, "{route}");
        assert_eq!(
            response.headers()["x-promptops-provider"],
            "up/gpt-4o-mini",
            "{route}"
        );
    }
    assert_eq!(upstreams[1].hits(), 1);
    assert_eq!(upstreams[2].hits(), 1);
    assert_eq!(gw.upstream.hits(), 2);

    let error = error_of(
        gw.post(
            "/v1/chat/completions",
            json!({"model": "broken", "messages": user("x")}),
        )
        .await,
        502,
    )
    .await;
    assert_eq!(error["code"], "all_models_failed");
    let message = error["message"].as_str().unwrap();
    let closed = message.find("closing/gpt-4o-mini").expect(message);
    let malformed = message.find("malformed/gpt-4o").expect(message);
    assert!(closed < malformed, "attempts out of order: {message}");
    assert!(
        message.contains("connection") && message.contains("not JSON"),
        "{message}"
    );
}

#[tokio::test]
async fn a_stream_cut_before_its_first_delta_falls_back() {
    let (gw, upstreams) = gateway(
        r#"
[[routes]]
name = "cutfirst"
targets = ["cut/gpt-4o-mini", "up/gpt-4o-mini"]
retries = 0
"#,
    )
    .await;
    let response = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "cutfirst", "messages": user("x"), "stream": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-promptops-provider"], "up/gpt-4o-mini");
    let text = response.text().await.unwrap();
    let mut content = String::new();
    for event in sse_events(&text) {
        if event == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(&event).unwrap();
        assert!(chunk.get("error").is_none(), "{chunk}");
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            content.push_str(piece);
        }
    }
    assert_eq!(content, "Paris is the capital of France.");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(upstreams[3].hits(), 1);
    assert_eq!(gw.upstream.hits(), 1);
}
