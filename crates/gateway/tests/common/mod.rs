//! Test harness: a scripted fake OpenAI upstream (axum on 127.0.0.1:0 serving recorded wire
//! fixtures) and the gateway under test on 127.0.0.1:0, optionally with a registry on a temp
//! SQLite file.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use promptops_gateway::{AppState, GatewayConfig};
use promptops_llm::ProviderSet;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const CHAT_JSON: &str = include_str!("../fixtures/chat.json");
pub const CHAT_SSE: &str = include_str!("../fixtures/chat.sse");
pub const TOOLS_JSON: &str = include_str!("../fixtures/tools.json");
pub const TOOLS_SSE: &str = include_str!("../fixtures/tools.sse");
pub const MODELS_JSON: &str = include_str!("../fixtures/models.json");

/// How the fake upstream behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Recorded fixtures; the model name picks them (`*tools*` → tool calls, `echo` → the
    /// received messages as the reply text).
    Normal,
    /// Every chat and embeddings request fails with HTTP 500.
    Fail,
    /// Waits this long, then answers like `Normal` (longer than a route's timeout: a timeout).
    Delay(Duration),
    /// Reads the request and closes the connection without answering.
    Close,
    /// Answers chat with 200 and a truncated JSON body.
    Malformed,
    /// Answers streamed chat with 200 and the role-only event, then cuts the connection before
    /// the first delta.
    EmptyStream,
}

#[derive(Clone)]
struct Upstream {
    mode: Mode,
    bodies: Arc<Mutex<Vec<Value>>>,
}

/// A running fake upstream.
pub struct FakeUpstream {
    pub base_url: String,
    pub bodies: Arc<Mutex<Vec<Value>>>,
}

impl FakeUpstream {
    pub async fn start(mode: Mode) -> FakeUpstream {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        if mode == Mode::Close {
            return FakeUpstream::closing(bodies).await;
        }
        let state = Upstream {
            mode,
            bodies: Arc::clone(&bodies),
        };
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(fake_chat))
            .route("/v1/embeddings", post(fake_embeddings))
            .route(
                "/v1/models",
                get(|| async { ([(header::CONTENT_TYPE, "application/json")], MODELS_JSON) }),
            )
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeUpstream { base_url, bodies }
    }

    /// A raw TCP server: each connection's request is read, then the socket is dropped.
    async fn closing(bodies: Arc<Mutex<Vec<Value>>>) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let seen = Arc::clone(&bodies);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let body = read_request(&mut socket).await;
                    seen.lock().unwrap().push(body);
                    let _ = socket.shutdown().await;
                });
            }
        });
        FakeUpstream { base_url, bodies }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    /// The last request body received.
    pub fn last_body(&self) -> Value {
        self.bodies.lock().unwrap().last().cloned().unwrap()
    }
}

/// Reads one HTTP/1.1 request (headers, then `content-length` bytes) and returns its JSON body.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Value {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(read) = socket.read(&mut buf).await else {
            return Value::Null;
        };
        if read == 0 {
            return Value::Null;
        }
        data.extend_from_slice(&buf[..read]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| value.trim().parse().unwrap());
        if data.len() >= end + 4 + length {
            return serde_json::from_slice(&data[end + 4..end + 4 + length]).unwrap_or(Value::Null);
        }
    }
}

fn failure() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": {"message": "scripted failure", "type": "server_error", "param": null, "code": null}})),
    )
        .into_response()
}

async fn fake_chat(State(state): State<Upstream>, Json(body): Json<Value>) -> Response {
    state.bodies.lock().unwrap().push(body.clone());
    if state.mode == Mode::Fail {
        return failure();
    }
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let stream = body["stream"].as_bool().unwrap_or(false);
    match state.mode {
        Mode::Delay(wait) => tokio::time::sleep(wait).await,
        Mode::Malformed => return json_text(r#"{"id":"chatcmpl-1","choices":["#),
        Mode::EmptyStream if stream => {
            use futures_util::StreamExt;
            let role = CHAT_SSE.split("\n\n").next().unwrap();
            let head =
                futures_util::stream::iter([Ok::<String, std::io::Error>(format!("{role}\n\n"))]);
            let cut = futures_util::stream::iter([Err::<String, std::io::Error>(
                std::io::Error::other("scripted cut before the first delta"),
            )]);
            return Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(head.chain(cut)))
                .unwrap();
        }
        _ => {}
    }
    if model == "echo" {
        let text = serde_json::to_string(&body["messages"]).unwrap();
        if stream {
            let mut events = String::new();
            let chunk = |delta: Value, finish: Value| {
                json!({"id":"chatcmpl-echo","object":"chat.completion.chunk","created":1,"model":"echo",
                       "choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}]})
            };
            events.push_str(&format!(
                "data: {}\n\n",
                chunk(json!({"role":"assistant","content":""}), Value::Null)
            ));
            for piece in text.as_bytes().chunks(7) {
                let piece = String::from_utf8_lossy(piece).into_owned();
                events.push_str(&format!(
                    "data: {}\n\n",
                    chunk(json!({"content": piece}), Value::Null)
                ));
            }
            events.push_str(&format!("data: {}\n\n", chunk(json!({}), json!("stop"))));
            events.push_str("data: {\"id\":\"chatcmpl-echo\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"echo\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20,\"total_tokens\":30}}\n\ndata: [DONE]\n\n");
            return sse(events);
        }
        return Json(json!({
            "id": "chatcmpl-echo", "object": "chat.completion", "created": 1, "model": "echo",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
        }))
        .into_response();
    }
    if model == "break" && stream {
        // Two events, then the connection breaks mid-stream.
        let first: String = CHAT_SSE
            .split("\n\n")
            .take(4)
            .map(|e| format!("{e}\n\n"))
            .collect();
        use futures_util::StreamExt;
        let head = futures_util::stream::iter([Ok::<String, std::io::Error>(first)]);
        // Let the events reach the client before the connection is cut.
        let cut = futures_util::stream::once(async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            Err::<String, std::io::Error>(std::io::Error::other("scripted break"))
        });
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(head.chain(cut)))
            .unwrap();
    }
    let tools = model.contains("tools");
    match (stream, tools) {
        (true, true) => sse(TOOLS_SSE.to_owned()),
        (true, false) => sse(CHAT_SSE.to_owned()),
        (false, true) => json_text(TOOLS_JSON),
        (false, false) => json_text(CHAT_JSON),
    }
}

fn json_text(text: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

fn sse(events: String) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(events))
        .unwrap()
}

async fn fake_embeddings(State(state): State<Upstream>, Json(body): Json<Value>) -> Response {
    state.bodies.lock().unwrap().push(body.clone());
    if state.mode == Mode::Fail {
        return failure();
    }
    let inputs = match &body["input"] {
        Value::Array(items) => items.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|index| json!({"object": "embedding", "index": index, "embedding": [index as f32, 0.5, -0.25]}))
        .collect();
    Json(
        json!({"object": "list", "data": data, "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": 3 * inputs, "total_tokens": 3 * inputs}}),
    )
    .into_response()
}

/// The gateway under test.
pub struct Gateway {
    pub base: String,
    pub state: AppState,
    pub upstream: FakeUpstream,
    pub failing: FakeUpstream,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
    }
}

/// Providers `up` (fixtures) and `bad` (always 500); routes `fallback` (bad then up) and
/// `allbad`; `extra` is appended to the config; `registry` adds a temp SQLite registry.
pub async fn start(extra: &str, registry: bool) -> Gateway {
    start_with(extra, registry, |_| {}).await
}

/// [`start`], with `add` adding providers the config cannot build (the embedded model).
pub async fn start_with(
    extra: &str,
    registry: bool,
    add: impl FnOnce(&mut ProviderSet),
) -> Gateway {
    let upstream = FakeUpstream::start(Mode::Normal).await;
    let failing = FakeUpstream::start(Mode::Fail).await;
    let dir = tempfile::tempdir().unwrap();
    let database = if registry {
        format!(
            "database_url = \"sqlite://{}\"\n",
            dir.path().join("registry.db").display()
        )
    } else {
        String::new()
    };
    let text = format!(
        r#"{database}
[server]
max_body_bytes = 4096
refresh_interval_ms = 50

[[providers]]
name = "up"
kind = "openai"
base_url = "{up}"

[[providers]]
name = "bad"
kind = "openai"
base_url = "{bad}"

[[routes]]
name = "fallback"
targets = ["bad/gpt-4o-mini", "up/gpt-4o-mini"]
retries = 0
timeout_ms = 5000

[[routes]]
name = "allbad"
targets = ["bad/gpt-4o-mini", "bad/gpt-4o"]
retries = 0
timeout_ms = 5000
{extra}
"#,
        up = upstream.base_url,
        bad = failing.base_url,
    );
    let config = GatewayConfig::from_toml(&text).unwrap();
    let mut providers = ProviderSet::from_config(&config.llm, &|_| None, None).unwrap();
    add(&mut providers);
    let state = AppState::from_config(&config, providers).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let serving = state.clone();
    tokio::spawn(async move {
        promptops_gateway::serve(listener, serving, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Gateway {
        base,
        state,
        upstream,
        failing,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        _dir: dir,
    }
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }
}

/// Parses an SSE body into its `data:` payloads.
pub fn sse_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// Asserts the OpenAI error envelope and returns it.
pub async fn error_of(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(error.get("param").is_some(), "{body}");
    assert!(error.get("code").is_some(), "{body}");
    error.clone()
}
