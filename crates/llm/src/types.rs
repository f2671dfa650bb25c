//! Normalised request and response types shared by every provider: chat, stream deltas,
//! embeddings, usage and capabilities.
//!
//! Requests are built on the core's OpenAI-shaped [`Message`], [`Tool`] and
//! [`GenerationConfig`]; each adapter translates them to its wire format and keeps the
//! provider's raw payload beside the normalised result.

use promptops_core::generation::{GenerationConfig, ResponseFormat};
use promptops_core::message::{Content, Extra, Message, Role, Tool, ToolCall};
use promptops_core::tokens::Exactness;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A chat completion request, provider-neutral.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The model name as the provider knows it (no `PROVIDER/` prefix).
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<Tool>,
    /// Whether and which tool the model must call.
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools in one turn (OpenAI `parallel_tool_calls`).
    pub parallel_tool_calls: Option<bool>,
    /// Sampling, limits, `n`, `seed`, `stop`, logprobs and `response_format`.
    pub generation: GenerationConfig,
    /// Streaming options (used by [`crate::Provider::stream`] only).
    pub stream_options: StreamOptions,
    /// Provider-specific body fields passed through as given (never override known fields).
    pub extra: Extra,
}

impl ChatRequest {
    /// A request for `model` with `messages` and nothing else set.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            ..ChatRequest::default()
        }
    }

    /// The required shape of the reply, from the generation config.
    pub fn response_format(&self) -> Option<&ResponseFormat> {
        self.generation.response_format()
    }
}

/// Streaming options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Ask the provider to send usage at the end of the stream (OpenAI `include_usage`).
    /// When the provider sends none, the stream still ends with a locally counted usage.
    pub include_usage: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            include_usage: true,
        }
    }
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool call.
    None,
    /// At least one tool call.
    Required,
    /// A call of this function.
    Function(String),
}

impl ToolChoice {
    /// The OpenAI wire form.
    pub fn to_openai(&self) -> Value {
        match self {
            ToolChoice::Auto => Value::from("auto"),
            ToolChoice::None => Value::from("none"),
            ToolChoice::Required => Value::from("required"),
            ToolChoice::Function(name) => {
                serde_json::json!({"type": "function", "function": {"name": name}})
            }
        }
    }

    /// Reads the OpenAI wire form (`"auto"`, `"none"`, `"required"` or a function object).
    pub fn from_openai(value: &Value) -> Option<ToolChoice> {
        match value {
            Value::String(text) => match text.as_str() {
                "auto" => Some(ToolChoice::Auto),
                "none" => Some(ToolChoice::None),
                "required" => Some(ToolChoice::Required),
                _ => None,
            },
            Value::Object(object) => object
                .get("function")
                .and_then(|function| function.get("name"))
                .and_then(Value::as_str)
                .map(|name| ToolChoice::Function(name.to_owned())),
            _ => None,
        }
    }
}

/// Why generation stopped, normalised across providers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// The token limit was reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// The provider's content filter (or a refusal) ended the reply.
    ContentFilter,
    /// Any other provider-specific reason, verbatim.
    #[serde(untagged)]
    Other(String),
}

impl FinishReason {
    /// The OpenAI wire name.
    pub fn as_openai(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(other) => other,
        }
    }

    /// Reads an OpenAI `finish_reason` (legacy `function_call` counts as tool calls).
    pub fn from_openai(reason: &str) -> FinishReason {
        match reason {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }

    /// Reads an Anthropic `stop_reason`.
    pub fn from_anthropic(reason: &str) -> FinishReason {
        match reason {
            "end_turn" | "stop_sequence" => FinishReason::Stop,
            "max_tokens" => FinishReason::Length,
            "tool_use" => FinishReason::ToolCalls,
            "refusal" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }
}

/// Token usage of one request. Always filled: counted locally when the provider says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Generated tokens (all choices).
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache (a subset of `input_tokens`).
    pub cached_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache by this request (a subset of
    /// `input_tokens`, disjoint from `cached_tokens`; Anthropic prices them above plain input).
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// `Exact` when the provider reported the figures, or a local count with an exact
    /// tokenizer; `Estimate` otherwise.
    pub exactness: Exactness,
}

impl Usage {
    /// Usage as the provider reported it.
    pub fn reported(input_tokens: u64, output_tokens: u64, cached_tokens: u64) -> Usage {
        Usage {
            input_tokens,
            output_tokens,
            cached_tokens,
            cache_write_tokens: 0,
            exactness: Exactness::Exact,
        }
    }

    /// This usage with `tokens` of its input reported as written to the prompt cache.
    pub fn with_cache_writes(mut self, tokens: u64) -> Usage {
        self.cache_write_tokens = tokens;
        self
    }

    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// One completion of a chat response.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Position among the `n` completions.
    pub index: u32,
    /// The assistant message (text and/or tool calls).
    pub message: Message,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// OpenAI-shaped `logprobs` object, when asked for and the provider has them.
    pub logprobs: Option<Value>,
}

/// A chat completion, provider-neutral, with the provider's raw payload kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The provider's response id (or one made up when it sends none).
    pub id: String,
    /// The provider name from the config.
    pub provider: String,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// The completions (one unless `n > 1`).
    pub choices: Vec<Choice>,
    /// Token usage, always filled.
    pub usage: Usage,
    /// OpenAI's `system_fingerprint`, when the provider sent one. Read with the rest of the
    /// body: fetching it from `raw` afterwards read the whole body a second time (~8% of the
    /// gateway's instructions per request).
    pub system_fingerprint: Option<String>,
    /// The provider's response body as received (for streams: the collected events).
    pub raw: RawPayload,
}

/// A provider payload as received. A whole response body stays bytes until someone asks for
/// a field the normalised response does not carry: building a JSON tree of every body was a
/// visible share of the gateway's CPU per request.
#[derive(Debug, Clone, PartialEq)]
pub enum RawPayload {
    /// A JSON response body, parsed on demand.
    Body(bytes::Bytes),
    /// A JSON value (collected stream events, or what an adapter built).
    Json(Value),
}

impl RawPayload {
    /// The payload as a JSON value (`Null` when a body is not JSON).
    pub fn json(&self) -> Value {
        match self {
            RawPayload::Body(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
            RawPayload::Json(value) => value.clone(),
        }
    }

    /// Top-level member `key` of an object payload, reading only that member of a body.
    pub fn get(&self, key: &str) -> Option<Value> {
        match self {
            RawPayload::Body(bytes) => {
                let mut reader = serde_json::Deserializer::from_slice(bytes);
                serde::de::DeserializeSeed::deserialize(OneMember(key), &mut reader)
                    .ok()
                    .flatten()
            }
            RawPayload::Json(value) => value.get(key).cloned(),
        }
    }
}

impl From<Value> for RawPayload {
    fn from(value: Value) -> RawPayload {
        RawPayload::Json(value)
    }
}

/// Reads one member of a JSON object, skipping the others without building them.
struct OneMember<'k>(&'k str);

impl<'de> serde::de::DeserializeSeed<'de> for OneMember<'_> {
    type Value = Option<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<Value>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for OneMember<'_> {
    type Value = Option<Value>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<Option<Value>, A::Error> {
        let mut found = None;
        while let Some(hit) = map.next_key_seed(IsKey(self.0))? {
            if hit {
                found = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Whether an object key equals the wanted one, without allocating it.
struct IsKey<'k>(&'k str);

impl<'de> serde::de::DeserializeSeed<'de> for IsKey<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for IsKey<'_> {
    type Value = bool;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a string key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

impl ChatResponse {
    /// The deltas a stream of this response would have carried (to replay a whole answer as a
    /// stream): per choice its text, logprobs, tool calls and finish; then the usage.
    pub fn to_deltas(&self) -> Vec<StreamDelta> {
        let mut deltas = Vec::new();
        for choice in &self.choices {
            let text = choice.message.text();
            if !text.is_empty() {
                deltas.push(StreamDelta::Text {
                    choice: choice.index,
                    text,
                });
            }
            if let Some(Value::Array(content)) = choice
                .logprobs
                .as_ref()
                .and_then(|logprobs| logprobs.get("content"))
                && !content.is_empty()
            {
                deltas.push(StreamDelta::Logprobs {
                    choice: choice.index,
                    content: content.clone(),
                });
            }
            for (index, call) in choice.message.tool_calls.iter().enumerate() {
                deltas.push(StreamDelta::ToolCall {
                    choice: choice.index,
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    id: Some(call.id.clone()),
                    name: Some(call.function.name.clone()),
                    arguments: call.function.arguments.clone(),
                });
            }
            deltas.push(StreamDelta::Finish {
                choice: choice.index,
                reason: choice.finish_reason.clone(),
            });
        }
        deltas.push(StreamDelta::Usage(self.usage));
        deltas
    }

    /// The first choice's message, if there is a choice.
    pub fn message(&self) -> Option<&Message> {
        self.choices.first().map(|choice| &choice.message)
    }

    /// The first choice's text (empty when it only called tools).
    pub fn text(&self) -> String {
        self.message().map(Message::text).unwrap_or_default()
    }

    /// The first choice's tool calls.
    pub fn tool_calls(&self) -> &[ToolCall] {
        self.message()
            .map(|message| message.tool_calls.as_slice())
            .unwrap_or_default()
    }

    /// The first choice's finish reason.
    pub fn finish_reason(&self) -> Option<&FinishReason> {
        self.choices.first().map(|choice| &choice.finish_reason)
    }
}

/// One typed piece of a streamed chat completion.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamDelta {
    /// Text to append to choice `choice`.
    Text {
        /// Choice index.
        choice: u32,
        /// The text.
        text: String,
    },
    /// A fragment of tool call `index` of choice `choice`: the first fragment of a call carries
    /// its `id` and `name`, later ones append to `arguments`.
    ToolCall {
        /// Choice index.
        choice: u32,
        /// Position of the call within the choice's tool calls.
        index: u32,
        /// Call id (first fragment only).
        id: Option<String>,
        /// Function name (first fragment only).
        name: Option<String>,
        /// A piece of the JSON arguments string.
        arguments: String,
    },
    /// Log probabilities of tokens of choice `choice` streamed so far: entries of OpenAI's
    /// `logprobs.content` array (`{token, logprob, bytes, top_logprobs}`), sent after the text
    /// they describe.
    Logprobs {
        /// Choice index.
        choice: u32,
        /// One entry per token.
        content: Vec<Value>,
    },
    /// Usage of the whole request (once, usually last).
    Usage(Usage),
    /// Choice `choice` is complete.
    Finish {
        /// Choice index.
        choice: u32,
        /// Why it stopped.
        reason: FinishReason,
    },
}

/// Folds stream deltas into the [`ChatResponse`] the same request would have returned.
#[derive(Debug, Clone, Default)]
pub struct StreamAccumulator {
    choices: Vec<AccumulatedChoice>,
    usage: Option<Usage>,
}

/// A choice being assembled from deltas.
#[derive(Debug, Clone, Default)]
struct AccumulatedChoice {
    text: Option<String>,
    tool_calls: Vec<ToolCall>,
    finish_reason: Option<FinishReason>,
    logprobs: Vec<Value>,
}

impl StreamAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        StreamAccumulator::default()
    }

    /// Adds one delta.
    pub fn push(&mut self, delta: &StreamDelta) {
        match delta {
            StreamDelta::Text { choice, text } => self
                .choice(*choice)
                .text
                .get_or_insert_default()
                .push_str(text),
            StreamDelta::ToolCall {
                choice,
                index,
                id,
                name,
                arguments,
            } => {
                let calls = &mut self.choice(*choice).tool_calls;
                let position = *index as usize;
                while calls.len() <= position {
                    calls.push(ToolCall::function("", "", ""));
                }
                let call = &mut calls[position];
                if let Some(id) = id {
                    call.id.clone_from(id);
                }
                if let Some(name) = name {
                    call.function.name.push_str(name);
                }
                call.function.arguments.push_str(arguments);
            }
            StreamDelta::Logprobs { choice, content } => self
                .choice(*choice)
                .logprobs
                .extend(content.iter().cloned()),
            StreamDelta::Usage(usage) => self.usage = Some(*usage),
            StreamDelta::Finish { choice, reason } => {
                self.choice(*choice).finish_reason = Some(reason.clone());
            }
        }
    }

    /// Whether the stream ended properly: at least one choice, and every choice finished.
    pub fn is_complete(&self) -> bool {
        !self.choices.is_empty() && self.choices.iter().all(|c| c.finish_reason.is_some())
    }

    /// Whether a usage delta was seen.
    pub fn has_usage(&self) -> bool {
        self.usage.is_some()
    }

    /// The text generated so far for all choices plus tool call names and arguments: what the
    /// output tokens are counted on when the provider reports no usage.
    pub fn output_text(&self) -> String {
        let mut text = String::new();
        for choice in &self.choices {
            text.push_str(choice.text.as_deref().unwrap_or_default());
            for call in &choice.tool_calls {
                text.push_str(&call.function.name);
                text.push_str(&call.function.arguments);
            }
        }
        text
    }

    /// The response assembled from the deltas seen.
    pub fn finish(
        self,
        id: impl Into<String>,
        provider: impl Into<String>,
        model: impl Into<String>,
        raw: impl Into<RawPayload>,
    ) -> ChatResponse {
        let choices = self
            .choices
            .into_iter()
            .enumerate()
            .map(|(index, choice)| Choice {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                message: Message {
                    tool_calls: choice.tool_calls,
                    ..assistant_message(choice.text)
                },
                finish_reason: choice.finish_reason.unwrap_or(FinishReason::Stop),
                logprobs: (!choice.logprobs.is_empty())
                    .then(|| serde_json::json!({ "content": choice.logprobs })),
            })
            .collect();
        ChatResponse {
            id: id.into(),
            provider: provider.into(),
            model: model.into(),
            choices,
            usage: self.usage.unwrap_or(Usage {
                input_tokens: 0,
                output_tokens: 0,
                cached_tokens: 0,
                cache_write_tokens: 0,
                exactness: Exactness::Estimate,
            }),
            system_fingerprint: None,
            raw: raw.into(),
        }
    }

    fn choice(&mut self, index: u32) -> &mut AccumulatedChoice {
        let position = index as usize;
        while self.choices.len() <= position {
            self.choices.push(AccumulatedChoice::default());
        }
        &mut self.choices[position]
    }
}

/// An assistant message with optional text (`None` for a tool-call-only turn).
pub(crate) fn assistant_message(text: Option<String>) -> Message {
    Message {
        content: text.map(Content::Text),
        ..Message::new(Role::Assistant, "")
    }
}

/// An embeddings request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmbeddingRequest {
    /// The embedding model as the provider knows it.
    pub model: String,
    /// The texts to embed.
    pub input: Vec<String>,
    /// Requested vector size, for models that can shorten their vectors.
    pub dimensions: Option<u32>,
    /// Provider-specific body fields passed through as given.
    pub extra: Extra,
}

/// Embedding vectors, one per input text, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingResponse {
    /// The provider name.
    pub provider: String,
    /// The model that answered.
    pub model: String,
    /// One vector per input, in input order.
    pub embeddings: Vec<Vec<f32>>,
    /// Token usage (output is zero), always filled.
    pub usage: Usage,
    /// The provider's response body as received.
    pub raw: Value,
}

/// What a provider can do; callers check before asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Tool (function) calling.
    pub tools: bool,
    /// `response_format` with a JSON schema (natively or by tool forcing).
    pub json_schema: bool,
    /// Log probabilities of output tokens.
    pub logprobs: bool,
    /// Seeded, best-effort reproducible sampling.
    pub seed: bool,
    /// Image inputs.
    pub vision: bool,
    /// Streaming responses.
    pub streaming: bool,
    /// Embeddings.
    pub embeddings: bool,
    /// More than one completion per request (`n > 1`).
    pub multiple_choices: bool,
}

/// A model a provider serves (from its listing endpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model id as the provider names it.
    pub id: String,
    /// Size in bytes, when the provider says.
    pub size_bytes: Option<u64>,
    /// The provider's listing entry as received.
    pub raw: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_body_members_are_read_without_the_rest() {
        let body = RawPayload::Body(bytes::Bytes::from_static(
            br#"{"id":"x","choices":[{"message":{"content":"a\"b"}}],"system_fingerprint":"fp_1","s\u0079s":{"n":[1,2]}}"#,
        ));
        assert_eq!(body.get("system_fingerprint"), Some(Value::from("fp_1")));
        assert_eq!(body.get("sys"), Some(serde_json::json!({"n": [1, 2]})));
        assert_eq!(body.get("missing"), None);
        assert_eq!(body.json()["id"], "x");
        let same = RawPayload::Json(body.json());
        assert_eq!(
            same.get("system_fingerprint"),
            body.get("system_fingerprint")
        );
        for bad in [&b"[1,2]"[..], b"not json", b"{\"a\":"] {
            let payload = RawPayload::Body(bytes::Bytes::copy_from_slice(bad));
            assert_eq!(payload.get("a"), None);
        }
        assert_eq!(
            RawPayload::Body(bytes::Bytes::from_static(b"nope")).json(),
            Value::Null
        );
    }
}
