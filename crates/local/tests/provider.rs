#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The provider conformance checks (chat, stream, tools, JSON, errors, usage, embeddings, model
//! listing) run live against the embedded models, built the way `serve` builds them: from a
//! `kind = "local"` config entry through a `LocalFactory`.

use std::sync::{Arc, OnceLock};

use futures_util::StreamExt;
use promptops_core::generation::{GenerationConfig, ResponseFormat};
use promptops_core::message::{Message, parse_tools};
use promptops_core::tokens::Exactness;
use promptops_llm::{
    ChatRequest, ChatResponse, EmbeddingRequest, FinishReason, LlmConfig, LlmError, Provider,
    ProviderConfig, ProviderKind, ProviderSet, StreamAccumulator, StreamDelta, ToolChoice,
};
use promptops_local::chat::ChatOptions;
use promptops_local::{LocalProvider, ModelCache};
use serde_json::{Value, json};

/// One provider for the whole test binary: loading the model once is what `serve` does too.
fn provider() -> Arc<dyn Provider> {
    static PROVIDER: OnceLock<Arc<dyn Provider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| {
        let config =
            LlmConfig::from_toml("[[providers]]\nname = \"offline\"\nkind = \"local\"\n").unwrap();
        let factory = |entry: &ProviderConfig| -> Result<Arc<dyn Provider>, LlmError> {
            let cache = ModelCache::from_env().unwrap();
            let provider = LocalProvider::from_cache(&entry.name, &cache, ChatOptions::default())
                .unwrap_or_else(|error| panic!("{error}"));
            Ok(Arc::new(provider))
        };
        let set = ProviderSet::from_config(&config, &|_| None, Some(&factory)).unwrap();
        Arc::clone(set.get("offline").unwrap())
    }))
}

fn greedy(max_tokens: u32) -> GenerationConfig {
    GenerationConfig::builder()
        .temperature(0.0)
        .max_tokens(max_tokens)
        .build()
        .unwrap()
}

fn capital_question() -> ChatRequest {
    let mut request = ChatRequest::new(
        "smollm2-135m",
        vec![
            Message::system("You are a helpful assistant."),
            Message::user("What is the capital of France?"),
        ],
    );
    request.generation = greedy(24);
    request
}

fn weather_request(choice: ToolChoice) -> ChatRequest {
    let mut request = ChatRequest::new(
        "smollm2-135m",
        vec![Message::user("What is the weather in Paris?")],
    );
    request.tools = parse_tools(
        &json!([{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "maxLength": 40}},
                    "required": ["city"],
                    "additionalProperties": false,
                },
            },
        }])
        .to_string(),
    )
    .unwrap();
    request.tool_choice = Some(choice);
    request.generation = greedy(64);
    request
}

async fn stream_to_response(request: &ChatRequest) -> (ChatResponse, Vec<StreamDelta>) {
    let provider = provider();
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

#[tokio::test]
async fn chat_answers_with_exact_usage() {
    let provider = provider();
    assert_eq!(provider.kind(), ProviderKind::Local);
    assert_eq!(provider.name(), "offline");
    let response = provider.chat(&capital_question()).await.unwrap();
    assert_eq!(response.provider, "offline");
    assert!(
        response.text().contains("Paris"),
        "greedy answer: {:?}",
        response.text()
    );
    assert!(response.usage.input_tokens > 10);
    assert!(response.usage.output_tokens > 0 && response.usage.output_tokens <= 24);
    assert_eq!(response.usage.exactness, Exactness::Exact);
    assert!(matches!(
        response.finish_reason(),
        Some(FinishReason::Stop | FinishReason::Length)
    ));
}

#[tokio::test]
async fn stream_reassembles_to_the_same_greedy_answer() {
    let request = capital_question();
    let whole = provider().chat(&request).await.unwrap();
    let (streamed, deltas) = stream_to_response(&request).await;
    assert_eq!(streamed.text(), whole.text());
    // Cached tokens differ: the second run reuses the first one's KV cache.
    assert_eq!(streamed.usage.input_tokens, whole.usage.input_tokens);
    assert_eq!(streamed.usage.output_tokens, whole.usage.output_tokens);
    assert!(
        deltas
            .iter()
            .filter(|delta| matches!(delta, StreamDelta::Text { .. }))
            .count()
            > 1,
        "text arrives in pieces: {deltas:?}"
    );
    assert!(matches!(deltas.last(), Some(StreamDelta::Usage(_))));
}

#[tokio::test]
async fn same_seed_same_sample() {
    let mut request = capital_question();
    request.generation = GenerationConfig::builder()
        .temperature(1.2)
        .seed(7)
        .max_tokens(16)
        .build()
        .unwrap();
    let first = provider().chat(&request).await.unwrap();
    let second = provider().chat(&request).await.unwrap();
    assert_eq!(first.text(), second.text());
}

#[tokio::test]
async fn required_tool_choice_gives_a_schema_valid_call() {
    let response = provider()
        .chat(&weather_request(ToolChoice::Required))
        .await
        .unwrap();
    assert_eq!(response.finish_reason(), Some(&FinishReason::ToolCalls));
    let calls = response.tool_calls();
    assert_eq!(calls.len(), 1, "{response:?}");
    assert_eq!(calls[0].function.name, "get_weather");
    assert!(calls[0].id.starts_with("call_"));
    let arguments: Value = serde_json::from_str(&calls[0].function.arguments).unwrap();
    assert!(arguments["city"].is_string(), "{arguments}");
    assert_eq!(response.message().unwrap().content, None);

    let (streamed, _) = stream_to_response(&weather_request(ToolChoice::Required)).await;
    assert_eq!(streamed.tool_calls()[0].function.name, "get_weather");
    assert_eq!(streamed.finish_reason(), Some(&FinishReason::ToolCalls));
}

#[tokio::test]
async fn auto_tool_choice_is_a_call_or_an_answer_and_none_ignores_tools() {
    let response = provider()
        .chat(&weather_request(ToolChoice::Auto))
        .await
        .unwrap();
    match response.tool_calls() {
        [] => assert!(!response.text().is_empty()),
        [call] => assert_eq!(call.function.name, "get_weather"),
        more => panic!("one call at most: {more:?}"),
    }
    let plain = provider()
        .chat(&weather_request(ToolChoice::None))
        .await
        .unwrap();
    assert!(plain.tool_calls().is_empty());
    assert!(!plain.text().is_empty());
}

#[tokio::test]
async fn json_schema_reply_always_validates() {
    let schema = json!({
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}, "country": {"type": "string", "maxLength": 30}},
        "required": ["city", "country"],
        "additionalProperties": false,
    });
    let mut request = capital_question();
    request.generation = GenerationConfig::builder()
        .temperature(0.0)
        .max_tokens(64)
        .response_format(ResponseFormat::json_schema("city_info", schema.clone()))
        .build()
        .unwrap();
    let response = provider().chat(&request).await.unwrap();
    let value: Value = serde_json::from_str(&response.text()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(&value), "{value}");
}

#[tokio::test]
async fn guided_regex_extension_constrains_the_reply() {
    let mut request = capital_question();
    request.generation = greedy(24);
    request.extra.insert(
        "guided_regex".to_owned(),
        json!("The capital is [A-Z][a-z]+\\."),
    );
    let response = provider().chat(&request).await.unwrap();
    let whole = regex::Regex::new(r"^The capital is [A-Z][a-z]+\.$").unwrap();
    assert!(whole.is_match(&response.text()), "{:?}", response.text());

    request
        .extra
        .insert("guided_regex".to_owned(), json!("(unclosed"));
    let error = provider().chat(&request).await.unwrap_err();
    assert!(
        matches!(error, LlmError::InvalidRequest { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("regex"), "{error}");
}

#[tokio::test]
async fn errors_name_what_is_unsupported_or_invalid() {
    let mut request = capital_question();
    request.generation = GenerationConfig::builder().n(2).build().unwrap();
    let error = provider().chat(&request).await.unwrap_err();
    assert!(matches!(error, LlmError::Unsupported { .. }), "{error:?}");
    assert!(error.to_string().contains("n > 1"), "{error}");
    assert!(!error.is_retryable());

    let mut request = capital_question();
    request.generation = GenerationConfig::builder()
        .response_format(ResponseFormat::json_schema(
            "broken",
            json!({"type": "object", "properties": {"a": {"$ref": "#/definitions/missing"}}}),
        ))
        .build()
        .unwrap();
    let error = provider().chat(&request).await.unwrap_err();
    assert!(
        matches!(error, LlmError::InvalidRequest { .. }),
        "{error:?}"
    );

    let request = ChatRequest::new("smollm2-135m", Vec::new());
    let error = provider().chat(&request).await.unwrap_err();
    assert!(
        matches!(error, LlmError::InvalidRequest { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn logprobs_come_back_in_the_openai_shape() {
    let mut request = capital_question();
    request.generation = GenerationConfig::builder()
        .temperature(0.0)
        .max_tokens(4)
        .logprobs(true)
        .top_logprobs(2)
        .build()
        .unwrap();
    let response = provider().chat(&request).await.unwrap();
    let logprobs = response.choices[0].logprobs.as_ref().unwrap();
    let content = logprobs["content"].as_array().unwrap();
    assert_eq!(content.len() as u64, response.usage.output_tokens);
    for entry in content {
        assert!(entry["logprob"].as_f64().unwrap() <= 0.0);
        assert_eq!(entry["top_logprobs"].as_array().unwrap().len(), 2);
    }
}

#[tokio::test]
async fn embeddings_are_unit_vectors_in_input_order() {
    let provider = provider();
    assert!(provider.capabilities().embeddings);
    let request = EmbeddingRequest {
        model: "all-minilm-l6-v2".to_owned(),
        input: vec![
            "The cat sits on the mat.".to_owned(),
            "A cat is sitting on a mat.".to_owned(),
            "Quarterly revenue grew by 4%.".to_owned(),
        ],
        ..EmbeddingRequest::default()
    };
    let response = provider.embed(&request).await.unwrap();
    assert_eq!(response.embeddings.len(), 3);
    for vector in &response.embeddings {
        assert_eq!(vector.len(), 384);
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let (cat, cat2, revenue) = (
        &response.embeddings[0],
        &response.embeddings[1],
        &response.embeddings[2],
    );
    assert!(dot(cat, cat2) > dot(cat, revenue));
    assert!(response.usage.input_tokens > 0);

    let wrong = EmbeddingRequest {
        dimensions: Some(128),
        ..request
    };
    let error = provider.embed(&wrong).await.unwrap_err();
    assert!(error.to_string().contains("384"), "{error}");
}

#[tokio::test]
async fn lists_both_models() {
    let models = provider().list_models().await.unwrap();
    let ids: Vec<&str> = models.iter().map(|model| model.id.as_str()).collect();
    assert_eq!(ids, ["smollm2-135m", "all-minilm-l6-v2"]);
    assert!(models[0].size_bytes.unwrap() > 90_000_000);
}
