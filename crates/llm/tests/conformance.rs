#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The provider conformance suite: the same tests (chat, stream, tools, JSON, errors, usage,
//! embeddings, model listing) run against every remote provider kind, each talking real HTTP to
//! a loopback server that replays recorded wire fixtures.

#[path = "common/fixture_server.rs"]
mod fixture_server;

use std::sync::Arc;
use std::time::Duration;

use fixture_server::{FixtureServer, TEST_KEY};
use futures_util::StreamExt;
use promptops_core::generation::{GenerationConfig, ResponseFormat};
use promptops_core::message::{Message, ToolCall, parse_tools};
use promptops_core::tokens::Exactness;
use promptops_llm::{
    ChatRequest, ChatResponse, EmbeddingRequest, FinishReason, LlmConfig, LlmError, Provider,
    ProviderSet, StreamAccumulator, StreamDelta, ToolChoice, Usage,
};
use serde_json::{Value, json};

/// A running fixture server and the provider built for it from a TOML config.
struct Harness {
    kind: &'static str,
    server: FixtureServer,
    provider: Arc<dyn Provider>,
}

async fn harness(kind: &'static str) -> Harness {
    let server = FixtureServer::start(kind).await;
    let base_url = match kind {
        "openai" => format!("{}/v1", server.root),
        _ => server.root.clone(),
    };
    let toml = format!(
        "[[providers]]\nname = \"{kind}-upstream\"\nkind = \"{kind}\"\nbase_url = \"{base_url}\"\napi_key_env = \"CONFORMANCE_KEY\"\n"
    );
    let config = LlmConfig::from_toml(&toml).unwrap();
    let env = |name: &str| (name == "CONFORMANCE_KEY").then(|| TEST_KEY.to_owned());
    let providers = ProviderSet::from_config(&config, &env, None).unwrap();
    let provider = Arc::clone(providers.get(&format!("{kind}-upstream")).unwrap());
    Harness {
        kind,
        server,
        provider,
    }
}

/// The usage every fixture reports, normalised (Ollama reports no cache figures).
fn reported_usage(kind: &str) -> Usage {
    let cached = if kind == "ollama" { 0 } else { 16 };
    Usage::reported(24, 8, cached)
}

fn capital_question(model: &str) -> ChatRequest {
    ChatRequest::new(
        model,
        vec![
            Message::system("Answer in one sentence."),
            Message::user("What is the capital of France?"),
        ],
    )
}

fn weather_request(model: &str) -> ChatRequest {
    let mut request = ChatRequest::new(
        model,
        vec![Message::user("What is the weather in Paris and in Tokyo?")],
    );
    request.tools = parse_tools(
        &json!([{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }])
        .to_string(),
    )
    .unwrap();
    request.tool_choice = Some(ToolChoice::Required);
    request.parallel_tool_calls = Some(true);
    request
}

fn city_schema_request(model: &str) -> ChatRequest {
    let mut request = capital_question(model);
    request.generation = GenerationConfig::builder()
        .response_format(ResponseFormat::json_schema(
            "city_info",
            json!({
                "type": "object",
                "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                "required": ["city", "country"],
                "additionalProperties": false,
            }),
        ))
        .build()
        .unwrap();
    request
}

/// Streams `request`, checks the stream's shape and folds it into a response.
async fn stream_to_response(
    provider: &dyn Provider,
    request: &ChatRequest,
) -> (ChatResponse, Vec<StreamDelta>) {
    let mut stream = provider.stream(request).await.unwrap();
    let mut deltas = Vec::new();
    let mut accumulator = StreamAccumulator::new();
    while let Some(item) = stream.next().await {
        let delta = item.unwrap();
        accumulator.push(&delta);
        deltas.push(delta);
    }
    let usages = deltas
        .iter()
        .filter(|delta| matches!(delta, StreamDelta::Usage(_)))
        .count();
    assert_eq!(usages, 1, "exactly one usage delta: {deltas:?}");
    (
        accumulator.finish("streamed", provider.name(), &request.model, Value::Null),
        deltas,
    )
}

async fn chat(kind: &'static str) {
    let h = harness(kind).await;
    let response = h.provider.chat(&capital_question("chat")).await.unwrap();
    assert_eq!(response.text(), "Paris is the capital of France.");
    assert_eq!(response.finish_reason(), Some(&FinishReason::Stop));
    assert_eq!(response.provider, format!("{kind}-upstream"));
    assert_eq!(response.usage, reported_usage(kind));
    assert!(response.raw.get("id").is_some(), "raw payload kept");
    assert_ne!(
        response.model, "chat",
        "the model the upstream names is reported"
    );
    let sent = h.server.last();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.headers["content-type"], "application/json");
    assert_eq!(sent.body["model"], "chat");
    if h.kind == "anthropic" {
        assert_eq!(sent.path, "/v1/messages");
        assert_eq!(sent.body["system"], "Answer in one sentence.");
        assert_eq!(
            sent.body["messages"],
            json!([{"role": "user", "content": "What is the capital of France?"}])
        );
        assert!(sent.body["max_tokens"].as_u64().unwrap() > 0);
    } else {
        assert_eq!(sent.path, "/v1/chat/completions");
        assert_eq!(sent.body["messages"][0]["role"], "system");
        assert!(sent.body.get("stream").is_none());
    }
}

async fn stream(kind: &'static str) {
    let h = harness(kind).await;
    let request = capital_question("chat");
    let (streamed, deltas) = stream_to_response(h.provider.as_ref(), &request).await;
    let texts = deltas
        .iter()
        .filter(|delta| matches!(delta, StreamDelta::Text { .. }))
        .count();
    assert!(texts >= 3, "text arrives in pieces: {deltas:?}");
    let whole = h.provider.chat(&request).await.unwrap();
    assert_eq!(streamed.text(), whole.text());
    assert_eq!(streamed.finish_reason(), whole.finish_reason());
    assert_eq!(streamed.usage, whole.usage);
    let sent = &h.server.requests()[0];
    assert_eq!(sent.body["stream"], true);
    if h.kind != "anthropic" {
        assert_eq!(sent.body["stream_options"], json!({"include_usage": true}));
    }
}

fn assert_weather_calls(calls: &[ToolCall]) {
    assert_eq!(calls.len(), 2, "parallel tool calls: {calls:?}");
    let cities: Vec<Value> = calls
        .iter()
        .map(|call| {
            assert_eq!(call.function.name, "get_weather");
            assert!(!call.id.is_empty());
            serde_json::from_str::<Value>(&call.function.arguments).unwrap()["city"].clone()
        })
        .collect();
    assert_eq!(cities, vec![json!("Paris"), json!("Tokyo")]);
}

async fn tools(kind: &'static str) {
    let h = harness(kind).await;
    let request = weather_request("tools");
    let response = h.provider.chat(&request).await.unwrap();
    assert_weather_calls(response.tool_calls());
    assert_eq!(response.finish_reason(), Some(&FinishReason::ToolCalls));
    let (streamed, _) = stream_to_response(h.provider.as_ref(), &request).await;
    assert_weather_calls(streamed.tool_calls());
    assert_eq!(streamed.tool_calls(), response.tool_calls());
    assert_eq!(streamed.finish_reason(), Some(&FinishReason::ToolCalls));
    let sent = h.server.requests()[0].body.clone();
    if h.kind == "anthropic" {
        assert_eq!(sent["tools"][0]["name"], "get_weather");
        assert_eq!(
            sent["tools"][0]["input_schema"]["required"],
            json!(["city"])
        );
        assert_eq!(sent["tool_choice"], json!({"type": "any"}));
    } else {
        assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(sent["tool_choice"], "required");
        assert_eq!(sent["parallel_tool_calls"], true);
    }

    // The follow-up turn carries the calls and their results back.
    let mut follow_up = weather_request("chat");
    follow_up.messages.push(Message {
        tool_calls: response.tool_calls().to_vec(),
        ..Message::assistant_tool_calls(Vec::new())
    });
    for (call, weather) in response
        .tool_calls()
        .iter()
        .zip(["18°C, sunny", "11°C, rain"])
    {
        follow_up
            .messages
            .push(Message::tool_result(&call.id, weather));
    }
    h.provider.chat(&follow_up).await.unwrap();
    let sent = h.server.last().body;
    if h.kind == "anthropic" {
        assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
        assert_eq!(
            sent["messages"][1]["content"][0]["input"],
            json!({"city": "Paris"})
        );
        assert_eq!(sent["messages"][2]["role"], "user");
        assert_eq!(sent["messages"][2]["content"][1]["type"], "tool_result");
        assert_eq!(
            sent["messages"][2]["content"][1]["tool_use_id"],
            "call_tOkYoWeAtHeR"
        );
    } else {
        assert_eq!(
            sent["messages"][1]["tool_calls"][1]["id"],
            "call_tOkYoWeAtHeR"
        );
        assert_eq!(sent["messages"][3]["role"], "tool");
        assert_eq!(sent["messages"][3]["tool_call_id"], "call_tOkYoWeAtHeR");
    }
}

async fn json_mode(kind: &'static str) {
    let h = harness(kind).await;
    let request = city_schema_request("json");
    let expected = json!({"city": "Paris", "country": "France"});
    let response = h.provider.chat(&request).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&response.text()).unwrap(),
        expected
    );
    assert_eq!(response.finish_reason(), Some(&FinishReason::Stop));
    assert!(
        response.tool_calls().is_empty(),
        "the forced tool is not a tool call"
    );
    let (streamed, _) = stream_to_response(h.provider.as_ref(), &request).await;
    assert_eq!(
        serde_json::from_str::<Value>(&streamed.text()).unwrap(),
        expected
    );
    assert_eq!(streamed.finish_reason(), Some(&FinishReason::Stop));
    let sent = h.server.requests()[0].body.clone();
    if h.kind == "anthropic" {
        assert_eq!(
            sent["tool_choice"],
            json!({"type": "tool", "name": "city_info"})
        );
        assert_eq!(
            sent["tools"][0]["input_schema"]["required"],
            json!(["city", "country"])
        );
        assert!(sent.get("response_format").is_none());
    } else {
        assert_eq!(sent["response_format"]["type"], "json_schema");
        assert_eq!(sent["response_format"]["json_schema"]["name"], "city_info");
        assert_eq!(sent["response_format"]["json_schema"]["strict"], true);
    }
}

async fn errors(kind: &'static str) {
    let h = harness(kind).await;
    let refused = h
        .provider
        .chat(&capital_question("error-401"))
        .await
        .unwrap_err();
    match &refused {
        LlmError::Upstream {
            status,
            body,
            attempt,
            ..
        } => {
            assert_eq!(*status, 401);
            assert_eq!(*attempt, 1);
            assert!(!body.contains(TEST_KEY), "key redacted from {body}");
            assert!(body.contains("[REDACTED]"), "{body}");
        }
        other => panic!("expected an upstream error, got {other:?}"),
    }
    assert!(!refused.is_retryable());
    assert!(!refused.to_string().contains(TEST_KEY));

    let limited = h
        .provider
        .chat(&capital_question("error-429"))
        .await
        .unwrap_err();
    assert_eq!(limited.status(), Some(429));
    assert!(limited.is_retryable());
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(20)));
    assert_eq!(limited.status_hint(), 429);

    let Err(stream_error) = h.provider.stream(&capital_question("error-429")).await else {
        panic!("a refused stream must fail before the first delta");
    };
    assert_eq!(stream_error.status(), Some(429));

    let missing = h
        .provider
        .chat(&capital_question("no-such-scenario"))
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404));
    assert!(!missing.is_retryable());
}

async fn usage(kind: &'static str) {
    let h = harness(kind).await;
    let counted = h
        .provider
        .chat(&capital_question("no-usage"))
        .await
        .unwrap();
    assert_eq!(
        counted.usage.exactness,
        Exactness::Estimate,
        "unknown model: flagged as estimate"
    );
    assert!(counted.usage.input_tokens > 10);
    assert!(counted.usage.output_tokens >= 7);
    let (streamed, _) =
        stream_to_response(h.provider.as_ref(), &capital_question("no-usage")).await;
    assert_eq!(streamed.usage.exactness, Exactness::Estimate);
    assert_eq!(streamed.usage.input_tokens, counted.usage.input_tokens);
    assert_eq!(streamed.usage.output_tokens, counted.usage.output_tokens);
    let reported = h.provider.chat(&capital_question("chat")).await.unwrap();
    assert_eq!(reported.usage.exactness, Exactness::Exact);
    assert_eq!(reported.usage.total_tokens(), 32);
}

async fn embeddings(kind: &'static str) {
    let h = harness(kind).await;
    let request = EmbeddingRequest {
        model: "embedder".into(),
        input: vec!["first text".into(), "second text".into()],
        ..EmbeddingRequest::default()
    };
    let result = h.provider.embed(&request).await;
    assert_eq!(h.provider.capabilities().embeddings, result.is_ok());
    match result {
        Ok(response) => {
            assert_eq!(
                response.embeddings,
                vec![vec![0.5, 0.25, -0.75], vec![0.25, -0.5, 0.125]]
            );
            assert_eq!(response.usage, Usage::reported(6, 0, 0));
            let sent = h.server.last().body;
            assert_eq!(sent["input"], json!(["first text", "second text"]));
        }
        Err(error) => assert!(matches!(error, LlmError::Unsupported { .. }), "{error}"),
    }
}

async fn list_models(kind: &'static str) {
    let h = harness(kind).await;
    let models = h.provider.list_models().await.unwrap();
    assert!(!models.is_empty());
    match h.kind {
        "ollama" => {
            assert_eq!(models[0].id, "llama3.2:latest");
            assert_eq!(models[0].size_bytes, Some(2_019_393_189));
            assert_eq!(h.server.last().path, "/api/tags");
        }
        "anthropic" => assert_eq!(models[0].id, "claude-3-5-haiku-20241022"),
        _ => assert_eq!(models[0].id, "gpt-4o-mini"),
    }
}

macro_rules! conformance {
    ($kind:ident) => {
        mod $kind {
            #[tokio::test]
            async fn chat() {
                super::chat(stringify!($kind)).await
            }
            #[tokio::test]
            async fn stream() {
                super::stream(stringify!($kind)).await
            }
            #[tokio::test]
            async fn tools() {
                super::tools(stringify!($kind)).await
            }
            #[tokio::test]
            async fn json_mode() {
                super::json_mode(stringify!($kind)).await
            }
            #[tokio::test]
            async fn errors() {
                super::errors(stringify!($kind)).await
            }
            #[tokio::test]
            async fn usage() {
                super::usage(stringify!($kind)).await
            }
            #[tokio::test]
            async fn embeddings() {
                super::embeddings(stringify!($kind)).await
            }
            #[tokio::test]
            async fn list_models() {
                super::list_models(stringify!($kind)).await
            }
        }
    };
}

conformance!(openai);
conformance!(anthropic);
conformance!(ollama);
