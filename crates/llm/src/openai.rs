//! The OpenAI-compatible adapter: chat completions (tools, parallel tool calls, `response_format`,
//! logprobs, seed, stop, `n`), streamed chunks, embeddings and `/models`, for OpenAI itself and
//! the many servers that speak its API (vLLM, Together, Groq, LM Studio, Ollama's `/v1`).

use async_trait::async_trait;
use http::HeaderMap;
use promptops_core::message::Message;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::LlmError;
use crate::http::{
    EventDecoder, Upstream, UpstreamResponse, UsageFallback, delta_stream, headers, join_url,
};
use crate::provider::{DeltaStream, Provider, ProviderKind};
use crate::sse::SseEvent;
use crate::types::{
    Capabilities, ChatRequest, ChatResponse, Choice, EmbeddingRequest, EmbeddingResponse,
    FinishReason, ModelInfo, RawPayload, StreamDelta, Usage,
};
use crate::usage::{count_embedding_usage, count_usage};

/// Where the official OpenAI API lives; the default `base_url` of kind `openai`.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// What a remote provider needs to be built: its name, base URL and key.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteSettings {
    /// The provider name (the `PROVIDER` of `PROVIDER/MODEL`).
    pub name: String,
    /// The API root, e.g. `http://127.0.0.1:18080/v1`.
    pub base_url: String,
    /// The API key, if any.
    pub api_key: Option<String>,
    /// The environment variable the key was read from, named in authentication errors.
    pub api_key_env: Option<String>,
}

impl std::fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSettings")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("api_key_env", &self.api_key_env)
            .finish()
    }
}

/// An OpenAI-compatible chat completions API.
#[derive(Clone)]
pub struct OpenAiProvider {
    upstream: Upstream,
    base_url: String,
    /// `BASE/chat/completions`, and that parsed once (`None` when it does not parse: each
    /// call then fails with the parse error).
    chat_url: String,
    chat_uri: Option<http::Uri>,
    kind: ProviderKind,
    capabilities: Capabilities,
}

/// Everything an OpenAI-compatible server can do.
const OPENAI_CAPABILITIES: Capabilities = Capabilities {
    tools: true,
    json_schema: true,
    logprobs: true,
    seed: true,
    vision: true,
    streaming: true,
    embeddings: true,
    multiple_choices: true,
};

impl OpenAiProvider {
    /// A provider talking to `settings.base_url` (the root that `/chat/completions` hangs off).
    pub fn new(settings: &RemoteSettings) -> Result<OpenAiProvider, LlmError> {
        OpenAiProvider::with_kind(settings, ProviderKind::OpenAi, OPENAI_CAPABILITIES)
    }

    /// The adapter serving another kind (Ollama) through the same wire format.
    pub(crate) fn with_kind(
        settings: &RemoteSettings,
        kind: ProviderKind,
        capabilities: Capabilities,
    ) -> Result<OpenAiProvider, LlmError> {
        let chat_url = join_url(&settings.base_url, "chat/completions");
        Ok(OpenAiProvider {
            upstream: Upstream::new(settings)?,
            base_url: settings.base_url.clone(),
            chat_uri: chat_url.parse::<http::Uri>().ok(),
            chat_url,
            kind,
            capabilities,
        })
    }

    /// POSTs a chat completions body; gives the response and the URL it went to.
    async fn post_chat(&self, body: Vec<u8>) -> Result<(UpstreamResponse, &str), LlmError> {
        let parsed;
        let uri = match &self.chat_uri {
            Some(uri) => uri,
            None => {
                parsed = self.upstream.parse_url(&self.chat_url)?;
                &parsed
            }
        };
        let response = self
            .upstream
            .post_bytes_uri(uri, &self.chat_url, self.auth_headers()?, body)
            .await?;
        Ok((response, self.chat_url.as_str()))
    }

    /// Whether this is OpenAI's own API, which rejects parameters other servers take.
    fn is_official(&self) -> bool {
        self.base_url.starts_with("https://api.openai.com")
    }

    fn auth_headers(&self) -> Result<HeaderMap, LlmError> {
        match &self.upstream.api_key {
            Some(key) => headers(
                &self.upstream.provider,
                &[("authorization", &format!("Bearer {key}"))],
            ),
            None => Ok(HeaderMap::new()),
        }
    }

    /// Refuses a request this server cannot take.
    fn check_request(&self, request: &ChatRequest) -> Result<(), LlmError> {
        if request.messages.is_empty() {
            return Err(LlmError::InvalidRequest {
                provider: self.upstream.provider.clone(),
                reason: "messages: at least one message is needed".to_owned(),
            });
        }
        if request.generation.n().is_some_and(|n| n > 1) && !self.capabilities.multiple_choices {
            return Err(LlmError::Unsupported {
                provider: self.upstream.provider.clone(),
                feature: "n > 1 (several completions per request)".to_owned(),
            });
        }
        Ok(())
    }

    /// The chat completions body (a JSON tree, for inspection; the request path sends
    /// [`OpenAiProvider::request_bytes`]).
    pub fn request_body(&self, request: &ChatRequest, stream: bool) -> Result<Value, LlmError> {
        let generation = self.generation_members(request)?;
        serde_json::to_value(self.wire(request, &generation, stream))
            .map_err(|error| self.serialise_error(&error))
    }

    /// The body of [`OpenAiProvider::request_body`] written straight to bytes, with no JSON
    /// tree in between: what the request path sends (building the tree cost a visible share
    /// of a proxied request's CPU).
    pub fn request_bytes(&self, request: &ChatRequest, stream: bool) -> Result<Vec<u8>, LlmError> {
        let generation = self.generation_members(request)?;
        serde_json::to_vec(&self.wire(request, &generation, stream))
            .map_err(|error| self.serialise_error(&error))
    }

    /// Checks `request` and gives its generation config as JSON members (small; usually
    /// none).
    fn generation_members(&self, request: &ChatRequest) -> Result<Map<String, Value>, LlmError> {
        self.check_request(request)?;
        Ok(
            match to_json(&self.upstream.provider, &request.generation)? {
                Value::Object(generation) => generation,
                _ => Map::new(),
            },
        )
    }

    fn wire<'a>(
        &self,
        request: &'a ChatRequest,
        generation: &'a Map<String, Value>,
        stream: bool,
    ) -> WireRequest<'a> {
        WireRequest {
            request,
            generation,
            stream,
            official: self.is_official(),
        }
    }

    fn serialise_error(&self, error: &serde_json::Error) -> LlmError {
        LlmError::InvalidRequest {
            provider: self.upstream.provider.clone(),
            reason: format!("cannot serialise the request: {error}"),
        }
    }

    /// Reads a chat completions response body, typed straight from the bytes (no JSON tree);
    /// the body stays as the response's raw payload.
    pub fn parse_body(
        &self,
        request: &ChatRequest,
        bytes: bytes::Bytes,
    ) -> Result<ChatResponse, LlmError> {
        // UTF-8 checked once for the whole body rather than per string (see the gateway's
        // `parse_chat`).
        let typed = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| serde_json::from_str::<Completion>(text).ok());
        match typed {
            Some(completion) => self.assemble(request, completion, RawPayload::Body(bytes)),
            // The slow path only words the error: not JSON, or where the shape is wrong.
            None => {
                let raw = self.upstream.parse_json(&bytes)?;
                self.parse_response(request, raw)
            }
        }
    }

    /// Reads a chat completions response already parsed as JSON.
    pub fn parse_response(
        &self,
        request: &ChatRequest,
        raw: Value,
    ) -> Result<ChatResponse, LlmError> {
        let completion: Completion = from_value(&self.upstream, "chat completion", &raw)?;
        self.assemble(request, completion, RawPayload::Json(raw))
    }

    /// The normalised response of a completion.
    fn assemble(
        &self,
        request: &ChatRequest,
        completion: Completion,
        raw: RawPayload,
    ) -> Result<ChatResponse, LlmError> {
        if completion.choices.is_empty() {
            return Err(self.upstream.invalid("chat completion: `choices` is empty"));
        }
        let choices: Vec<Choice> = completion
            .choices
            .into_iter()
            .enumerate()
            .map(|(position, choice)| Choice {
                index: choice
                    .index
                    .unwrap_or(u32::try_from(position).unwrap_or(u32::MAX)),
                finish_reason: match choice.finish_reason.as_deref() {
                    Some(reason) => FinishReason::from_openai(reason),
                    None if !choice.message.tool_calls.is_empty() => FinishReason::ToolCalls,
                    None => FinishReason::Stop,
                },
                message: without_stream_indexes(choice.message),
                logprobs: choice.logprobs.filter(|value| !value.is_null()),
            })
            .collect();
        let usage = match completion.usage {
            Some(usage) => usage.normalise(),
            None => {
                let output: String = choices
                    .iter()
                    .map(|choice| output_text(&choice.message))
                    .collect();
                count_usage(&request.model, &request.messages, &request.tools, &output)
            }
        };
        Ok(ChatResponse {
            id: completion
                .id
                .unwrap_or_else(|| "chatcmpl-unknown".to_owned()),
            provider: self.upstream.provider.clone(),
            model: completion.model.unwrap_or_else(|| request.model.clone()),
            choices,
            usage,
            system_fingerprint: match completion.system_fingerprint {
                Some(Value::String(fingerprint)) => Some(fingerprint),
                _ => None,
            },
            raw,
        })
    }
}

/// `message` without the `index` some servers (Ollama) put on whole-response tool calls: it is
/// a streaming field, and OpenAI refuses unknown fields when the message is sent back.
fn without_stream_indexes(mut message: Message) -> Message {
    for call in &mut message.tool_calls {
        call.extra.remove("index");
    }
    message
}

/// The text and tool call arguments of a message, as counted for output tokens.
pub(crate) fn output_text(message: &Message) -> String {
    let mut text = message.text();
    for call in &message.tool_calls {
        text.push_str(&call.function.name);
        text.push_str(&call.function.arguments);
    }
    text
}

/// A chat completions body, serialised in one pass (to bytes or to a JSON tree): the
/// request's members, generation parameters renamed or dropped for OpenAI's own API, and
/// `extra` filling only what the rest left unset.
struct WireRequest<'a> {
    request: &'a ChatRequest,
    /// The generation config as JSON members (small; usually empty).
    generation: &'a Map<String, Value>,
    stream: bool,
    /// OpenAI's own API: no `top_k`/`repetition_penalty`, `max_completion_tokens`.
    official: bool,
}

impl WireRequest<'_> {
    /// The body member a generation member is written as, if any.
    fn generation_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        match key {
            "top_k" | "repetition_penalty" if self.official => None,
            "max_tokens" if self.official => Some("max_completion_tokens"),
            _ => Some(key),
        }
    }

    /// Whether `key` is written by something other than `extra`.
    fn sets(&self, key: &str) -> bool {
        let request = self.request;
        match key {
            "model" | "messages" => true,
            "tools" => !request.tools.is_empty(),
            "tool_choice" => request.tool_choice.is_some(),
            "parallel_tool_calls" => request.parallel_tool_calls.is_some(),
            "stream" if self.stream => true,
            "stream_options" if self.stream && request.stream_options.include_usage => true,
            _ => self
                .generation
                .keys()
                .any(|member| self.generation_key(member) == Some(key)),
        }
    }
}

impl serde::Serialize for WireRequest<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let request = self.request;
        let mut body = serializer.serialize_map(None)?;
        body.serialize_entry("model", &request.model)?;
        body.serialize_entry("messages", &request.messages)?;
        if !request.tools.is_empty() {
            body.serialize_entry("tools", &request.tools)?;
        }
        if let Some(choice) = &request.tool_choice {
            body.serialize_entry("tool_choice", &choice.to_openai())?;
        }
        if let Some(parallel) = request.parallel_tool_calls {
            body.serialize_entry("parallel_tool_calls", &parallel)?;
        }
        for (key, value) in self.generation {
            if let Some(key) = self.generation_key(key) {
                body.serialize_entry(key, value)?;
            }
        }
        if self.stream {
            body.serialize_entry("stream", &true)?;
            if request.stream_options.include_usage {
                body.serialize_entry("stream_options", &json!({"include_usage": true}))?;
            }
        }
        for (key, value) in &request.extra {
            if !self.sets(key) {
                body.serialize_entry(key, value)?;
            }
        }
        body.end()
    }
}

fn to_json<T: serde::Serialize>(provider: &str, value: &T) -> Result<Value, LlmError> {
    serde_json::to_value(value).map_err(|error| LlmError::InvalidRequest {
        provider: provider.to_owned(),
        reason: format!("cannot serialise the request: {error}"),
    })
}

/// Deserialises `raw` as a `T`, naming the JSON path of any error.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(
    upstream: &Upstream,
    what: &str,
    raw: &Value,
) -> Result<T, LlmError> {
    serde_path_to_error::deserialize(raw).map_err(|error| {
        let path = error.path().to_string();
        upstream.invalid(format!("{what} at {path}: {}", error.into_inner()))
    })
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    choices: Vec<CompletionChoice>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    /// Any JSON is accepted (a server sending a non-string must not fail the call); only a
    /// string is kept.
    #[serde(default)]
    system_fingerprint: Option<Value>,
}

#[derive(Deserialize)]
struct CompletionChoice {
    #[serde(default)]
    index: Option<u32>,
    message: Message,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<Value>,
}

/// OpenAI's `usage` object.
#[derive(Deserialize)]
pub(crate) struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl OpenAiUsage {
    pub(crate) fn normalise(&self) -> Usage {
        let cached = self
            .prompt_tokens_details
            .as_ref()
            .and_then(|details| details.cached_tokens)
            .unwrap_or(0);
        Usage::reported(self.prompt_tokens, self.completion_tokens, cached)
    }
}

#[derive(Deserialize)]
struct EmbeddingList {
    data: Vec<EmbeddingItem>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<EmbeddingUsage>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct EmbeddingUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

/// Decodes OpenAI `chat.completion.chunk` events.
pub(crate) struct OpenAiDecoder {
    provider: String,
    done: bool,
}

impl OpenAiDecoder {
    pub(crate) fn new(provider: &str) -> Self {
        OpenAiDecoder {
            provider: provider.to_owned(),
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
}

impl EventDecoder for OpenAiDecoder {
    fn decode(&mut self, event: SseEvent) -> Result<Vec<StreamDelta>, LlmError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        let chunk: Value = serde_json::from_str(data).map_err(|error| {
            self.invalid(format!(
                "stream chunk is not JSON ({error}): {}",
                crate::error::redact(&data[..data.len().min(256)], &[])
            ))
        })?;
        if let Some(error) = chunk.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            return Err(LlmError::Stream {
                provider: self.provider.clone(),
                reason: crate::error::redact(&format!("error event: {message}"), &[]),
                transient: false,
                attempt: 1,
            });
        }
        let mut deltas = Vec::new();
        if let Some(choices) = chunk.get("choices").and_then(Value::as_array) {
            for (position, choice) in choices.iter().enumerate() {
                let index = choice
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(position as u64) as u32;
                decode_choice(index, choice, &mut deltas);
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|usage| !usage.is_null()) {
            let usage: OpenAiUsage = serde_json::from_value(usage.clone())
                .map_err(|error| self.invalid(format!("stream chunk usage: {error}")))?;
            deltas.push(StreamDelta::Usage(usage.normalise()));
        }
        Ok(deltas)
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

/// The deltas of one `choices[]` entry of a chunk.
fn decode_choice(choice_index: u32, choice: &Value, deltas: &mut Vec<StreamDelta>) {
    let delta = choice.get("delta");
    if let Some(text) = delta
        .and_then(|delta| delta.get("content"))
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
    {
        deltas.push(StreamDelta::Text {
            choice: choice_index,
            text: text.to_owned(),
        });
    }
    if let Some(content) = choice
        .get("logprobs")
        .and_then(|logprobs| logprobs.get("content"))
        .and_then(Value::as_array)
        .filter(|content| !content.is_empty())
    {
        deltas.push(StreamDelta::Logprobs {
            choice: choice_index,
            content: content.clone(),
        });
    }
    let calls = delta
        .and_then(|delta| delta.get("tool_calls"))
        .and_then(Value::as_array);
    for (position, call) in calls.into_iter().flatten().enumerate() {
        let function = call.get("function");
        let text_of = |value: Option<&Value>, key: &str| {
            value
                .and_then(|value| value.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        deltas.push(StreamDelta::ToolCall {
            choice: choice_index,
            index: call
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64) as u32,
            id: text_of(Some(call), "id"),
            name: text_of(function, "name"),
            arguments: text_of(function, "arguments").unwrap_or_default(),
        });
    }
    if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
        deltas.push(StreamDelta::Finish {
            choice: choice_index,
            reason: FinishReason::from_openai(reason),
        });
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.upstream.provider
    }

    fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = self.request_bytes(request, false)?;
        let (response, url) = self.post_chat(body).await?;
        let bytes = self.upstream.read_body(url, response).await?;
        self.parse_body(request, bytes)
    }

    async fn stream(&self, request: &ChatRequest) -> Result<DeltaStream, LlmError> {
        let body = self.request_bytes(request, true)?;
        let (response, _) = self.post_chat(body).await?;
        Ok(delta_stream(
            &self.upstream.provider,
            response,
            OpenAiDecoder::new(&self.upstream.provider),
            UsageFallback {
                model: request.model.clone(),
                messages: request.messages.clone(),
                tools: request.tools.clone(),
            },
        ))
    }

    async fn embed(&self, request: &EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        let mut body = Map::new();
        body.insert("model".into(), Value::from(request.model.clone()));
        body.insert("input".into(), Value::from(request.input.clone()));
        body.insert("encoding_format".into(), Value::from("float"));
        if let Some(dimensions) = request.dimensions {
            body.insert("dimensions".into(), Value::from(dimensions));
        }
        for (key, value) in &request.extra {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
        let url = join_url(&self.base_url, "embeddings");
        let response = self
            .upstream
            .post_json(&url, self.auth_headers()?, &Value::Object(body))
            .await?;
        let raw = self.upstream.read_json(&url, response).await?;
        let list: EmbeddingList = from_value(&self.upstream, "embeddings", &raw)?;
        if list.data.len() != request.input.len() {
            return Err(self.upstream.invalid(format!(
                "embeddings: {} vectors for {} inputs",
                list.data.len(),
                request.input.len()
            )));
        }
        let mut items: Vec<(usize, Vec<f32>)> = list
            .data
            .into_iter()
            .enumerate()
            .map(|(position, item)| (item.index.unwrap_or(position), item.embedding))
            .collect();
        items.sort_by_key(|(index, _)| *index);
        let usage = match list.usage {
            Some(usage) => Usage::reported(usage.prompt_tokens, 0, 0),
            None => count_embedding_usage(&request.model, &request.input),
        };
        Ok(EmbeddingResponse {
            provider: self.upstream.provider.clone(),
            model: list.model.unwrap_or_else(|| request.model.clone()),
            embeddings: items.into_iter().map(|(_, vector)| vector).collect(),
            usage,
            raw,
        })
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, LlmError> {
        let url = join_url(&self.base_url, "models");
        let response = self.upstream.get(&url, self.auth_headers()?).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolChoice;
    use promptops_core::generation::{GenerationConfig, ResponseFormat};

    fn provider(base_url: &str) -> OpenAiProvider {
        OpenAiProvider::new(&RemoteSettings {
            name: "up".into(),
            base_url: base_url.into(),
            api_key: None,
            api_key_env: None,
        })
        .unwrap()
    }

    /// The body as the provider built it before `WireRequest`: members inserted into a map,
    /// `extra` only where the map has no member yet. The independent oracle of the property
    /// test below.
    fn reference_body(server: &OpenAiProvider, request: &ChatRequest, stream: bool) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), Value::from(request.model.clone()));
        body.insert(
            "messages".into(),
            to_json(&server.upstream.provider, &request.messages).unwrap(),
        );
        if !request.tools.is_empty() {
            body.insert(
                "tools".into(),
                to_json(&server.upstream.provider, &request.tools).unwrap(),
            );
        }
        if let Some(choice) = &request.tool_choice {
            body.insert("tool_choice".into(), choice.to_openai());
        }
        if let Some(parallel) = request.parallel_tool_calls {
            body.insert("parallel_tool_calls".into(), Value::from(parallel));
        }
        if let Value::Object(generation) =
            to_json(&server.upstream.provider, &request.generation).unwrap()
        {
            let official = server.is_official();
            for (key, value) in generation {
                match key.as_str() {
                    "top_k" | "repetition_penalty" if official => {}
                    "max_tokens" if official => {
                        body.insert("max_completion_tokens".into(), value);
                    }
                    _ => {
                        body.insert(key, value);
                    }
                }
            }
        }
        if stream {
            body.insert("stream".into(), Value::Bool(true));
            if request.stream_options.include_usage {
                body.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
        for (key, value) in &request.extra {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(body)
    }

    proptest::proptest! {
        /// The bytes the request path sends are the body the map-building reference gives,
        /// for any mix of messages, tools, parameters, streaming and `extra` members
        /// (including ones that collide with known fields), to OpenAI itself and to others.
        #[test]
        fn request_bytes_are_the_request_body(
            texts in proptest::collection::vec("[a-z \"\\\\é]{0,12}", 1..4),
            with_tool in proptest::bool::ANY,
            choice in 0u8..5,
            parallel in proptest::option::of(proptest::bool::ANY),
            temperature in proptest::option::of(0.0f64..2.0),
            max_tokens in proptest::option::of(1u32..500),
            top_k in proptest::option::of(1u32..50),
            seed in proptest::option::of(0i64..1000),
            stop in proptest::option::of("[A-Z]{1,4}"),
            extra_keys in proptest::collection::vec(
                proptest::sample::select(vec![
                    "model", "messages", "tools", "tool_choice", "parallel_tool_calls",
                    "stream", "stream_options", "temperature", "max_tokens",
                    "max_completion_tokens", "top_k", "seed", "stop", "user", "metadata",
                ]),
                0..5,
            ),
            stream in proptest::bool::ANY,
            include_usage in proptest::bool::ANY,
            official in proptest::bool::ANY,
        ) {
            let messages = texts
                .iter()
                .enumerate()
                .map(|(i, text)| if i % 2 == 0 { Message::user(text.as_str()) } else { Message::assistant(text.as_str()) })
                .collect();
            let mut request = ChatRequest::new("m-1", messages);
            if with_tool {
                let tool = json!({"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}});
                request.tools = vec![serde_json::from_value(tool).unwrap()];
            }
            request.tool_choice = match choice {
                0 => None,
                1 => Some(ToolChoice::Auto),
                2 => Some(ToolChoice::None),
                3 => Some(ToolChoice::Required),
                _ => Some(ToolChoice::Function("lookup".into())),
            };
            request.parallel_tool_calls = parallel;
            let mut generation = GenerationConfig::builder();
            if let Some(value) = temperature { generation = generation.temperature(value); }
            if let Some(value) = max_tokens { generation = generation.max_tokens(value); }
            if let Some(value) = top_k { generation = generation.top_k(value); }
            if let Some(value) = seed { generation = generation.seed(value); }
            if let Some(value) = &stop { generation = generation.stop([value.as_str()]); }
            request.generation = generation.build().unwrap();
            for (i, key) in extra_keys.iter().enumerate() {
                request.extra.insert((*key).to_owned(), json!(format!("extra-{i}")));
            }
            request.stream_options.include_usage = include_usage;
            let server = provider(if official { OPENAI_BASE_URL } else { "http://127.0.0.1:1/v1" });
            let bytes = server.request_bytes(&request, stream).unwrap();
            let sent: Value = serde_json::from_slice(&bytes).unwrap();
            // Both through the same text parse (which may round a float's last digit).
            let built = serde_json::to_vec(&reference_body(&server, &request, stream)).unwrap();
            let built: Value = serde_json::from_slice(&built).unwrap();
            proptest::prop_assert_eq!(sent, built);
        }
    }

    #[test]
    fn body_carries_every_parameter_and_keeps_extra_below_known_fields() {
        let mut request = ChatRequest::new("gpt-4o-mini", vec![Message::user("hi")]);
        request.generation = GenerationConfig::builder()
            .temperature(0.2)
            .max_tokens(50)
            .seed(7)
            .n(2)
            .stop(["END"])
            .top_k(5)
            .logprobs(true)
            .top_logprobs(2)
            .response_format(ResponseFormat::json_schema(
                "answer",
                json!({"type": "object"}),
            ))
            .build()
            .unwrap();
        request.parallel_tool_calls = Some(false);
        request.extra.insert("model".into(), json!("overridden?"));
        request.extra.insert("user".into(), json!("u-1"));
        let local = provider("http://127.0.0.1:1/v1")
            .request_body(&request, true)
            .unwrap();
        assert_eq!(local["model"], "gpt-4o-mini");
        assert_eq!(local["max_tokens"], 50);
        assert_eq!(local["top_k"], 5);
        assert_eq!(local["seed"], 7);
        assert_eq!(local["n"], 2);
        assert_eq!(local["stop"], json!(["END"]));
        assert_eq!(local["user"], "u-1");
        assert_eq!(local["stream_options"], json!({"include_usage": true}));
        assert_eq!(local["response_format"]["type"], "json_schema");
        assert_eq!(local["parallel_tool_calls"], false);
        let official = provider(OPENAI_BASE_URL)
            .request_body(&request, false)
            .unwrap();
        assert_eq!(official["max_completion_tokens"], 50);
        assert!(official.get("max_tokens").is_none());
        assert!(official.get("top_k").is_none());
        assert!(official.get("stream").is_none());
    }

    #[test]
    fn decodes_chunks_into_typed_deltas() {
        let mut decoder = OpenAiDecoder::new("up");
        let event = |data: &str| SseEvent {
            data: data.into(),
            ..SseEvent::default()
        };
        let deltas = decoder
            .decode(event(
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}"#,
            ))
            .unwrap();
        assert_eq!(
            deltas,
            vec![StreamDelta::ToolCall {
                choice: 0,
                index: 1,
                id: Some("call_b".into()),
                name: Some("f".into()),
                arguments: String::new()
            }]
        );
        let deltas = decoder
            .decode(event(
                r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":{"content":[{"token":"Hi","logprob":-0.1,"bytes":[72,105],"top_logprobs":[]}]},"finish_reason":null}]}"#,
            ))
            .unwrap();
        assert_eq!(
            deltas,
            vec![
                StreamDelta::Text {
                    choice: 0,
                    text: "Hi".into()
                },
                StreamDelta::Logprobs {
                    choice: 0,
                    content: vec![serde_json::json!(
                        {"token":"Hi","logprob":-0.1,"bytes":[72,105],"top_logprobs":[]}
                    )]
                }
            ]
        );
        let deltas = decoder
            .decode(event(
                r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}}"#,
            ))
            .unwrap();
        assert_eq!(deltas, vec![StreamDelta::Usage(Usage::reported(9, 3, 4))]);
        assert!(decoder.decode(event("{not json")).is_err());
        assert!(
            decoder
                .decode(event(r#"{"error":{"message":"overloaded"}}"#))
                .is_err()
        );
        decoder.decode(event("[DONE]")).unwrap();
        assert!(decoder.is_done());
    }
}
