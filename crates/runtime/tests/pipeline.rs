//! The pipeline without HTTP: an in-process provider behind the real llm Router, a real
//! registry on a temp SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use promptops_core::message::{Message, Role};
use promptops_llm::{
    Capabilities, ChatRequest, ChatResponse, Choice, DeltaStream, EmbeddingRequest,
    EmbeddingResponse, FinishReason, LlmConfig, LlmError, ModelInfo, Provider, ProviderKind,
    ProviderSet, Router, RouterOptions, StreamAccumulator, StreamDelta, Usage,
};
use promptops_registry::Registry;
use promptops_registry::version::{Bump, MessageTemplate, PromptContent};
use promptops_runtime::{ChatCall, OutputCheck, Runtime, RuntimeError};
use serde_json::{Value, json};

/// Answers with the JSON of the messages it received.
struct Echo;

fn reply(request: &ChatRequest) -> String {
    serde_json::to_string(&request.messages).unwrap()
}

#[async_trait]
impl Provider for Echo {
    fn name(&self) -> &str {
        "fake"
    }
    fn kind(&self) -> ProviderKind {
        ProviderKind::Local
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            json_schema: true,
            logprobs: false,
            seed: true,
            vision: false,
            streaming: true,
            embeddings: true,
            multiple_choices: false,
        }
    }
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        Ok(ChatResponse {
            id: "chatcmpl-echo".into(),
            provider: "fake".into(),
            model: request.model.clone(),
            choices: vec![Choice {
                index: 0,
                message: Message::assistant(reply(request)),
                finish_reason: FinishReason::Stop,
                logprobs: None,
            }],
            usage: Usage::reported(1000, 500, 400),
            raw: Value::Null,
        })
    }
    async fn stream(&self, request: &ChatRequest) -> Result<DeltaStream, LlmError> {
        let text = reply(request);
        let mut deltas: Vec<Result<StreamDelta, LlmError>> = text
            .as_bytes()
            .chunks(5)
            .map(|c| {
                Ok(StreamDelta::Text {
                    choice: 0,
                    text: String::from_utf8_lossy(c).into_owned(),
                })
            })
            .collect();
        deltas.push(Ok(StreamDelta::Finish {
            choice: 0,
            reason: FinishReason::Stop,
        }));
        deltas.push(Ok(StreamDelta::Usage(Usage::reported(10, 5, 0))));
        Ok(Box::pin(futures_util::stream::iter(deltas)))
    }
    async fn embed(&self, request: &EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        Ok(EmbeddingResponse {
            provider: "fake".into(),
            model: request.model.clone(),
            embeddings: request.input.iter().map(|_| vec![1.0, 0.0]).collect(),
            usage: Usage::reported(2, 0, 0),
            raw: Value::Null,
        })
    }
    async fn list_models(&self) -> Result<Vec<ModelInfo>, LlmError> {
        Ok(vec![ModelInfo {
            id: "gpt-4o-mini".into(),
            size_bytes: None,
            raw: Value::Null,
        }])
    }
}

fn router() -> Arc<Router> {
    let mut providers = ProviderSet::new();
    providers.insert(Arc::new(Echo));
    Arc::new(Router::new(providers, &LlmConfig::default(), RouterOptions::default()).unwrap())
}

async fn registry(dir: &tempfile::TempDir) -> Registry {
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    Registry::open(&url).await.unwrap()
}

fn call(model: &str, vars: Option<Value>) -> ChatCall {
    ChatCall {
        request_id: "req-1".into(),
        model: model.into(),
        request: ChatRequest::new("", vec![Message::user("hello")]),
        prompt_variables: vars.map(|v| v.as_object().unwrap().clone()),
    }
}

#[tokio::test]
async fn direct_calls_are_priced_with_cached_tokens() {
    let runtime = Runtime::builder(router()).build().unwrap();
    let outcome = runtime.chat(call("fake/gpt-4o-mini", None)).await.unwrap();
    assert_eq!(outcome.target.to_string(), "fake/gpt-4o-mini");
    assert_eq!(outcome.output_check, OutputCheck::NotChecked);
    let catalog = promptops_core::catalog::Catalog::builtin().unwrap();
    let expected = catalog
        .cost("gpt-4o-mini", 1000, 500, 400)
        .unwrap()
        .total_usd;
    assert!((outcome.cost_usd.unwrap() - expected).abs() < 1e-12);
    let uncached = catalog.cost("gpt-4o-mini", 1000, 500, 0).unwrap().total_usd;
    assert!(expected < uncached, "cached tokens are cheaper");
    let error = runtime.chat(call("nobody/x", None)).await.unwrap_err();
    assert_eq!(error.http_status(), 404);
    let error = runtime
        .chat(call("fake/x", Some(json!({"a": 1}))))
        .await
        .unwrap_err();
    assert_eq!(error.param().as_deref(), Some("prompt_variables"));
}

#[tokio::test]
async fn prompt_calls_render_validate_and_record_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(&dir).await;
    let mut content = PromptContent::system_user(Some("System.".into()), "Hi {{ who }}".into());
    content.model = Some("fake/gpt-4o-mini".into());
    content.output_schema = Some(json!({"type": "array", "minItems": 2}));
    content.messages.push(MessageTemplate {
        role: Role::Assistant,
        template: "ok".into(),
    });
    registry
        .add_version("greet", content, Bump::Patch, "test", None)
        .await
        .unwrap();
    let routes = promptops_registry::live::load_router(registry.store().as_ref())
        .await
        .unwrap();
    let runtime = Runtime::builder(router())
        .registry(registry.clone(), Arc::new(routes))
        .build()
        .unwrap();
    let outcome = runtime
        .chat(call("prompt:greet", Some(json!({"who": "Ann"}))))
        .await
        .unwrap();
    assert_eq!(outcome.prompt.as_ref().unwrap().label(), "greet@1.0.0");
    assert_eq!(outcome.output_check, OutputCheck::Valid);
    let sent: Vec<Message> = serde_json::from_str(&outcome.response.text()).unwrap();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[1].text(), "Hi Ann");
    assert_eq!(sent[3].text(), "hello");

    let (meta, mut stream) = runtime
        .chat_stream(call("prompt:greet", Some(json!({"who": "Bo"}))))
        .await
        .unwrap();
    assert_eq!(meta.prompt.unwrap().label(), "greet@1.0.0");
    let mut accumulator = StreamAccumulator::new();
    while let Some(delta) = stream.next().await {
        accumulator.push(&delta.unwrap());
    }
    assert!(accumulator.output_text().contains("Hi Bo"));

    let missing = runtime.chat(call("prompt:greet", None)).await.unwrap_err();
    assert!(matches!(missing, RuntimeError::PromptVariables { .. }));
    assert_eq!(missing.param().as_deref(), Some("prompt_variables.who"));

    // Nothing reaches the store until the batch is flushed.
    let before = registry
        .metrics("greet", &"1.0.0".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(before.requests, 0);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = runtime.spawn_background(Duration::from_secs(3600), stop_rx, |e| panic!("{e}"));
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    let after = registry
        .metrics("greet", &"1.0.0".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(after.requests, 2);
    assert_eq!(after.successes, 2);
    assert_eq!(after.input_tokens, 1010);
    assert!(after.cost_total > 0.0);

    let models = runtime.models().await;
    let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["fake/gpt-4o-mini", "prompt:greet"]);
}

#[test]
fn replayed_deltas_rebuild_the_response() {
    let response = ChatResponse {
        id: "x".into(),
        provider: "p".into(),
        model: "m".into(),
        choices: vec![Choice {
            index: 0,
            message: Message {
                tool_calls: vec![promptops_core::message::ToolCall::function(
                    "call_1",
                    "f",
                    "{\"a\":1}",
                )],
                ..Message::assistant("text")
            },
            finish_reason: FinishReason::ToolCalls,
            logprobs: None,
        }],
        usage: Usage::reported(3, 4, 0),
        raw: Value::Null,
    };
    let mut accumulator = StreamAccumulator::new();
    for delta in response.to_deltas() {
        accumulator.push(&delta);
    }
    let rebuilt = accumulator.finish("x", "p", "m", Value::Null);
    assert_eq!(rebuilt.choices, response.choices);
    assert_eq!(rebuilt.usage, response.usage);
}
