//! The embedded models behind the `Provider` contract of crates/llm (`kind = "local"`): chat
//! through [`LocalChat`], embeddings through [`Embedder`], both fully offline.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use promptops_core::generation::ResponseFormat;
use promptops_core::message::{Content, Message, Role, Tool, ToolCall};
use promptops_llm::types::{
    Capabilities, ChatRequest as LlmRequest, ChatResponse, Choice, EmbeddingRequest,
    EmbeddingResponse, FinishReason as LlmFinish, ModelInfo, StreamDelta, ToolChoice,
    Usage as LlmUsage,
};
use promptops_llm::{DeltaStream, LlmError, Provider, ProviderKind};

use crate::chat::{
    ChatEvent, ChatOptions, ChatRequest, Constraint, FinishReason, Generation, LocalChat, Prompt,
    Sampling, TokenLogprob, Usage,
};
use crate::embed::Embedder;
use crate::error::LocalError;
use crate::models::{CHAT_MODEL, EMBEDDING_MODEL, ModelCache};

/// The local models as one provider (`kind = "local"`): chat, streaming, JSON-schema and
/// tool calls through constrained decoding, logprobs, seeds, and embeddings.
#[derive(Clone)]
pub struct LocalProvider {
    name: String,
    chat: LocalChat,
    embedder: Option<Arc<Embedder>>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("name", &self.name)
            .field("chat", &self.chat)
            .field("embeddings", &self.embedder.is_some())
            .finish()
    }
}

impl LocalProvider {
    /// A provider named `name` serving `chat`, and embeddings when `embedder` is given.
    pub fn new(name: impl Into<String>, chat: LocalChat, embedder: Option<Arc<Embedder>>) -> Self {
        LocalProvider {
            name: name.into(),
            chat,
            embedder,
        }
    }

    /// The provider the config's `kind = "local"` entry (or the default `local` provider)
    /// gets: the chat model from `cache` (required) and the embedding model when installed.
    /// Loading happens once here; every request shares the loaded models.
    pub fn from_cache(
        name: impl Into<String>,
        cache: &ModelCache,
        options: ChatOptions,
    ) -> Result<LocalProvider, LocalError> {
        let chat = LocalChat::from_cache(cache, options)?;
        let embedder = match cache.require(EMBEDDING_MODEL) {
            Ok(dir) => Some(Arc::new(Embedder::load(&dir)?)),
            Err(LocalError::ModelMissing { .. }) => None,
            Err(other) => return Err(other),
        };
        Ok(LocalProvider::new(name, chat, embedder))
    }

    /// Whether the embedding model is loaded.
    pub fn has_embeddings(&self) -> bool {
        self.embedder.is_some()
    }

    fn invalid(&self, error: &LocalError) -> LlmError {
        match error {
            LocalError::InvalidRequest { .. }
            | LocalError::Constraint { .. }
            | LocalError::Template { .. } => LlmError::InvalidRequest {
                provider: self.name.clone(),
                reason: error.to_string(),
            },
            _ => LlmError::Stream {
                provider: self.name.clone(),
                reason: error.to_string(),
                transient: false,
                attempt: 1,
            },
        }
    }

    /// The engine request for an llm request (one choice). Tool calls are constrained decoding:
    /// see [`ToolPlan`].
    fn translate(&self, request: &LlmRequest) -> Result<(ChatRequest, Option<ToolPlan>), LlmError> {
        let unsupported = |feature: &str| LlmError::Unsupported {
            provider: self.name.clone(),
            feature: feature.to_owned(),
        };
        let generation = &request.generation;
        if generation.n().is_some_and(|n| n > 1) {
            return Err(unsupported("n > 1"));
        }
        let tools = ToolPlan::for_request(request);
        let constraint = match request.response_format() {
            None | Some(ResponseFormat::Text) => None,
            Some(ResponseFormat::JsonObject) => Some(Constraint::JsonSchema(
                serde_json::json!({ "type": "object" }),
            )),
            Some(ResponseFormat::JsonSchema { json_schema }) => Some(Constraint::JsonSchema(
                json_schema
                    .schema
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({ "type": "object" })),
            )),
        };
        // vLLM's extension field: the whole reply matches a regular expression.
        let invalid = |reason: &str| LlmError::InvalidRequest {
            provider: self.name.clone(),
            reason: reason.to_owned(),
        };
        let constraint = match (constraint, request.extra.get("guided_regex")) {
            (constraint, None) => constraint,
            (None, Some(serde_json::Value::String(pattern))) => {
                Some(Constraint::Regex(pattern.clone()))
            }
            (None, Some(_)) => return Err(invalid("guided_regex must be a string")),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "guided_regex and a JSON response_format cannot both constrain one reply",
                ));
            }
        };
        let narrow = |value: Option<f64>| value.map(|v| v as f32);
        let mut sampling = Sampling {
            temperature: narrow(generation.temperature()).unwrap_or(1.0),
            top_k: generation.top_k(),
            top_p: narrow(generation.top_p()),
            min_p: None,
            repetition_penalty: narrow(generation.repetition_penalty()),
            frequency_penalty: narrow(generation.frequency_penalty()),
            presence_penalty: narrow(generation.presence_penalty()),
            seed: generation.seed().map(|seed| seed as u64),
        };
        if let Some(min_p) = request
            .extra
            .get("min_p")
            .and_then(serde_json::Value::as_f64)
        {
            sampling.min_p = Some(min_p as f32);
        }
        let logprobs = match (generation.logprobs(), generation.top_logprobs()) {
            (Some(true), top) => Some(u8::try_from(top.unwrap_or(0)).unwrap_or(u8::MAX)),
            _ => None,
        };
        let (messages, constraint) = match &tools {
            Some(plan) => (plan.messages(&request.messages), Some(plan.constraint())),
            None => (request.messages.clone(), constraint),
        };
        let local = ChatRequest {
            prompt: Prompt::Messages(messages),
            sampling,
            max_tokens: generation.max_tokens(),
            stop: generation
                .stop()
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
            logprobs,
            constraint,
        };
        Ok((local, tools))
    }

    fn model_name(&self, request_model: &str) -> String {
        if request_model.is_empty() {
            CHAT_MODEL.to_owned()
        } else {
            request_model.to_owned()
        }
    }
}

fn finish(reason: FinishReason) -> LlmFinish {
    match reason {
        FinishReason::Stop => LlmFinish::Stop,
        FinishReason::Length => LlmFinish::Length,
    }
}

fn usage(usage: Usage) -> LlmUsage {
    LlmUsage::reported(
        u64::from(usage.prompt_tokens),
        u64::from(usage.completion_tokens),
        u64::from(usage.cached_tokens),
    )
}

/// OpenAI's `logprobs` object: `{"content": [{token, logprob, bytes, top_logprobs}]}`.
fn openai_logprobs(logprobs: &[TokenLogprob]) -> serde_json::Value {
    serde_json::json!({
        "content": logprobs.iter().map(|entry| serde_json::json!({
            "token": entry.token,
            "logprob": entry.logprob,
            "bytes": entry.bytes,
            "top_logprobs": entry.top.iter().map(|top| serde_json::json!({
                "token": top.token,
                "logprob": top.logprob,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()
    })
}

fn response(
    provider: &str,
    model: String,
    generation: Generation,
    tools: Option<&ToolPlan>,
) -> ChatResponse {
    let raw = serde_json::to_value(&generation).unwrap_or(serde_json::Value::Null);
    let id = format!("local-{}", next_response_id());
    let (message, reason) = match tools.and_then(|plan| plan.parse(&generation.text, &id)) {
        Some(ToolReply::Call(call)) => (
            Message {
                content: None,
                tool_calls: vec![*call],
                ..Message::new(Role::Assistant, "")
            },
            LlmFinish::ToolCalls,
        ),
        Some(ToolReply::Content(text)) => (
            Message::new(Role::Assistant, text),
            finish(generation.finish_reason),
        ),
        None => (
            Message {
                content: Some(Content::Text(generation.text)),
                ..Message::new(Role::Assistant, "")
            },
            finish(generation.finish_reason),
        ),
    };
    ChatResponse {
        id,
        provider: provider.to_owned(),
        model,
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: reason,
            logprobs: generation.logprobs.as_deref().map(openai_logprobs),
        }],
        usage: usage(generation.usage),
        system_fingerprint: None,
        raw: raw.into(),
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Local
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            json_schema: true,
            logprobs: true,
            seed: true,
            vision: false,
            streaming: true,
            embeddings: self.embedder.is_some(),
            multiple_choices: false,
        }
    }

    async fn chat(&self, request: &LlmRequest) -> Result<ChatResponse, LlmError> {
        let (local, tools) = self.translate(request)?;
        let generation = self
            .chat
            .generate(local)
            .await
            .map_err(|error| self.invalid(&error))?;
        Ok(response(
            &self.name,
            self.model_name(&request.model),
            generation,
            tools.as_ref(),
        ))
    }

    async fn stream(&self, request: &LlmRequest) -> Result<DeltaStream, LlmError> {
        let (local, tools) = self.translate(request)?;
        if tools.is_some() {
            // A tool call is only known once its JSON is complete: generate, then replay.
            let whole = self.chat(request).await?;
            return Ok(Box::pin(replay(whole)));
        }
        let events = self
            .chat
            .stream(local)
            .map_err(|error| self.invalid(&error))?;
        let provider = self.clone();
        // Dropping the returned stream drops `events`, which cancels the generation.
        let deltas = events.flat_map(move |event| {
            let deltas = match event {
                Ok(ChatEvent::Delta { text, logprobs }) => {
                    let mut deltas = Vec::with_capacity(2);
                    if !text.is_empty() {
                        deltas.push(Ok(StreamDelta::Text { choice: 0, text }));
                    }
                    if let Some(serde_json::Value::Array(content)) =
                        (!logprobs.is_empty()).then(|| openai_logprobs(&logprobs)["content"].take())
                    {
                        deltas.push(Ok(StreamDelta::Logprobs { choice: 0, content }));
                    }
                    deltas
                }
                Ok(ChatEvent::Done {
                    finish_reason,
                    usage: used,
                    ..
                }) => vec![
                    Ok(StreamDelta::Finish {
                        choice: 0,
                        reason: finish(finish_reason),
                    }),
                    Ok(StreamDelta::Usage(usage(used))),
                ],
                Err(error) => vec![Err(provider.invalid(&error))],
            };
            futures_util::stream::iter(deltas)
        });
        Ok(Box::pin(deltas))
    }

    async fn embed(&self, request: &EmbeddingRequest) -> Result<EmbeddingResponse, LlmError> {
        let embedder = self.embedder.clone().ok_or_else(|| LlmError::Unsupported {
            provider: self.name.clone(),
            feature: "embeddings (no embedding model configured)".to_owned(),
        })?;
        if request
            .dimensions
            .is_some_and(|d| d as usize != embedder.dimensions())
        {
            return Err(LlmError::InvalidRequest {
                provider: self.name.clone(),
                reason: format!(
                    "dimensions: {EMBEDDING_MODEL} gives {} dimensions",
                    embedder.dimensions()
                ),
            });
        }
        let input = request.input.clone();
        let batch = tokio::task::spawn_blocking(move || embedder.embed_batch_with_usage(&input))
            .await
            .map_err(|error| LlmError::Stream {
                provider: self.name.clone(),
                reason: format!("embedding worker failed: {error}"),
                transient: false,
                attempt: 1,
            })?
            .map_err(|error| LlmError::InvalidRequest {
                provider: self.name.clone(),
                reason: error.to_string(),
            })?;
        Ok(EmbeddingResponse {
            provider: self.name.clone(),
            model: if request.model.is_empty() {
                EMBEDDING_MODEL.to_owned()
            } else {
                request.model.clone()
            },
            embeddings: batch.vectors,
            usage: LlmUsage::reported(batch.input_tokens as u64, 0, 0),
            raw: serde_json::Value::Null,
        })
    }

    async fn list_models(&self) -> Result<Vec<ModelInfo>, LlmError> {
        let mut models = vec![ModelInfo {
            id: CHAT_MODEL.to_owned(),
            size_bytes: std::fs::metadata(self.chat.path())
                .ok()
                .map(|meta| meta.len()),
            raw: serde_json::json!({ "path": self.chat.path() }),
        }];
        if self.embedder.is_some() {
            models.push(ModelInfo {
                id: EMBEDDING_MODEL.to_owned(),
                size_bytes: None,
                raw: serde_json::Value::Null,
            });
        }
        Ok(models)
    }
}

/// Response ids unique within the process (`local-<pid>-<n>`).
fn next_response_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// A finished response as the deltas a stream of it would have carried.
fn replay(
    response: ChatResponse,
) -> impl futures_core::Stream<Item = Result<StreamDelta, LlmError>> {
    futures_util::stream::iter(response.to_deltas().into_iter().map(Ok))
}

/// Tool calling on a model without native tool support: the tools are described in a system
/// message and the reply is constrained (a JSON-schema token mask) to `{"name", "arguments"}`
/// of one declared tool, or, when the model may choose (`auto`), to `{"content"}` as well.
/// The constraint is what makes the call well-formed: arguments always match the tool's schema.
#[derive(Debug, Clone)]
struct ToolPlan {
    tools: Vec<Tool>,
    may_answer: bool,
}

/// What a constrained tool reply turned out to be.
enum ToolReply {
    Call(Box<ToolCall>),
    Content(String),
}

impl ToolPlan {
    /// The plan for `request`, or `None` when it declares no tools or forbids calling them.
    fn for_request(request: &LlmRequest) -> Option<ToolPlan> {
        if request.tools.is_empty() {
            return None;
        }
        let (tools, may_answer) = match &request.tool_choice {
            Some(ToolChoice::None) => return None,
            Some(ToolChoice::Function(name)) => (
                request
                    .tools
                    .iter()
                    .filter(|tool| &tool.function.name == name)
                    .cloned()
                    .collect::<Vec<_>>(),
                false,
            ),
            Some(ToolChoice::Required) => (request.tools.clone(), false),
            Some(ToolChoice::Auto) | None => (request.tools.clone(), true),
        };
        // A forced function that is not declared leaves nothing to call: answer in text.
        (!tools.is_empty()).then_some(ToolPlan { tools, may_answer })
    }

    /// The conversation with the tool instructions added as a system message.
    fn messages(&self, messages: &[Message]) -> Vec<Message> {
        let declarations: Vec<serde_json::Value> = self
            .tools
            .iter()
            .map(|tool| {
                serde_json::json!({
                    "name": tool.function.name,
                    "description": tool.function.description,
                    "parameters": tool.function.parameters,
                })
            })
            .collect();
        let mut instructions = format!(
            "You can call these tools:\n{}\nTo call a tool, reply with JSON \
             {{\"name\": TOOL_NAME, \"arguments\": {{...}}}}.",
            serde_json::Value::Array(declarations)
        );
        if self.may_answer {
            instructions
                .push_str(" To answer without a tool, reply with JSON {\"content\": YOUR_ANSWER}.");
        }
        let mut out = Vec::with_capacity(messages.len() + 1);
        out.push(Message::new(Role::System, instructions));
        out.extend(messages.iter().cloned());
        out
    }

    /// The JSON schema the reply is constrained to.
    fn constraint(&self) -> Constraint {
        let mut options: Vec<serde_json::Value> = self
            .tools
            .iter()
            .map(|tool| {
                serde_json::json!({
                    "type": "object",
                    "properties": {
                        "name": { "const": tool.function.name },
                        "arguments": tool
                            .function
                            .parameters
                            .clone()
                            .unwrap_or_else(|| serde_json::json!({ "type": "object" })),
                    },
                    "required": ["name", "arguments"],
                    "additionalProperties": false,
                })
            })
            .collect();
        if self.may_answer {
            options.push(serde_json::json!({
                "type": "object",
                "properties": { "content": { "type": "string" } },
                "required": ["content"],
                "additionalProperties": false,
            }));
        }
        let schema = if options.len() == 1 {
            options.remove(0)
        } else {
            serde_json::json!({ "anyOf": options })
        };
        Constraint::JsonSchema(schema)
    }

    /// Reads the constrained reply; `None` when generation stopped before the JSON was complete
    /// (e.g. `max_tokens`), in which case the raw text is returned as content.
    fn parse(&self, text: &str, response_id: &str) -> Option<ToolReply> {
        let value: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
        if let Some(content) = value.get("content").and_then(serde_json::Value::as_str) {
            return Some(ToolReply::Content(content.to_owned()));
        }
        let name = value.get("name")?.as_str()?;
        let arguments = value.get("arguments")?;
        Some(ToolReply::Call(Box::new(ToolCall::function(
            format!("call_{response_id}"),
            name,
            arguments.to_string(),
        ))))
    }
}
