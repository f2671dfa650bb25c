//! The Anthropic Messages adapter: system hoisting and `tool_use`/`tool_result` blocks through
//! the core's conversion, streaming events mapped to the common deltas, JSON output by forcing a
//! tool whose input schema is the requested schema, and prompt-cache usage mapped to cached tokens.

use std::collections::HashMap;

use async_trait::async_trait;
use http::HeaderMap;
use promptops_core::anthropic::{ContentBlock, message_from_response, to_anthropic};
use promptops_core::generation::ResponseFormat;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::LlmError;
use crate::http::{EventDecoder, Upstream, UsageFallback, delta_stream, headers, join_url};
use crate::openai::{RemoteSettings, from_value, output_text};
use crate::provider::{DeltaStream, Provider, ProviderKind};
use crate::sse::SseEvent;
use crate::types::{
    Capabilities, ChatRequest, ChatResponse, Choice, EmbeddingRequest, EmbeddingResponse,
    FinishReason, ModelInfo, StreamDelta, ToolChoice, Usage, assistant_message,
};
use crate::usage::count_usage;

/// Where the Anthropic API lives; the default `base_url` of kind `anthropic`.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// The API version header sent with every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` sent when the request sets none (Anthropic requires the field).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
/// The tool name forced for `response_format: json_object` (no schema name to use).
pub const JSON_OBJECT_TOOL: &str = "json_response";

/// Anthropic's Messages API.
#[derive(Clone)]
pub struct AnthropicProvider {
    upstream: Upstream,
    base_url: String,
}

/// The wire body of a request and the tool forced to obtain JSON, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicBody {
    /// The JSON body.
    pub body: Value,
    /// The tool whose input is the JSON reply (for `response_format`), if one was forced.
    pub forced_tool: Option<String>,
}

impl AnthropicProvider {
    /// A provider for `settings.base_url` (the host root, with or without `/v1`).
    pub fn new(settings: &RemoteSettings) -> Result<AnthropicProvider, LlmError> {
        Ok(AnthropicProvider {
            upstream: Upstream::new(settings)?,
            base_url: settings.base_url.clone(),
        })
    }

    fn url(&self, path: &str) -> String {
        let base = self.base_url.trim_end_matches('/');
        if base.ends_with("/v1") {
            join_url(base, path)
        } else {
            join_url(&join_url(base, "v1"), path)
        }
    }

    fn request_headers(&self) -> Result<HeaderMap, LlmError> {
        let mut pairs = vec![("anthropic-version", ANTHROPIC_VERSION)];
        if let Some(key) = &self.upstream.api_key {
            pairs.push(("x-api-key", key));
        }
        headers(&self.upstream.provider, &pairs)
    }

    fn invalid_request(&self, reason: impl Into<String>) -> LlmError {
        LlmError::InvalidRequest {
            provider: self.upstream.provider.clone(),
            reason: reason.into(),
        }
    }

    /// The Messages API body for `request`.
    pub fn request_body(
        &self,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<AnthropicBody, LlmError> {
        let generation = &request.generation;
        if generation.n().is_some_and(|n| n > 1) {
            return Err(LlmError::Unsupported {
                provider: self.upstream.provider.clone(),
                feature: "n > 1 (several completions per request)".to_owned(),
            });
        }
        let parts = to_anthropic(&request.messages, &request.tools)
            .map_err(|error| self.invalid_request(error.to_string()))?;
        if parts.messages.is_empty() {
            return Err(
                self.invalid_request("messages: at least one user or assistant message is needed")
            );
        }
        let mut body = Map::new();
        body.insert("model".into(), Value::from(request.model.clone()));
        body.insert(
            "max_tokens".into(),
            Value::from(generation.max_tokens().unwrap_or(DEFAULT_MAX_TOKENS)),
        );
        let mut conversation = serde_json::to_value(&parts)
            .map_err(|error| self.invalid_request(format!("cannot serialise messages: {error}")))?;
        if let Value::Object(fields) = &mut conversation {
            body.append(fields);
        }
        if let Some(temperature) = generation.temperature() {
            body.insert("temperature".into(), Value::from(temperature.min(1.0)));
        }
        if let Some(top_p) = generation.top_p() {
            body.insert("top_p".into(), Value::from(top_p));
        }
        if let Some(top_k) = generation.top_k() {
            body.insert("top_k".into(), Value::from(top_k));
        }
        if let Some(stop) = generation.stop() {
            body.insert("stop_sequences".into(), Value::from(stop.to_vec()));
        }
        let mut tool_choice = request.tool_choice.as_ref().map(|choice| match choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
        });
        let forced_tool = match request.response_format() {
            None | Some(ResponseFormat::Text) => None,
            Some(format) => {
                let (name, description, schema) = match format {
                    ResponseFormat::JsonSchema { json_schema } => (
                        json_schema.name.clone(),
                        json_schema.description.clone(),
                        json_schema
                            .schema
                            .clone()
                            .unwrap_or_else(|| json!({"type": "object"})),
                    ),
                    _ => (JSON_OBJECT_TOOL.to_owned(), None, json!({"type": "object"})),
                };
                if schema.get("type").and_then(Value::as_str) != Some("object") {
                    return Err(self.invalid_request(
                        "response_format.json_schema.schema: Anthropic returns JSON through a forced \
                         tool call, whose input must be an object schema (`\"type\": \"object\"`)",
                    ));
                }
                let description = description.unwrap_or_else(|| {
                    "Give the reply by calling this tool; its input is the reply.".to_owned()
                });
                let tools = body
                    .entry("tools")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(tools) = tools {
                    tools.push(
                        json!({"name": name, "description": description, "input_schema": schema}),
                    );
                }
                tool_choice = Some(json!({"type": "tool", "name": name}));
                Some(name)
            }
        };
        if request.parallel_tool_calls == Some(false) {
            let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
            if let Value::Object(choice) = choice {
                choice.insert("disable_parallel_tool_use".into(), Value::Bool(true));
            }
        }
        if let Some(choice) = tool_choice {
            body.insert("tool_choice".into(), choice);
        }
        if stream {
            body.insert("stream".into(), Value::Bool(true));
        }
        mark_cache_breakpoint(&mut body);
        for (key, value) in &request.extra {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
        Ok(AnthropicBody {
            body: Value::Object(body),
            forced_tool,
        })
    }

    /// Reads a Messages API response.
    pub fn parse_response(
        &self,
        request: &ChatRequest,
        forced_tool: Option<&str>,
        raw: Value,
    ) -> Result<ChatResponse, LlmError> {
        let reply: MessagesReply = from_value(&self.upstream, "messages response", &raw)?;
        let mut forced_json = None;
        let mut blocks = Vec::with_capacity(reply.content.len());
        for block in reply.content {
            match block {
                ContentBlock::ToolUse { name, input, .. } if Some(name.as_str()) == forced_tool => {
                    forced_json = Some(input.to_string());
                }
                ContentBlock::Other(value) if is_thinking(&value) => {}
                other => blocks.push(other),
            }
        }
        let (message, finish_reason) = match forced_json {
            Some(json) => (assistant_message(Some(json)), FinishReason::Stop),
            None => {
                let message = message_from_response(&blocks)
                    .map_err(|error| self.upstream.invalid(format!("messages response {error}")))?;
                let reason = reply
                    .stop_reason
                    .as_deref()
                    .map(FinishReason::from_anthropic)
                    .unwrap_or(FinishReason::Stop);
                (message, reason)
            }
        };
        let usage = match reply.usage {
            Some(usage) => usage.normalise(),
            None => count_usage(
                &request.model,
                &request.messages,
                &request.tools,
                &output_text(&message),
            ),
        };
        Ok(ChatResponse {
            id: reply.id.unwrap_or_else(|| "msg-unknown".to_owned()),
            provider: self.upstream.provider.clone(),
            model: reply.model.unwrap_or_else(|| request.model.clone()),
            choices: vec![Choice {
                index: 0,
                message,
                finish_reason,
                logprobs: None,
            }],
            usage,
            system_fingerprint: None,
            raw: raw.into(),
        })
    }
}

/// Whether a block is extended-thinking output, which has no place in an OpenAI message.
fn is_thinking(block: &Value) -> bool {
    matches!(
        block.get("type").and_then(Value::as_str),
        Some("thinking" | "redacted_thinking")
    )
}

#[derive(Deserialize)]
struct MessagesReply {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    content: Vec<ContentBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

/// Anthropic's `usage` object: `input_tokens` excludes the cached part.
#[derive(Deserialize, Default, Clone, Copy)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Input counts everything the prompt used (fresh, cache writes and cache reads); cached is
    /// what was read from the cache, cache writes what this request wrote to it.
    fn normalise(&self) -> Usage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        let written = self.cache_creation_input_tokens.unwrap_or(0);
        let input = self.input_tokens.unwrap_or(0) + written + cached;
        Usage::reported(input, self.output_tokens.unwrap_or(0), cached).with_cache_writes(written)
    }

    /// Later figures (from `message_delta`) replace earlier ones where present.
    fn update(&mut self, later: AnthropicUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }
}

/// What a content block of a stream turns into.
#[derive(Debug, Clone, Copy)]
enum BlockRole {
    Text,
    Tool(u32),
    ForcedJson,
    Ignored,
}

/// Decodes Anthropic streaming events (`message_start` ... `message_stop`).
pub(crate) struct AnthropicDecoder {
    provider: String,
    forced_tool: Option<String>,
    blocks: HashMap<u64, BlockRole>,
    tool_calls: u32,
    usage: Option<AnthropicUsage>,
    stop_reason: Option<String>,
    done: bool,
}

impl AnthropicDecoder {
    pub(crate) fn new(provider: &str, forced_tool: Option<String>) -> Self {
        AnthropicDecoder {
            provider: provider.to_owned(),
            forced_tool,
            blocks: HashMap::new(),
            tool_calls: 0,
            usage: None,
            stop_reason: None,
            done: false,
        }
    }

    fn invalid(&self, reason: String) -> LlmError {
        LlmError::InvalidResponse {
            provider: self.provider.clone(),
            reason,
            attempt: 1,
        }
    }

    fn merge_usage(&mut self, value: Option<&Value>) -> Result<(), LlmError> {
        if let Some(value) = value.filter(|value| !value.is_null()) {
            let later: AnthropicUsage = serde_json::from_value(value.clone())
                .map_err(|error| self.invalid(format!("stream usage: {error}")))?;
            self.usage.get_or_insert_default().update(later);
        }
        Ok(())
    }
}

impl EventDecoder for AnthropicDecoder {
    fn decode(&mut self, event: SseEvent) -> Result<Vec<StreamDelta>, LlmError> {
        let data: Value = serde_json::from_str(&event.data).map_err(|error| {
            self.invalid(format!(
                "stream event is not JSON ({error}): {}",
                crate::error::redact(&event.data[..event.data.len().min(256)], &[])
            ))
        })?;
        let kind = event
            .event
            .clone()
            .or_else(|| data.get("type").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        let mut deltas = Vec::new();
        match kind.as_str() {
            "message_start" => {
                self.merge_usage(data.get("message").and_then(|message| message.get("usage")))?;
            }
            "content_block_start" => {
                let block = data.get("content_block").cloned().unwrap_or(Value::Null);
                let text_of = |key: &str| block.get(key).and_then(Value::as_str).map(str::to_owned);
                let role = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(text) = text_of("text").filter(|text| !text.is_empty()) {
                            deltas.push(StreamDelta::Text { choice: 0, text });
                        }
                        BlockRole::Text
                    }
                    Some("tool_use")
                        if text_of("name") == self.forced_tool && self.forced_tool.is_some() =>
                    {
                        BlockRole::ForcedJson
                    }
                    Some("tool_use") => {
                        let call = self.tool_calls;
                        self.tool_calls += 1;
                        deltas.push(StreamDelta::ToolCall {
                            choice: 0,
                            index: call,
                            id: text_of("id"),
                            name: text_of("name"),
                            arguments: String::new(),
                        });
                        BlockRole::Tool(call)
                    }
                    _ => BlockRole::Ignored,
                };
                self.blocks.insert(index, role);
            }
            "content_block_delta" => {
                let delta = data.get("delta").cloned().unwrap_or(Value::Null);
                let piece = match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => delta.get("text"),
                    Some("input_json_delta") => delta.get("partial_json"),
                    _ => None,
                }
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
                match self.blocks.get(&index).copied() {
                    _ if piece.is_empty() => {}
                    Some(BlockRole::Text | BlockRole::ForcedJson) => {
                        deltas.push(StreamDelta::Text {
                            choice: 0,
                            text: piece,
                        });
                    }
                    Some(BlockRole::Tool(call)) => deltas.push(StreamDelta::ToolCall {
                        choice: 0,
                        index: call,
                        id: None,
                        name: None,
                        arguments: piece,
                    }),
                    Some(BlockRole::Ignored) => {}
                    None => {
                        return Err(self.invalid(format!(
                            "content_block_delta for block {index}, which never started"
                        )));
                    }
                }
            }
            "message_delta" => {
                if let Some(reason) = data
                    .get("delta")
                    .and_then(|delta| delta.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.stop_reason = Some(reason.to_owned());
                }
                self.merge_usage(data.get("usage"))?;
            }
            "message_stop" => {
                self.done = true;
                let forced = self
                    .blocks
                    .values()
                    .any(|role| matches!(role, BlockRole::ForcedJson));
                let reason = match self.stop_reason.as_deref() {
                    _ if forced => FinishReason::Stop,
                    Some(reason) => FinishReason::from_anthropic(reason),
                    None => FinishReason::Stop,
                };
                deltas.push(StreamDelta::Finish { choice: 0, reason });
                if let Some(usage) = &self.usage {
                    deltas.push(StreamDelta::Usage(usage.normalise()));
                }
            }
            "error" => {
                let error = data.get("error").cloned().unwrap_or(Value::Null);
                let kind = error.get("type").and_then(Value::as_str).unwrap_or("error");
                let message = error.get("message").and_then(Value::as_str).unwrap_or("");
                return Err(LlmError::Stream {
                    provider: self.provider.clone(),
                    reason: crate::error::redact(&format!("{kind}: {message}"), &[]),
                    transient: matches!(kind, "overloaded_error" | "api_error"),
                    attempt: 1,
                });
            }
            _ => {}
        }
        Ok(deltas)
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.upstream.provider
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            json_schema: true,
            logprobs: false,
            seed: false,
            vision: true,
            streaming: true,
            embeddings: false,
            multiple_choices: false,
        }
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = self.request_body(request, false)?;
        let url = self.url("messages");
        let response = self
            .upstream
            .post_json(&url, self.request_headers()?, &body.body)
            .await?;
        let raw = self.upstream.read_json(&url, response).await?;
        self.parse_response(request, body.forced_tool.as_deref(), raw)
    }

    async fn stream(&self, request: &ChatRequest) -> Result<DeltaStream, LlmError> {
        let body = self.request_body(request, true)?;
        let url = self.url("messages");
        let response = self
            .upstream
            .post_json(&url, self.request_headers()?, &body.body)
            .await?;
        Ok(delta_stream(
            &self.upstream.provider,
            response,
            AnthropicDecoder::new(&self.upstream.provider, body.forced_tool),
            UsageFallback {
                model: request.model.clone(),
                messages: request.messages.clone(),
                tools: request.tools.clone(),
            },
        ))
    }

    async fn embed(&self, _request: &EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        Err(LlmError::Unsupported {
            provider: self.upstream.provider.clone(),
            feature: "embeddings (Anthropic has no embeddings API)".to_owned(),
        })
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, LlmError> {
        let url = self.url("models");
        let response = self.upstream.get(&url, self.request_headers()?).await?;
        let raw = self.upstream.read_json(&url, response).await?;
        let list: ModelList = from_value(&self.upstream, "model list", &raw)?;
        let entries = raw
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(list
            .data
            .into_iter()
            .zip(entries)
            .map(|(entry, raw)| ModelInfo {
                id: entry.id,
                size_bytes: None,
                raw,
            })
            .collect())
    }
}

/// Anthropic caches a prompt prefix (tools, then system) only up to a block marked with
/// `cache_control`, and only from about 1024 tokens on (2048 on Haiku); shorter marked prefixes
/// are simply not cached. ~4 bytes per token.
const CACHEABLE_PREFIX_BYTES: usize = 4 * 1024;

/// Prefix caching hint: marks the end of the stable prefix — the first system block (the
/// application's system prompt; the runtime puts per-request instructions such as canaries in
/// later system blocks) or, when the system prompt is short, the last tool — as an ephemeral
/// cache breakpoint when the prefix is long enough to be cached. Hits come back as
/// `cache_read_input_tokens`, reported as cached tokens and priced as such.
fn mark_cache_breakpoint(body: &mut Map<String, Value>) {
    let breakpoint = json!({"type": "ephemeral"});
    let first_system_bytes = match body.get("system") {
        Some(Value::String(text)) => text.len(),
        Some(Value::Array(blocks)) => blocks
            .first()
            .and_then(|block| block.get("text"))
            .and_then(Value::as_str)
            .map_or(0, str::len),
        _ => 0,
    };
    // The tools are measured (serialised) only when the system prompt alone is too short.
    let tools_bytes = if first_system_bytes < CACHEABLE_PREFIX_BYTES {
        body.get("tools").map_or(0, |tools| tools.to_string().len())
    } else {
        0
    };
    if first_system_bytes > 0 && tools_bytes + first_system_bytes >= CACHEABLE_PREFIX_BYTES {
        if let Some(system) = body.get_mut("system") {
            match system {
                Value::String(text) => {
                    let text = std::mem::take(text);
                    *system = json!([{"type": "text", "text": text, "cache_control": breakpoint}]);
                }
                Value::Array(blocks) => {
                    if let Some(Value::Object(first)) = blocks.first_mut() {
                        first.insert("cache_control".into(), breakpoint);
                    }
                }
                _ => {}
            }
        }
    } else if tools_bytes >= CACHEABLE_PREFIX_BYTES
        && let Some(Value::Array(tools)) = body.get_mut("tools")
        && let Some(Value::Object(last)) = tools.last_mut()
    {
        last.insert("cache_control".into(), breakpoint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promptops_core::generation::GenerationConfig;
    use promptops_core::message::Message;

    fn provider() -> AnthropicProvider {
        AnthropicProvider::new(&RemoteSettings {
            name: "claude".into(),
            base_url: "http://127.0.0.1:1".into(),
            api_key: Some("sk-ant-test-key-0000000000".into()),
            api_key_env: None,
        })
        .unwrap()
    }

    #[test]
    fn hoists_system_clamps_temperature_and_forces_a_tool_for_json() {
        let mut request = ChatRequest::new(
            "claude-3-5-haiku-latest",
            vec![
                Message::system("Be terse."),
                Message::user("Name a colour."),
            ],
        );
        request.generation = GenerationConfig::builder()
            .temperature(1.5)
            .stop(["\n\n"])
            .response_format(ResponseFormat::json_schema(
                "colour",
                json!({"type": "object", "properties": {"name": {"type": "string"}}}),
            ))
            .build()
            .unwrap();
        let body = provider().request_body(&request, false).unwrap();
        assert_eq!(body.forced_tool.as_deref(), Some("colour"));
        assert_eq!(body.body["system"], "Be terse.");
        assert_eq!(body.body["temperature"], 1.0);
        assert_eq!(body.body["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(body.body["stop_sequences"], json!(["\n\n"]));
        assert_eq!(
            body.body["tool_choice"],
            json!({"type": "tool", "name": "colour"})
        );
        assert_eq!(body.body["tools"][0]["name"], "colour");
    }

    #[test]
    fn refuses_what_it_cannot_express() {
        let mut request = ChatRequest::new("claude", vec![Message::user("hi")]);
        request.generation = GenerationConfig::builder().n(2).build().unwrap();
        assert!(matches!(
            provider().request_body(&request, false),
            Err(LlmError::Unsupported { .. })
        ));
        request.generation = GenerationConfig::builder()
            .response_format(ResponseFormat::json_schema(
                "list",
                json!({"type": "array"}),
            ))
            .build()
            .unwrap();
        let error = provider().request_body(&request, false).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("response_format.json_schema.schema")
        );
        let only_system = ChatRequest::new("claude", vec![Message::system("x")]);
        assert!(provider().request_body(&only_system, false).is_err());
    }

    #[test]
    fn long_stable_system_prompts_are_marked_as_cache_breakpoints() {
        let long = "You are the support assistant of Example Corp. ".repeat(120);
        let request = ChatRequest::new(
            "claude",
            vec![
                Message::system(long.clone()),
                Message::system("Per-request canary: CANARY-1234"),
                Message::user("hi"),
            ],
        );
        let body = provider().request_body(&request, false).unwrap().body;
        let system = body["system"].as_array().unwrap();
        assert_eq!(system[0]["text"], long.as_str());
        assert_eq!(system[0]["cache_control"], json!({"type": "ephemeral"}));
        assert!(system[1].get("cache_control").is_none());
        // Short prompts are not worth a cache write: left as they were.
        let short = ChatRequest::new(
            "claude",
            vec![Message::system("Be terse."), Message::user("hi")],
        );
        let body = provider().request_body(&short, false).unwrap().body;
        assert_eq!(body["system"], "Be terse.");
    }

    #[test]
    fn maps_cache_usage_to_cached_tokens() {
        let usage = AnthropicUsage {
            input_tokens: Some(10),
            output_tokens: Some(5),
            cache_creation_input_tokens: Some(100),
            cache_read_input_tokens: Some(1000),
        };
        assert_eq!(
            usage.normalise(),
            Usage::reported(1110, 5, 1000).with_cache_writes(100)
        );
    }
}
