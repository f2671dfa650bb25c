#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! `promptops serve` end to end: the real binary with no config file serves the embedded model
//! over the OpenAI API, prompt references from the registry the `prompt` commands write, and
//! refuses an unauthenticated public bind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_promptops");

/// A running `promptops serve`, killed on drop.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(database_url: &str) -> Server {
    start_with(database_url, &[])
}

fn start_with(database_url: &str, extra: &[&str]) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("PROMPTOPS_DATABASE_URL", database_url)
        .env_remove("PROMPTOPS_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let base = loop {
        let Some(line) = lines.next() else {
            panic!("serve exited before listening: {seen:?}")
        };
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("promptops: serving the OpenAI-compatible API on ") {
            break rest.trim_end_matches("/v1").to_owned();
        }
        seen.push(line);
    };
    // Keep draining stderr (the access log) so the server never blocks on a full pipe.
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Server { child, base, log }
}

fn run(args: &[&str], database_url: &str) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("PROMPTOPS_DATABASE_URL", database_url)
        .output()
        .unwrap()
}

#[tokio::test]
async fn serves_the_embedded_model_and_registry_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("registry.db").display());
    let template = dir.path().join("capital.txt");
    std::fs::write(&template, "What is the capital of {{ country }}?").unwrap();
    let added = run(
        &[
            "prompt",
            "add",
            "capital",
            "--template",
            template.to_str().unwrap(),
            "--model",
            "local/smollm2-135m",
            "-m",
            "first",
        ],
        &database_url,
    );
    assert!(added.status.success(), "{added:?}");

    let server = start(&database_url);
    let client = reqwest::Client::new();

    let models: Value = client
        .get(format!("{}/v1/models", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|model| model["id"].as_str())
        .collect();
    assert!(ids.contains(&"local/smollm2-135m"), "{ids:?}");
    assert!(ids.contains(&"local/all-minilm-l6-v2"), "{ids:?}");

    let response = client
        .post(format!("{}/v1/chat/completions", server.base))
        .header("x-request-id", "req-1")
        .json(&json!({
            "model": "local/smollm2-135m",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            "max_tokens": 16,
            "temperature": 0,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-1");
    let body: Value = response.json().await.unwrap();
    let answer = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.contains("Paris"), "{body}");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 10);

    let response = client
        .post(format!("{}/v1/chat/completions", server.base))
        .json(&json!({
            "model": "prompt:capital",
            "prompt_variables": {"country": "Italy"},
            "max_tokens": 12,
            "temperature": 0,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-promptops-prompt-version"],
        "capital@1.0.0"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        !body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    // Streamed with logprobs: the chunks carry OpenAI's `logprobs.content` entries, whose
    // tokens spell the streamed text.
    let streamed = client
        .post(format!("{}/v1/chat/completions", server.base))
        .json(&json!({
            "model": "local/smollm2-135m",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 8,
            "temperature": 0,
            "stream": true,
            "logprobs": true,
            "top_logprobs": 2,
        }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (mut text, mut spelled, mut entries) = (String::new(), String::new(), 0);
    for event in streamed
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
    {
        if event == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(event).unwrap();
        let choice = &chunk["choices"][0];
        text.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
        for entry in choice["logprobs"]["content"]
            .as_array()
            .into_iter()
            .flatten()
        {
            entries += 1;
            spelled.push_str(entry["token"].as_str().unwrap());
            assert!(entry["logprob"].as_f64().unwrap() <= 0.0, "{entry}");
            assert_eq!(
                entry["top_logprobs"].as_array().unwrap().len(),
                2,
                "{entry}"
            );
        }
    }
    assert!(entries > 0, "no logprobs in {streamed}");
    assert!(
        spelled.starts_with(&text) || text.starts_with(&spelled),
        "tokens {spelled:?} vs text {text:?}"
    );

    let response = client
        .post(format!("{}/v1/chat/completions", server.base))
        .json(&json!({"model": "prompt:capital", "prompt_variables": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("country"),
        "{body}"
    );

    let embeddings: Value = client
        .post(format!("{}/v1/embeddings", server.base))
        .json(&json!({"model": "local/all-minilm-l6-v2", "input": ["a cat", "a dog"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(embeddings["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        embeddings["data"][0]["embedding"].as_array().unwrap().len(),
        384
    );

    // The access log has one JSON line per request and no message content.
    let mut access = Vec::new();
    for _ in 0..50 {
        access = server.log.lock().unwrap().clone();
        if access.iter().any(|line| line.contains("/v1/embeddings")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let first: Value = access
        .iter()
        .find(|line| line.contains("req-1"))
        .map(|line| serde_json::from_str(line).unwrap())
        .unwrap_or_else(|| panic!("no access log line for req-1: {access:?}"));
    assert_eq!(first["target"], "promptops::access");
    assert_eq!(first["fields"]["status"], 200);
    assert_eq!(first["fields"]["route"], "/v1/chat/completions");
    assert_eq!(first["fields"]["provider"], "local/smollm2-135m");
    for line in &access {
        assert!(
            !line.contains("France") && !line.contains("Italy"),
            "{line}"
        );
    }
}

#[test]
fn refuses_a_public_bind_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("registry.db").display());
    let output = run(&["serve", "--listen", "0.0.0.0:0"], &database_url);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("0.0.0.0"), "{stderr}");
}

#[test]
fn a_bad_config_file_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("promptops.toml");
    std::fs::write(&config, "[server]\nlisten = \"127.0.0.1:0\"\nport = 3\n").unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server"), "{stderr}");
    assert!(stderr.contains("port"), "{stderr}");
}

#[tokio::test]
async fn semantic_cache_answers_a_paraphrase_without_calling_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("registry.db").display());
    let config = dir.path().join("promptops.toml");
    std::fs::write(
        &config,
        "[cache]\nbackend = \"memory\"\nttl_seconds = 600\n[cache.semantic]\nenabled = true\nthreshold = 0.9\n",
    )
    .unwrap();
    let server = start_with(&database_url, &["--config", config.to_str().unwrap()]);
    let client = reqwest::Client::new();
    let ask = |question: &str| {
        json!({
            "model": "local/smollm2-135m",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": question},
            ],
            "max_tokens": 16,
            "temperature": 0,
        })
    };
    let send = |body: Value| {
        let request = client
            .post(format!("{}/v1/chat/completions", server.base))
            .json(&body);
        async move { request.send().await.unwrap() }
    };

    let first = send(ask("What is the capital of France?")).await;
    assert_eq!(first.headers()["x-promptops-cache"], "miss");
    let first: Value = first.json().await.unwrap();

    let paraphrase = send(ask("What's the capital city of France?")).await;
    assert_eq!(paraphrase.headers()["x-promptops-cache"], "semantic-hit");
    let similarity: f32 = paraphrase.headers()["x-promptops-cache-similarity"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.9..=1.0001).contains(&similarity), "{similarity}");
    let paraphrase: Value = paraphrase.json().await.unwrap();
    assert_eq!(
        paraphrase["choices"][0]["message"]["content"],
        first["choices"][0]["message"]["content"]
    );

    let unrelated = send(ask("How do I bake sourdough bread?")).await;
    assert_eq!(unrelated.headers()["x-promptops-cache"], "miss");

    // Same question under another system prompt: a different scope, so no hit.
    let mut other_scope = ask("What is the capital of France?");
    other_scope["messages"][0]["content"] = json!("Answer in French.");
    let other_scope = send(other_scope).await;
    assert_eq!(other_scope.headers()["x-promptops-cache"], "miss");
}

#[test]
fn a_semantic_cache_without_a_callable_embedding_model_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("registry.db").display());
    let config = dir.path().join("promptops.toml");
    std::fs::write(
        &config,
        "[cache]\n[cache.semantic]\nenabled = true\nembedding_model = \"nowhere/embedder\"\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("PROMPTOPS_DATABASE_URL", &database_url)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cache.semantic.embedding_model"),
        "{stderr}"
    );
    assert!(stderr.contains("nowhere"), "{stderr}");
}

/// A loopback OpenAI-compatible upstream that answers slowly: streams five one-letter deltas
/// 150 ms apart, and a whole answer after 600 ms. It signals `received` on each request so the
/// test knows the request is in flight.
async fn slow_upstream(received: tokio::sync::mpsc::UnboundedSender<bool>) -> String {
    use axum::body::Body;
    use axum::response::IntoResponse;
    use std::time::Duration;

    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let received = received.clone();
            async move {
                let stream = body["stream"].as_bool().unwrap_or(false);
                let _ = received.send(stream);
                if !stream {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    return axum::Json(json!({
                        "id": "chatcmpl-slow",
                        "object": "chat.completion",
                        "created": 1,
                        "model": "m",
                        "choices": [{
                            "index": 0,
                            "message": {"role": "assistant", "content": "whole"},
                            "finish_reason": "stop"
                        }],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
                    }))
                    .into_response();
                }
                let events = futures_util::stream::unfold(0usize, |step| async move {
                    let chunk = |delta: Value, finish: Value| {
                        let chunk = json!({
                            "id": "chatcmpl-slow",
                            "object": "chat.completion.chunk",
                            "created": 1,
                            "model": "m",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
                        });
                        format!("data: {chunk}\n\n")
                    };
                    let event = match step {
                        0..=4 => {
                            tokio::time::sleep(Duration::from_millis(150)).await;
                            let letter = char::from(b'a' + u8::try_from(step).unwrap());
                            chunk(json!({"content": letter.to_string()}), Value::Null)
                        }
                        5 => chunk(json!({}), json!("stop")),
                        6 => "data: [DONE]\n\n".to_owned(),
                        _ => return None,
                    };
                    Some((Ok::<_, std::io::Error>(event), step + 1))
                });
                (
                    [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                    Body::from_stream(events),
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

/// SIGTERM while a stream and a slow answer are in flight on both workers: both finish whole,
/// then the process exits cleanly.
#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_streams() {
    let (received, mut requests) = tokio::sync::mpsc::unbounded_channel();
    let upstream = slow_upstream(received).await;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("registry.db").display());
    let config = dir.path().join("promptops.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nworkers = 2\n\n[[providers]]\nname = \"slow\"\nkind = \"openai\"\n\
             base_url = \"{upstream}\"\n\n[[routes]]\nname = \"slow\"\ntargets = [\"slow/m\"]\n\
             timeout_ms = 20000\n"
        ),
    )
    .unwrap();
    let mut server = start_with(&database_url, &["--config", config.to_str().unwrap()]);
    let chat = format!("{}/v1/chat/completions", server.base);

    let streamed = reqwest::Client::new()
        .post(&chat)
        .json(&json!({"model": "slow", "stream": true,
                      "messages": [{"role": "user", "content": "spell"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    let whole = tokio::spawn(
        reqwest::Client::new()
            .post(&chat)
            .json(&json!({"model": "slow", "messages": [{"role": "user", "content": "hi"}]}))
            .send(),
    );
    let mut kinds = vec![
        requests.recv().await.unwrap(),
        requests.recv().await.unwrap(),
    ];
    kinds.sort_unstable();
    assert_eq!(kinds, [false, true], "both requests reached the upstream");

    let terminated = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());

    let text = streamed.text().await.unwrap();
    let letters: String = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| {
            let chunk: Value = serde_json::from_str(data).unwrap();
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(letters, "abcde", "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let whole: Value = whole.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(whole["choices"][0]["message"]["content"], "whole");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve still running 30 s after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    // The stderr reader may still be catching up with the last lines.
    for _ in 0..100 {
        if server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line == "promptops: stopped")
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no `promptops: stopped`: {:?}", server.log.lock().unwrap());
}
