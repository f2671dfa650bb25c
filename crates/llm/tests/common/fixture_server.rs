//! A real HTTP server on 127.0.0.1 that replays recorded provider wire fixtures
//! (`tests/fixtures/<kind>/`) and records every request it receives.
//!
//! The request's `model` picks the scenario: `chat`, `tools`, `json`, `no-usage` answer with
//! `<scenario>.json` (or `<scenario>.sse` when the body asks to stream); `error-<status>`
//! answers that status with `error-<status>.json` (429 adds `retry-after: 20`). Requests without
//! the right credentials get a 401 that is not a fixture, so a wrong auth header fails the test.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::Value;

/// The API key the fixture server accepts.
pub const TEST_KEY: &str = "sk-test-conformance-key-0001";

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Clone)]
struct ServerState {
    kind: &'static str,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

/// A running fixture server.
pub struct FixtureServer {
    /// `http://127.0.0.1:PORT`.
    pub root: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl FixtureServer {
    /// Starts a server for provider kind `kind` (`openai`, `anthropic` or `ollama`).
    pub async fn start(kind: &'static str) -> FixtureServer {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState {
            kind,
            requests: Arc::clone(&requests),
        };
        let app = Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let root = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FixtureServer { root, requests }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("no request was received")
    }
}

fn fixture_path(kind: &str, file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
        .join(file)
}

fn reply(status: u16, content_type: &str, extra: &[(&str, &str)], body: Body) -> Response {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", content_type);
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    builder.body(body).unwrap()
}

fn json_file(kind: &str, file: &str, status: u16, extra: &[(&str, &str)]) -> Response {
    match std::fs::read(fixture_path(kind, file)) {
        Ok(bytes) => reply(status, "application/json", extra, Body::from(bytes)),
        Err(_) => reply(
            404,
            "application/json",
            &[],
            Body::from(format!("no fixture {kind}/{file}")),
        ),
    }
}

/// Serves an event stream in 7-byte chunks, so frames are split across reads.
fn sse_file(kind: &str, file: &str) -> Response {
    let Ok(bytes) = std::fs::read(fixture_path(kind, file)) else {
        return reply(
            404,
            "application/json",
            &[],
            Body::from(format!("no fixture {kind}/{file}")),
        );
    };
    let chunks: Vec<Result<Bytes, Infallible>> = bytes
        .chunks(7)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    reply(
        200,
        "text/event-stream",
        &[("cache-control", "no-cache")],
        Body::from_stream(futures_util::stream::iter(chunks)),
    )
}

fn authorised(kind: &str, headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    match kind {
        "anthropic" => {
            header("x-api-key") == Some(TEST_KEY) && header("anthropic-version").is_some()
        }
        _ => header("authorization") == Some(&format!("Bearer {TEST_KEY}")),
    }
}

async fn handle(
    State(state): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers.clone(),
        body: json.clone(),
    });
    let kind = state.kind;
    let path = uri.path();
    // Ollama's native listing takes no key.
    if kind == "ollama" && method == Method::GET && path == "/api/tags" {
        return json_file(kind, "tags.json", 200, &[]);
    }
    if !authorised(kind, &headers) {
        return reply(
            401,
            "application/json",
            &[],
            Body::from(r#"{"error":"bad credentials"}"#),
        );
    }
    let chat_path = if kind == "anthropic" {
        "/v1/messages"
    } else {
        "/v1/chat/completions"
    };
    match (method.clone(), path) {
        (Method::POST, p) if p == chat_path => {}
        (Method::POST, "/v1/embeddings") if kind != "anthropic" => {
            return json_file(kind, "embeddings.json", 200, &[]);
        }
        (Method::GET, "/v1/models") if kind != "ollama" => {
            return json_file(kind, "models.json", 200, &[]);
        }
        _ => {
            return reply(
                404,
                "text/plain",
                &[],
                Body::from(format!("{method} {path} not served")),
            );
        }
    }
    let scenario = json
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(status) = scenario.strip_prefix("error-") {
        let status: u16 = status.parse().unwrap();
        let extra: &[(&str, &str)] = if status == 429 {
            &[("retry-after", "20")]
        } else {
            &[]
        };
        return json_file(kind, &format!("{scenario}.json"), status, extra);
    }
    let stream = json.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if stream {
        sse_file(kind, &format!("{scenario}.sse"))
    } else {
        json_file(kind, &format!("{scenario}.json"), 200, &[])
    }
}
