//! OpenAI wire types of the gateway: reading chat and embeddings request bodies with errors
//! that name the offending parameter, and writing responses and stream chunks in exactly
//! OpenAI's shape so the official SDKs' parsers and stream accumulators work.

use base64::Engine;
use promptops_core::generation::GenerationConfig;
use promptops_core::message::{Extra, Key, Message, Tool};
use promptops_llm::{ChatRequest, ChatResponse, StreamDelta, StreamOptions, ToolChoice, Usage};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::error::GatewayError;

/// Body fields that belong to [`GenerationConfig`].
const GENERATION_KEYS: [&str; 14] = [
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "seed",
    "n",
    "logprobs",
    "top_logprobs",
    "response_format",
];

/// A chat completions body, read.
#[derive(Debug, Clone)]
pub struct ChatBody {
    /// `model` as sent.
    pub model: String,
    /// The request (its `model` is left empty; the runtime resolves `model` above).
    pub request: ChatRequest,
    /// `stream`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `prompt_variables`.
    pub prompt_variables: Option<Map<String, Value>>,
    /// `documents`: retrieved documents to ground the answer (a promptops extension).
    pub documents: Vec<promptops_runtime::RetrievedDocument>,
}

/// Reads `field` of the body as `T`; errors name `field` plus the path inside it.
fn field<T: DeserializeOwned>(name: &str, value: Value) -> Result<T, GatewayError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let mut param = name.to_owned();
        for segment in error.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    param.push_str(&format!("[{index}]"));
                }
                serde_path_to_error::Segment::Map { key } => {
                    param.push('.');
                    param.push_str(key);
                }
                serde_path_to_error::Segment::Enum { variant } => {
                    param.push('.');
                    param.push_str(variant);
                }
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        let reason = error.into_inner().to_string();
        GatewayError::bad_request(Some(param.clone()), format!("invalid `{param}`: {reason}"))
    })
}

/// Reads a body as a JSON object with `null` members dropped.
fn object(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        GatewayError::bad_request(None, format!("request body is not valid JSON: {error}"))
    })?;
    match value {
        Value::Object(mut map) => {
            map.retain(|_, value| !value.is_null());
            Ok(map)
        }
        _ => Err(GatewayError::bad_request(
            None,
            "request body must be a JSON object",
        )),
    }
}

/// Reads the required string `model`.
fn model_of(map: &mut Map<String, Value>) -> Result<String, GatewayError> {
    match map.remove("model") {
        Some(Value::String(model)) if !model.trim().is_empty() => Ok(model),
        Some(_) => Err(GatewayError::bad_request(
            Some("model".into()),
            "`model` must be a non-empty string",
        )),
        None => Err(GatewayError::bad_request(
            Some("model".into()),
            "missing required parameter `model`",
        )),
    }
}

/// Reads a chat completions body. The common shape is read typed straight from the bytes
/// ([`Members`]); anything that path does not take (a type error, a duplicate member, a bad
/// value) is read again through a JSON tree, which words the error and names the parameter.
pub fn parse_chat(body: &[u8]) -> Result<ChatBody, GatewayError> {
    // UTF-8 is checked once for the whole body: read from bytes, serde_json would check each
    // string and key on its own, at a fixed cost per string that dominates short ones.
    let Ok(text) = std::str::from_utf8(body) else {
        return parse_chat_tree(body);
    };
    match serde_json::from_str::<Members>(text) {
        Ok(members) => {
            if let Some(model) = members.model.filter(|model| !model.trim().is_empty())
                && let Ok(read) = chat_body(
                    model,
                    members.messages,
                    members.tools.unwrap_or_default(),
                    members.stream.unwrap_or(false),
                    members.rest,
                )
            {
                return Ok(read);
            }
            parse_chat_tree(body)
        }
        Err(_) => parse_chat_tree(body),
    }
}

/// The members of a chat body that the request path reads typed from the bytes, and the
/// rest as JSON values; `null` members count as absent, as [`object`] drops them. A repeated
/// member is an error here, so the tree path decides it (the last one wins there).
struct Members {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    tools: Option<Vec<Tool>>,
    stream: Option<bool>,
    rest: Map<String, Value>,
}

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> serde::de::Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Members, A::Error> {
        use serde::de::Error;
        fn once<T, E: Error>(
            slot: &mut Option<Option<T>>,
            value: Option<T>,
            key: &str,
        ) -> Result<(), E> {
            if slot.is_some() {
                return Err(E::custom(format_args!("duplicate member `{key}`")));
            }
            *slot = Some(value);
            Ok(())
        }
        let (mut model, mut messages, mut tools, mut stream) = (None, None, None, None);
        let mut rest = Map::new();
        while let Some(Key(key)) = access.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "model" => once(&mut model, access.next_value()?, "model")?,
                "messages" => once(&mut messages, access.next_value()?, "messages")?,
                "tools" => once(&mut tools, access.next_value()?, "tools")?,
                "stream" => once(&mut stream, access.next_value()?, "stream")?,
                _ => {
                    let value: Value = access.next_value()?;
                    if rest.contains_key(key.as_ref()) {
                        return Err(A::Error::custom(format_args!("duplicate member `{key}`")));
                    }
                    if !value.is_null() {
                        rest.insert(key.into_owned(), value);
                    }
                }
            }
        }
        Ok(Members {
            model: model.flatten(),
            messages: messages.flatten(),
            tools: tools.flatten(),
            stream: stream.flatten(),
            rest,
        })
    }
}

/// [`parse_chat`] through a JSON tree: slower, and every error names its parameter.
fn parse_chat_tree(body: &[u8]) -> Result<ChatBody, GatewayError> {
    let mut map = object(body)?;
    let model = model_of(&mut map)?;
    let messages: Option<Vec<Message>> = match map.remove("messages") {
        Some(value) => Some(field("messages", value)?),
        None => None,
    };
    let tools: Vec<Tool> = match map.remove("tools") {
        Some(value) => field("tools", value)?,
        None => Vec::new(),
    };
    let stream: bool = match map.remove("stream") {
        Some(value) => field("stream", value)?,
        None => false,
    };
    chat_body(model, messages, tools, stream, map)
}

/// The rest of a chat body, once `model`, `messages`, `tools` and `stream` are read; `map`
/// holds the other (non-null) members.
fn chat_body(
    model: String,
    messages: Option<Vec<Message>>,
    tools: Vec<Tool>,
    stream: bool,
    mut map: Map<String, Value>,
) -> Result<ChatBody, GatewayError> {
    let messages = match messages {
        Some(messages) => messages,
        // A prompt reference brings its own messages; extra ones are appended after them.
        None if model.starts_with("prompt:") => Vec::new(),
        None => {
            return Err(GatewayError::bad_request(
                Some("messages".into()),
                "missing required parameter `messages`",
            ));
        }
    };
    let tool_choice = match map.remove("tool_choice") {
        Some(value) => Some(ToolChoice::from_openai(&value).ok_or_else(|| {
            GatewayError::bad_request(
                Some("tool_choice".into()),
                "`tool_choice` must be \"auto\", \"none\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}",
            )
        })?),
        None => None,
    };
    let parallel_tool_calls: Option<bool> = match map.remove("parallel_tool_calls") {
        Some(value) => Some(field("parallel_tool_calls", value)?),
        None => None,
    };
    let include_usage = match map.remove("stream_options") {
        Some(Value::Object(options)) => match options.get("include_usage") {
            Some(value) => field::<Option<bool>>("stream_options.include_usage", value.clone())?
                .unwrap_or(false),
            None => false,
        },
        Some(_) => {
            return Err(GatewayError::bad_request(
                Some("stream_options".into()),
                "`stream_options` must be an object",
            ));
        }
        None => false,
    };
    let prompt_variables: Option<Map<String, Value>> = match map.remove("prompt_variables") {
        Some(value) => Some(field("prompt_variables", value)?),
        None => None,
    };
    let documents: Vec<promptops_runtime::RetrievedDocument> = match map.remove("documents") {
        Some(value) => field("documents", value)?,
        None => Vec::new(),
    };
    let mut generation_fields = Map::new();
    for key in GENERATION_KEYS {
        if let Some(value) = map.remove(key) {
            generation_fields.insert(key.to_owned(), value);
        }
    }
    let generation = parse_generation(generation_fields)?;
    let extra: Extra = map;
    Ok(ChatBody {
        model,
        request: ChatRequest {
            model: String::new(),
            messages,
            tools,
            tool_choice,
            parallel_tool_calls,
            generation,
            stream_options: StreamOptions {
                include_usage: true,
            },
            extra,
        },
        stream,
        include_usage,
        prompt_variables,
        documents,
    })
}

/// Reads the generation parameters; the error names the first parameter at fault.
fn parse_generation(fields: Map<String, Value>) -> Result<GenerationConfig, GatewayError> {
    if fields.is_empty() {
        return Ok(GenerationConfig::default());
    }
    match serde_json::from_value::<GenerationConfig>(Value::Object(fields.clone())) {
        Ok(config) => Ok(config),
        Err(whole) => {
            for (key, value) in &fields {
                let mut single = Map::new();
                single.insert(key.clone(), value.clone());
                if let Err(error) =
                    serde_json::from_value::<GenerationConfig>(Value::Object(single))
                {
                    return Err(GatewayError::bad_request(
                        Some(key.clone()),
                        format!("invalid `{key}`: {error}"),
                    ));
                }
            }
            Err(GatewayError::bad_request(None, whole.to_string()))
        }
    }
}

/// An embeddings body, read.
#[derive(Debug, Clone)]
pub struct EmbeddingsBody {
    /// `model`.
    pub model: String,
    /// The texts.
    pub input: Vec<String>,
    /// Whether vectors go out as base64 of little-endian f32 (else JSON floats).
    pub base64: bool,
    /// `dimensions`.
    pub dimensions: Option<u32>,
    /// Other fields, passed through.
    pub extra: Extra,
}

/// Reads an embeddings body (`input` a string or an array of strings).
pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingsBody, GatewayError> {
    let mut map = object(body)?;
    let model = model_of(&mut map)?;
    let input = match map.remove("input") {
        Some(Value::String(text)) => vec![text],
        Some(Value::Array(items)) => {
            let mut texts = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(text) => texts.push(text),
                    _ => {
                        return Err(GatewayError::bad_request(
                            Some(format!("input[{index}]")),
                            "only string inputs are supported (not token arrays)",
                        ));
                    }
                }
            }
            texts
        }
        Some(_) => {
            return Err(GatewayError::bad_request(
                Some("input".into()),
                "`input` must be a string or an array of strings",
            ));
        }
        None => {
            return Err(GatewayError::bad_request(
                Some("input".into()),
                "missing required parameter `input`",
            ));
        }
    };
    if input.is_empty() {
        return Err(GatewayError::bad_request(
            Some("input".into()),
            "`input` must not be empty",
        ));
    }
    let base64 = match map.remove("encoding_format") {
        Some(Value::String(format)) if format == "float" => false,
        Some(Value::String(format)) if format == "base64" => true,
        Some(_) => {
            return Err(GatewayError::bad_request(
                Some("encoding_format".into()),
                "`encoding_format` must be \"float\" or \"base64\"",
            ));
        }
        None => false,
    };
    let dimensions = match map.remove("dimensions") {
        Some(value) => Some(field("dimensions", value)?),
        None => None,
    };
    Ok(EmbeddingsBody {
        model,
        input,
        base64,
        dimensions,
        extra: map,
    })
}

/// OpenAI `usage`.
pub fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens(),
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    })
}

/// OpenAI `usage`, serialised without building a JSON tree.
#[derive(Serialize)]
struct WireUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedTokens,
    /// The call's cost ([`COST_MEMBER`]), when the catalog prices the model.
    #[serde(rename = "promptops_cost_usd", skip_serializing_if = "Option::is_none")]
    cost_usd: Option<f64>,
}

#[derive(Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

impl WireUsage {
    fn new(usage: &Usage, cost_usd: Option<f64>) -> Self {
        WireUsage {
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            total_tokens: usage.total_tokens(),
            prompt_tokens_details: CachedTokens {
                cached_tokens: usage.cached_tokens,
            },
            cost_usd,
        }
    }
}

#[derive(Serialize)]
struct WireChoice<'a> {
    index: u32,
    message: &'a Message,
    logprobs: &'a Option<Value>,
    finish_reason: &'a str,
}

/// A whole chat completion in OpenAI's shape, borrowed from the response: the request path
/// serialises it straight to bytes (no intermediate JSON tree).
#[derive(Serialize)]
pub struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<WireChoice<'a>>,
    usage: WireUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<&'a str>,
}

impl<'a> ChatCompletion<'a> {
    /// `response` as OpenAI's `chat.completion` object; `fallback_id` when the provider gave
    /// no id, `model` as the client should see it, `cost_usd` in `usage` as [`COST_MEMBER`]
    /// (the same member a stream's usage chunk carries).
    pub fn new(
        response: &'a ChatResponse,
        fallback_id: &'a str,
        model: &'a str,
        created: u64,
        cost_usd: Option<f64>,
    ) -> ChatCompletion<'a> {
        ChatCompletion {
            id: if response.id.is_empty() {
                fallback_id
            } else {
                response.id.as_str()
            },
            object: "chat.completion",
            created,
            model,
            choices: response
                .choices
                .iter()
                .map(|choice| WireChoice {
                    index: choice.index,
                    message: &choice.message,
                    logprobs: &choice.logprobs,
                    finish_reason: choice.finish_reason.as_openai(),
                })
                .collect(),
            usage: WireUsage::new(&response.usage, cost_usd),
            system_fingerprint: response.system_fingerprint.as_deref(),
        }
    }
}

/// A whole chat completion in OpenAI's shape without cost, as a JSON tree (for the response
/// cache); `None` only when a message cannot be represented as JSON.
pub fn chat_completion_json(
    response: &ChatResponse,
    fallback_id: &str,
    model: &str,
    created: u64,
) -> Option<Value> {
    serde_json::to_value(ChatCompletion::new(
        response,
        fallback_id,
        model,
        created,
        None,
    ))
    .ok()
}

/// The fixed part of every chunk of one stream.
#[derive(Debug, Clone)]
pub struct ChunkHeader {
    /// `chatcmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model named in chunks.
    pub model: String,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
}

/// Turns stream deltas into OpenAI chunk JSON, adding the role chunk before a choice's first
/// content as OpenAI does.
#[derive(Debug)]
pub struct ChunkEncoder {
    header: ChunkHeader,
    include_usage: bool,
    opened: Vec<bool>,
    cost_usd: Option<f64>,
}

/// The member of a streamed final chunk's `usage` carrying the call's cost in USD: a stream's
/// headers leave before the cost is known, so it cannot use the `x-promptops-cost-usd` header
/// of JSON answers (vendor members are `promptops_`-prefixed, like `promptops_source`).
pub const COST_MEMBER: &str = "promptops_cost_usd";

impl ChunkEncoder {
    /// An encoder for one stream.
    pub fn new(header: ChunkHeader, include_usage: bool) -> ChunkEncoder {
        ChunkEncoder {
            header,
            include_usage,
            opened: Vec::new(),
            cost_usd: None,
        }
    }

    /// The cost the usage chunk reports (as [`COST_MEMBER`]); set before encoding the usage.
    pub fn set_cost(&mut self, cost_usd: Option<f64>) {
        self.cost_usd = cost_usd;
    }

    /// The completion id every chunk carries.
    pub fn id(&self) -> &str {
        &self.header.id
    }

    /// The creation time every chunk carries, Unix seconds.
    pub fn created(&self) -> u64 {
        self.header.created
    }

    fn chunk(&self, choices: Vec<Value>, usage: Option<Value>) -> String {
        let usage_field = if self.include_usage {
            Some(usage.unwrap_or(Value::Null))
        } else {
            None
        };
        let chunk = Chunk {
            id: &self.header.id,
            object: "chat.completion.chunk",
            created: self.header.created,
            model: &self.header.model,
            choices,
            usage: usage_field,
        };
        serde_json::to_string(&chunk).unwrap_or_default()
    }

    fn choice(index: u32, delta: Value, finish: Option<&str>) -> Value {
        json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": finish})
    }

    /// The chunks (JSON texts) for one delta: zero, one or two.
    pub fn encode(&mut self, delta: &StreamDelta) -> Vec<String> {
        let mut out = Vec::new();
        let choice_index = match delta {
            StreamDelta::Text { choice, .. }
            | StreamDelta::ToolCall { choice, .. }
            | StreamDelta::Logprobs { choice, .. }
            | StreamDelta::Finish { choice, .. } => Some(*choice),
            StreamDelta::Usage(_) => None,
        };
        if let Some(index) = choice_index {
            let position = index as usize;
            if self.opened.len() <= position {
                self.opened.resize(position + 1, false);
            }
            if !self.opened[position] {
                self.opened[position] = true;
                out.push(self.chunk(
                    vec![Self::choice(
                        index,
                        json!({"role": "assistant", "content": ""}),
                        None,
                    )],
                    None,
                ));
            }
        }
        match delta {
            StreamDelta::Text { choice, text } => {
                out.push(self.chunk(
                    vec![Self::choice(*choice, json!({"content": text}), None)],
                    None,
                ));
            }
            StreamDelta::ToolCall {
                choice,
                index,
                id,
                name,
                arguments,
            } => {
                let mut call = Map::new();
                call.insert("index".into(), json!(index));
                let mut function = Map::new();
                if let Some(id) = id {
                    call.insert("id".into(), json!(id));
                    call.insert("type".into(), json!("function"));
                }
                if let Some(name) = name {
                    function.insert("name".into(), json!(name));
                }
                function.insert("arguments".into(), json!(arguments));
                call.insert("function".into(), Value::Object(function));
                out.push(self.chunk(
                    vec![Self::choice(
                        *choice,
                        json!({"tool_calls": [Value::Object(call)]}),
                        None,
                    )],
                    None,
                ));
            }
            StreamDelta::Logprobs { choice, content } => {
                // Its own chunk with an empty delta: clients merge `logprobs.content` lists.
                out.push(self.chunk(
                    vec![json!({
                        "index": choice,
                        "delta": {},
                        "logprobs": {"content": content},
                        "finish_reason": null,
                    })],
                    None,
                ));
            }
            StreamDelta::Finish { choice, reason } => {
                out.push(self.chunk(
                    vec![Self::choice(*choice, json!({}), Some(reason.as_openai()))],
                    None,
                ));
            }
            StreamDelta::Usage(usage) => {
                if self.include_usage {
                    let mut usage = usage_json(usage);
                    if let (Some(cost), Some(members)) = (self.cost_usd, usage.as_object_mut()) {
                        members.insert(COST_MEMBER.to_owned(), json!(cost));
                    }
                    out.push(self.chunk(Vec::new(), Some(usage)));
                }
            }
        }
        out
    }
}

/// One embedding vector as OpenAI sends it: floats, or base64 of little-endian f32.
pub fn embedding_json(vector: &[f32], base64: bool) -> Value {
    if base64 {
        let mut bytes = Vec::with_capacity(vector.len() * 4);
        for value in vector {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        json!(vector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(body: &str) -> Option<String> {
        match parse_chat(body.as_bytes()) {
            Err(GatewayError::BadRequest { param, .. }) => param,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn params_are_named() {
        assert_eq!(bad(r#"{"messages":[]}"#).as_deref(), Some("model"));
        assert_eq!(bad(r#"{"model":"m"}"#).as_deref(), Some("messages"));
        assert_eq!(
            bad(r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            bad(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":9}"#)
                .as_deref(),
            Some("temperature")
        );
        assert_eq!(
            bad(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":7}"#)
                .as_deref(),
            Some("tool_choice")
        );
        assert_eq!(bad("[1]"), None);
        assert_eq!(bad("{nope"), None);
    }

    #[test]
    fn a_body_that_is_not_utf8_is_a_400_saying_where() {
        let body = b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}";
        match parse_chat(body) {
            Err(GatewayError::BadRequest { message, .. }) => {
                assert!(message.contains("line 1 column"), "{message}");
            }
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    proptest::proptest! {
        /// The typed fast path reads every body exactly as the JSON-tree path does: the same
        /// request, or the same error. Bodies start valid (model and messages) more often
        /// than not, then mix in valid and invalid values, `null`s, unknown and repeated
        /// members.
        #[test]
        fn fast_and_tree_paths_agree(
            valid_start in proptest::bool::weighted(0.7),
            members in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "model", "messages", "tools", "stream", "temperature", "user",
                        "stream_options", "tool_choice", "max_tokens", "documents", "x\\u0041",
                        "metadata",
                    ]),
                    proptest::sample::select(vec![
                        r#""gpt""#, r#""prompt:p""#, r#""  ""#, "null", "7", "true", "1.5",
                        r#"[{"role":"user","content":"hi"}]"#,
                        r#"[{"role":"wizard","content":"x"}]"#,
                        r#"[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}]"#,
                        r#"[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]"#,
                        r#"{"include_usage":true}"#, r#""auto""#, "[]", "{}", r#""u-\u00e9""#,
                    ]),
                ),
                0..6,
            ),
        ) {
            let mut parts = Vec::new();
            if valid_start {
                parts.push(r#""model":"gpt","messages":[{"role":"user","content":"hi"}]"#.to_owned());
            }
            parts.extend(members.iter().map(|(key, value)| format!("\"{key}\":{value}")));
            let body = format!("{{{}}}", parts.join(","));
            // `extra` keeps body order on the fast path; the tree path's removals reorder
            // it (an index map's swap-remove). JSON members are unordered: compare sorted.
            let sorted = |read: Result<ChatBody, GatewayError>| {
                read.map(|mut body| {
                    body.request.extra.sort_keys();
                    body
                })
            };
            let fast = format!("{:?}", sorted(parse_chat(body.as_bytes())));
            let tree = format!("{:?}", sorted(parse_chat_tree(body.as_bytes())));
            proptest::prop_assert_eq!(fast, tree, "body {}", body);
        }
    }

    #[test]
    fn full_body_reads() {
        let body = parse_chat(
            br#"{"model":"fast","messages":[{"role":"user","content":"hi"}],"stream":true,
                "stream_options":{"include_usage":true},"temperature":0,"seed":7,"n":2,
                "stop":["x"],"user":"u1","response_format":{"type":"json_object"},
                "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
                "tool_choice":"auto","logprobs":true,"top_logprobs":2,"max_tokens":null}"#,
        )
        .unwrap();
        assert!(body.stream && body.include_usage);
        assert_eq!(body.request.generation.seed(), Some(7));
        assert_eq!(body.request.generation.n(), Some(2));
        assert_eq!(body.request.tools.len(), 1);
        assert_eq!(body.request.tool_choice, Some(ToolChoice::Auto));
        assert_eq!(body.request.extra.get("user"), Some(&json!("u1")));
    }

    #[test]
    fn chunks_have_openai_shape() {
        let mut encoder = ChunkEncoder::new(
            ChunkHeader {
                id: "chatcmpl-1".into(),
                created: 1,
                model: "m".into(),
            },
            true,
        );
        let first = encoder.encode(&StreamDelta::ToolCall {
            choice: 0,
            index: 0,
            id: Some("call_1".into()),
            name: Some("f".into()),
            arguments: String::new(),
        });
        assert_eq!(first.len(), 2);
        let role: Value = serde_json::from_str(&first[0]).unwrap();
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(role["usage"], Value::Null);
        let call: Value = serde_json::from_str(&first[1]).unwrap();
        assert_eq!(call["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(
            call["choices"][0]["delta"]["tool_calls"][0]["type"],
            "function"
        );
        let usage = encoder.encode(&StreamDelta::Usage(Usage::reported(3, 4, 1)));
        let usage: Value = serde_json::from_str(&usage[0]).unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 7);
    }

    #[test]
    fn embeddings_body() {
        let body =
            parse_embeddings(br#"{"model":"m","input":"hi","encoding_format":"base64"}"#).unwrap();
        assert!(body.base64);
        assert_eq!(body.input, vec!["hi"]);
        assert!(parse_embeddings(br#"{"model":"m","input":[1,2]}"#).is_err());
        let encoded = embedding_json(&[1.0, -2.0], true);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        assert_eq!(f32::from_le_bytes(bytes[4..8].try_into().unwrap()), -2.0);
    }
}
