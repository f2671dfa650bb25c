//! Observability over loopback: circuit breaker gauges, request series labelled by the served
//! target, streamed requests recorded when their body ends, and the access log's accounting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use axum::routing::post;
use common::{sse_events, start};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// The access-log events written while the guard lives (this thread only: `#[tokio::test]`
/// runs the gateway's tasks on the test thread).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

struct Line(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = Arc::clone(&self.0);
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Line(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The `fields` of the access-log events of request `id`.
    fn access(&self, id: &str) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|event| event["target"] == "promptops::access")
            .map(|event| event["fields"].clone())
            .filter(|fields| fields["request_id"] == id)
            .collect()
    }
}

/// The gateway with provider `held`: an OpenAI upstream whose stream sends its first chunk,
/// then waits for `release` before the rest (finish, usage, `[DONE]`), so the test decides
/// when the stream ends.
async fn start_with_held_upstream() -> (common::Gateway, Arc<Notify>) {
    let release = Arc::new(Notify::new());
    let held = Arc::clone(&release);
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let held = Arc::clone(&held);
            async move {
                let chunk = |delta: Value, finish: Value| {
                    format!(
                        "data: {}\n\n",
                        json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",
                               "choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}]})
                    )
                };
                let head = chunk(
                    json!({"role":"assistant","content":"TOPSECRET-completion"}),
                    Value::Null,
                );
                let tail = format!(
                    "{}data: {}\n\ndata: [DONE]\n\n",
                    chunk(json!({}), json!("stop")),
                    json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",
                           "choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,
                           "prompt_tokens_details":{"cached_tokens":3}}})
                );
                let first = futures_util::stream::iter([Ok::<String, std::io::Error>(head)]);
                let rest = futures_util::stream::once(async move {
                    held.notified().await;
                    Ok::<String, std::io::Error>(tail)
                });
                use futures_util::StreamExt;
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/event-stream")
                    .body(Body::from_stream(first.chain(rest)))
                    .unwrap()
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let gw = start(
        &format!("[[providers]]\nname = \"held\"\nkind = \"openai\"\nbase_url = \"{base_url}\"\n"),
        false,
    )
    .await;
    (gw, release)
}

/// The value of the series `name{labels}` in the exposition, if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn circuit_gauge_follows_the_breaker_of_each_provider() {
    let gw = start("", false).await;
    let metrics = gw.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        sample(&metrics, "promptops_circuit_state{provider=\"bad\"}"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "promptops_circuit_state{provider=\"up\"}"),
        Some(0.0),
        "{metrics}"
    );
    // The default breaker opens after 5 consecutive failures and stays open for 30 s.
    for _ in 0..5 {
        let response = gw
            .post(
                "/v1/chat/completions",
                json!({"model": "bad/gpt-4o-mini", "messages": user("x")}),
            )
            .await;
        assert!(response.status().is_server_error(), "{}", response.status());
    }
    let metrics = gw.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        sample(&metrics, "promptops_circuit_state{provider=\"bad\"}"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "promptops_circuit_state{provider=\"up\"}"),
        Some(0.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn circuit_gauge_reports_half_open_when_the_configured_cool_down_ends() {
    let gw = start(
        "[circuit_breaker]\nfailure_threshold = 1\nopen_ms = 300\n",
        false,
    )
    .await;
    let state = async || {
        let metrics = gw.get("/metrics").await.text().await.unwrap();
        sample(&metrics, "promptops_circuit_state{provider=\"bad\"}").unwrap()
    };
    let fail = async || {
        let response = gw
            .post(
                "/v1/chat/completions",
                json!({"model": "bad/gpt-4o-mini", "messages": user("x")}),
            )
            .await;
        assert!(response.status().is_server_error(), "{}", response.status());
    };
    fail().await;
    assert_eq!(state().await, 2.0, "one failure opens it (threshold 1)");
    let mut seen = state().await;
    for _ in 0..100 {
        if seen != 2.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        seen = state().await;
    }
    assert_eq!(seen, 1.0, "half-open once the 300 ms cool-down is over");
    // The probe fails: open again.
    fail().await;
    assert_eq!(state().await, 2.0);
}

#[tokio::test]
async fn request_series_are_labelled_by_the_served_target() {
    let gw = start("", false).await;
    // Asked for the `fallback` route, served by `up` after `bad` failed.
    let response = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "fallback", "messages": user("x")}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let response = gw
        .post("/v1/chat/completions", json!({"messages": user("x")}))
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(gw.get("/healthz").await.status(), 200);
    let metrics = gw.get("/metrics").await.text().await.unwrap();
    for (series, value) in [
        (
            "promptops_http_requests_total{route=\"/v1/chat/completions\",provider=\"up\",model=\"gpt-4o-mini\",status=\"200\"}",
            1.0,
        ),
        (
            "promptops_http_request_duration_seconds_count{route=\"/v1/chat/completions\",provider=\"up\",model=\"gpt-4o-mini\",status=\"200\"}",
            1.0,
        ),
        (
            "promptops_http_requests_total{route=\"/v1/chat/completions\",provider=\"none\",model=\"none\",status=\"400\"}",
            1.0,
        ),
        (
            "promptops_http_requests_total{route=\"/healthz\",provider=\"none\",model=\"none\",status=\"200\"}",
            1.0,
        ),
    ] {
        assert_eq!(sample(&metrics, series), Some(value), "{series}\n{metrics}");
    }
    assert!(!metrics.contains("model=\"fallback\""), "{metrics}");
}

#[tokio::test]
async fn json_answers_log_tokens_and_cost_but_no_content() {
    let captured = Captured::default();
    let _guard = captured.install();
    let gw = start("", false).await;
    let response = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "json-1")
        .json(&json!({"model": "up/gpt-4o-mini", "messages": user("TOPSECRET-prompt")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cost: f64 = response.headers()["x-promptops-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let lines = captured.access("json-1");
    assert_eq!(lines.len(), 1, "{}", captured.text());
    let line = &lines[0];
    assert_eq!(line["status"], 200);
    assert_eq!(line["provider"], "up/gpt-4o-mini");
    assert_eq!(line["input_tokens"], body["usage"]["prompt_tokens"]);
    assert_eq!(line["output_tokens"], body["usage"]["completion_tokens"]);
    assert_eq!(
        line["cached_tokens"],
        body["usage"]["prompt_tokens_details"]["cached_tokens"]
    );
    assert!(cost > 0.0);
    assert!(
        (line["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-8,
        "{line}"
    );
    assert_eq!(line["streamed"], false);
    assert!(line.get("ttft_ms").is_none(), "{line}");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    let text = captured.text();
    assert!(!text.contains("TOPSECRET"), "{text}");
    assert!(!text.contains(content), "{text}");
}

#[tokio::test]
async fn streams_are_recorded_when_their_body_ends_with_usage_and_cost() {
    let captured = Captured::default();
    let _guard = captured.install();
    let (gw, release) = start_with_held_upstream().await;
    let series = "promptops_http_request_duration_seconds_count{route=\"/v1/chat/completions\",provider=\"held\",model=\"gpt-4o-mini\",status=\"200\"}";
    let mut response = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "stream-1")
        .json(
            &json!({"model": "held/gpt-4o-mini", "messages": user("TOPSECRET-prompt"),
                      "stream": true, "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut text = String::from_utf8(response.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(text.contains("TOPSECRET-completion"), "{text}");
    // Headers and the first token are out, the stream is not over: nothing recorded yet.
    assert!(
        captured.access("stream-1").is_empty(),
        "{}",
        captured.text()
    );
    let metrics = gw.get("/metrics").await.text().await.unwrap();
    assert_eq!(sample(&metrics, series), None, "{metrics}");

    release.notify_one();
    while let Some(chunk) = response.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let events = sse_events(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 7, "{usage}");
    let cost = usage["usage"]["promptops_cost_usd"].as_f64().unwrap();
    assert!(cost > 0.0, "{usage}");

    let metrics = gw.get("/metrics").await.text().await.unwrap();
    assert_eq!(sample(&metrics, series), Some(1.0), "{metrics}");
    let lines = captured.access("stream-1");
    assert_eq!(lines.len(), 1, "{}", captured.text());
    let line = &lines[0];
    assert_eq!(line["streamed"], true);
    assert_eq!(line["finished"], true);
    assert_eq!(line["provider"], "held/gpt-4o-mini");
    assert_eq!(line["input_tokens"], 11);
    assert_eq!(line["output_tokens"], 7);
    assert_eq!(line["cached_tokens"], 3);
    assert!(
        (line["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-12,
        "{line}"
    );
    assert!(line["ttft_ms"].as_f64().unwrap() >= 0.0, "{line}");
    assert!(
        line["latency_ms"].as_f64().unwrap() >= line["ttft_ms"].as_f64().unwrap(),
        "{line}"
    );
    let logged = captured.text();
    assert!(!logged.contains("TOPSECRET"), "{logged}");
}

#[tokio::test]
async fn a_stream_the_client_leaves_is_logged_unfinished() {
    let captured = Captured::default();
    let _guard = captured.install();
    let (gw, _release) = start_with_held_upstream().await;
    let mut response = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "left-1")
        .json(&json!({"model": "held/gpt-4o-mini", "messages": user("x"), "stream": true}))
        .send()
        .await
        .unwrap();
    assert!(response.chunk().await.unwrap().is_some());
    drop(response);
    // The gateway notices the closed connection, drops the body and records it; wait for that
    // through the metrics endpoint rather than a timer.
    let series = "promptops_http_requests_total{route=\"/v1/chat/completions\",provider=\"held\",model=\"gpt-4o-mini\",status=\"200\"}";
    let recorded = async {
        loop {
            let metrics = gw.get("/metrics").await.text().await.unwrap();
            if sample(&metrics, series) == Some(1.0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    // A bound against hanging, not a latency assertion.
    tokio::time::timeout(std::time::Duration::from_secs(20), recorded)
        .await
        .expect("the abandoned stream was never recorded");
    let lines = captured.access("left-1");
    assert_eq!(lines.len(), 1, "{}", captured.text());
    assert_eq!(lines[0]["streamed"], true);
    assert_eq!(lines[0]["finished"], false);
    assert!(lines[0]["ttft_ms"].as_f64().is_some(), "{}", lines[0]);
}
