//! Conversion between our OpenAI-shaped chat messages and the Anthropic Messages API format.
//!
//! Anthropic differs from OpenAI in four ways that matter here: the system prompt is a top-level
//! field rather than a message; turns must alternate user/assistant; a tool call is a `tool_use`
//! content block whose `input` is a JSON object (OpenAI sends a JSON *string*); and tool results
//! are `tool_result` blocks inside a user turn. What has no counterpart on the other side is
//! either dropped (message `name`, image `detail`, `refusal`, `is_error`, text `citations` in
//! responses) or refused with an error naming the place (audio and other unknown parts, legacy
//! `function` messages, thinking blocks); nothing is silently rewritten into something else.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::CoreError;
use crate::message::{
    Content, ContentPart, Extra, KnownPart, Message, Role, TextOrList, Tool, ToolCall,
    deserialize_text_or_list, parse_wire,
};

/// The two roles of an Anthropic turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnthropicRole {
    /// The user, including tool results.
    User,
    /// The model.
    Assistant,
}

/// One turn of an Anthropic conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnthropicMessage {
    /// Who speaks.
    pub role: AnthropicRole,
    /// What is said.
    pub content: AnthropicContent,
}

/// Anthropic content (of a turn, the system prompt or a tool result): a string or blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnthropicContent {
    /// Shorthand for a single text block.
    Text(String),
    /// Typed content blocks.
    Blocks(Vec<ContentBlock>),
}

impl<'de> Deserialize<'de> for AnthropicContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(
            match deserialize_text_or_list(deserializer, "a string or an array of content blocks")?
            {
                TextOrList::Text(text) => AnthropicContent::Text(text),
                TextOrList::List(blocks) => AnthropicContent::Blocks(blocks),
            },
        )
    }
}

/// One Anthropic content block. Read it through serde's `Deserialize` trait (e.g.
/// `serde_json::from_str`), which keeps unknown block types as [`ContentBlock::Other`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// `{"type":"text","text":...}`; `extra` keeps `cache_control`, `citations`.
    Text {
        /// The text.
        text: String,
        /// Unknown fields.
        #[serde(flatten)]
        extra: Extra,
    },
    /// `{"type":"image","source":...}`.
    Image {
        /// Where the image bytes are.
        source: ImageSource,
        /// Unknown fields.
        #[serde(flatten)]
        extra: Extra,
    },
    /// A tool call made by the assistant.
    ToolUse {
        /// Identifier quoted by the matching `tool_result`.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments, a JSON object.
        input: Value,
        /// Unknown fields.
        #[serde(flatten)]
        extra: Extra,
    },
    /// The result of a tool call, sent in a user turn.
    ToolResult {
        /// The id of the `tool_use` block answered.
        tool_use_id: String,
        /// The result, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<AnthropicContent>,
        /// Whether the tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        /// Unknown fields.
        #[serde(flatten)]
        extra: Extra,
    },
    /// Any other block type (`thinking`, `document`, ...), kept verbatim.
    #[serde(skip)]
    Other(Value),
}

/// The block `type`s that [`ContentBlock`] models; a block of such a type must be well-formed.
const KNOWN_BLOCK_TYPES: [&str; 4] = ["text", "image", "tool_use", "tool_result"];

impl Serialize for ContentBlock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ContentBlock::Other(value) => value.serialize(serializer),
            known => ContentBlock::serialize(known, serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let Some(kind) = value.get("type").and_then(Value::as_str) else {
            return Err(D::Error::custom(
                "a content block must be an object with a string `type`",
            ));
        };
        let Some(known) = KNOWN_BLOCK_TYPES.into_iter().find(|known| *known == kind) else {
            return Ok(ContentBlock::Other(value));
        };
        ContentBlock::deserialize(value)
            .map_err(|error| D::Error::custom(format!("{known} block: {error}")))
    }
}

/// Where an Anthropic image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// Inline bytes.
    Base64 {
        /// MIME type, e.g. `image/png`.
        media_type: String,
        /// Base64-encoded bytes.
        data: String,
    },
    /// An http(s) URL that Anthropic fetches.
    Url {
        /// The URL.
        url: String,
    },
}

/// A tool declaration in Anthropic's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnthropicTool {
    /// Tool name.
    pub name: String,
    /// What the tool does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the input object.
    pub input_schema: Value,
    /// Unknown fields (e.g. `cache_control`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The conversation part of an Anthropic Messages request: serialise it into the request body
/// next to `model` and `max_tokens`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AnthropicRequestParts {
    /// The hoisted system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<AnthropicContent>,
    /// Alternating user/assistant turns.
    pub messages: Vec<AnthropicMessage>,
    /// Tool declarations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<AnthropicTool>,
}

/// Parses an Anthropic Messages request body (its `system`, `messages` and `tools`; other fields
/// are ignored); errors name the JSON path, e.g. `messages[1].content[0]`.
pub fn parse_anthropic_request(json: &str) -> Result<AnthropicRequestParts, CoreError> {
    parse_wire("anthropic", "", json)
}

/// Converts OpenAI-shaped messages and tools to an Anthropic request.
///
/// System and developer messages (wherever they stand) become the top-level `system`; tool
/// messages become `tool_result` blocks of a user turn; consecutive turns of one role merge, as
/// Anthropic requires alternation; empty text is left out, as Anthropic rejects empty blocks.
pub fn to_anthropic(
    messages: &[Message],
    tools: &[Tool],
) -> Result<AnthropicRequestParts, CoreError> {
    let mut system = Vec::new();
    let mut turns: Vec<(AnthropicRole, Vec<ContentBlock>)> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let path = format!("messages[{index}]");
        let (role, blocks) = match message.role {
            Role::System | Role::Developer => {
                system.extend(system_blocks(message, &path)?);
                continue;
            }
            Role::User => (AnthropicRole::User, content_blocks(message, &path)?),
            Role::Assistant => (AnthropicRole::Assistant, assistant_blocks(message, &path)?),
            Role::Tool => (
                AnthropicRole::User,
                vec![tool_result_block(message, &path)?],
            ),
            Role::Function => {
                return Err(openai_error(
                    format!("{path}.role"),
                    "legacy `function` messages have no Anthropic equivalent; send `tool` messages",
                ));
            }
        };
        match turns.last_mut() {
            _ if blocks.is_empty() => {}
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    Ok(AnthropicRequestParts {
        system: (!system.is_empty()).then(|| compact(system)),
        messages: turns
            .into_iter()
            .map(|(role, blocks)| AnthropicMessage {
                role,
                content: compact(blocks),
            })
            .collect(),
        tools: tools
            .iter()
            .enumerate()
            .map(|(index, tool)| anthropic_tool(tool, index))
            .collect::<Result<_, _>>()?,
    })
}

/// Converts an Anthropic conversation back to OpenAI-shaped messages.
///
/// The system prompt becomes one system message; `tool_use` blocks become `tool_calls` (input
/// serialised as the arguments string); each `tool_result` becomes a tool message, in block
/// order. A lone plain text block becomes string content; several blocks become content parts
/// (so `cache_control` survives), whose [`Content::text`] joins the texts.
pub fn from_anthropic(
    system: Option<&AnthropicContent>,
    messages: &[AnthropicMessage],
) -> Result<Vec<Message>, CoreError> {
    let mut converted = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = system {
        let content = openai_content(system, "system")?.unwrap_or(Content::Text(String::new()));
        converted.push(with_content(Role::System, Some(content)));
    }
    for (index, turn) in messages.iter().enumerate() {
        let path = format!("messages[{index}]");
        match turn.role {
            AnthropicRole::User => push_user_turn(&turn.content, &path, &mut converted)?,
            AnthropicRole::Assistant => converted.push(assistant_turn(&turn.content, &path)?),
        }
    }
    Ok(converted)
}

/// Converts the `content` array of an Anthropic response into the assistant message of an OpenAI
/// chat completion: text blocks concatenated (Anthropic splits cited text into adjacent blocks)
/// and `tool_use` blocks as tool calls. Other blocks (e.g. `thinking`) are an error naming
/// them; filter them out first if they are expected.
pub fn message_from_response(content: &[ContentBlock]) -> Result<Message, CoreError> {
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for (index, block) in content.iter().enumerate() {
        match block {
            ContentBlock::Text { text: piece, .. } => text.get_or_insert_default().push_str(piece),
            ContentBlock::ToolUse {
                id, name, input, ..
            } => tool_calls.push(ToolCall::function(id, name, input.to_string())),
            other => {
                return Err(anthropic_error(
                    format!("content[{index}]"),
                    format!(
                        "a {} block cannot be part of an OpenAI assistant message",
                        block_type(other)
                    ),
                ));
            }
        }
    }
    Ok(Message {
        tool_calls,
        ..with_content(Role::Assistant, text.map(Content::Text))
    })
}

/// A message of `role` with `content` and nothing else.
fn with_content(role: Role, content: Option<Content>) -> Message {
    Message {
        content,
        ..Message::new(role, "")
    }
}

fn openai_error(path: String, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidWire {
        format: "openai",
        path,
        reason: reason.into(),
    }
}

fn anthropic_error(path: String, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidWire {
        format: "anthropic",
        path,
        reason: reason.into(),
    }
}

/// Blocks as string shorthand when they are a single plain text block.
fn compact(mut blocks: Vec<ContentBlock>) -> AnthropicContent {
    match blocks.as_mut_slice() {
        [ContentBlock::Text { text, extra }] if extra.is_empty() => {
            AnthropicContent::Text(std::mem::take(text))
        }
        _ => AnthropicContent::Blocks(blocks),
    }
}

/// A text block, or none for empty text (Anthropic rejects empty text blocks).
fn text_block(text: &str, extra: &Extra) -> Option<ContentBlock> {
    (!text.is_empty()).then(|| ContentBlock::Text {
        text: text.to_owned(),
        extra: extra.clone(),
    })
}

/// The system blocks of a system or developer message: text only, as Anthropic requires.
fn system_blocks(message: &Message, path: &str) -> Result<Vec<ContentBlock>, CoreError> {
    if let Some(Content::Parts(parts)) = &message.content
        && let Some(index) = parts.iter().position(|part| part.as_text().is_none())
    {
        return Err(openai_error(
            format!("{path}.content[{index}]"),
            "an Anthropic system prompt can only hold text",
        ));
    }
    content_blocks(message, path)
}

/// The content of a message as Anthropic blocks.
fn content_blocks(message: &Message, path: &str) -> Result<Vec<ContentBlock>, CoreError> {
    match &message.content {
        None => Ok(Vec::new()),
        Some(Content::Text(text)) => Ok(text_block(text, &Extra::new()).into_iter().collect()),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .filter_map(|(index, part)| {
                part_block(part, &format!("{path}.content[{index}]")).transpose()
            })
            .collect(),
    }
}

/// One content part as an Anthropic block (none for empty text).
fn part_block(part: &ContentPart, path: &str) -> Result<Option<ContentBlock>, CoreError> {
    match part {
        ContentPart::Known(KnownPart::Text { text, extra }) => Ok(text_block(text, extra)),
        ContentPart::Known(KnownPart::ImageUrl { image_url, extra }) => {
            Ok(Some(ContentBlock::Image {
                source: image_source(&image_url.url, path)?,
                extra: extra.clone(),
            }))
        }
        ContentPart::Other(value) => Err(openai_error(
            path.to_owned(),
            format!(
                "a content part of type {} has no Anthropic equivalent",
                value.get("type").unwrap_or(&Value::Null)
            ),
        )),
    }
}

/// The Anthropic source of an OpenAI image URL: base64 for `data:` URLs, `url` for http(s).
fn image_source(url: &str, path: &str) -> Result<ImageSource, CoreError> {
    let url_path = || format!("{path}.image_url.url");
    if let Some(data_url) = url.strip_prefix("data:") {
        let (media_type, data) = data_url
            .split_once(',')
            .and_then(|(meta, data)| Some((meta.strip_suffix(";base64")?, data)))
            .ok_or_else(|| {
                openai_error(
                    url_path(),
                    "a data: URL must have the form data:<media type>;base64,<data>",
                )
            })?;
        return Ok(ImageSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(ImageSource::Url {
            url: url.to_owned(),
        });
    }
    let scheme = url.split_once(':').map_or("(none)", |(scheme, _)| scheme);
    Err(openai_error(
        url_path(),
        format!("image URL scheme {scheme:?} is not supported; use http(s) or a base64 data: URL"),
    ))
}

/// The blocks of an assistant message: its text, then one `tool_use` per tool call.
fn assistant_blocks(message: &Message, path: &str) -> Result<Vec<ContentBlock>, CoreError> {
    let mut blocks = content_blocks(message, path)?;
    for (index, call) in message.tool_calls.iter().enumerate() {
        let call_path = format!("{path}.tool_calls[{index}]");
        if call.kind != "function" {
            return Err(openai_error(
                format!("{call_path}.type"),
                format!(
                    "tool call {:?} has type {:?}; only `function` calls convert",
                    call.id, call.kind
                ),
            ));
        }
        blocks.push(ContentBlock::ToolUse {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input: tool_input(call, &call_path)?,
            extra: Extra::new(),
        });
    }
    Ok(blocks)
}

/// The arguments string of a tool call parsed to the JSON object Anthropic wants as `input`.
/// Empty arguments (some models send them for argument-less tools) mean `{}`.
fn tool_input(call: &ToolCall, path: &str) -> Result<Value, CoreError> {
    let arguments = call.function.arguments.trim();
    if arguments.is_empty() {
        return Ok(Value::Object(Extra::new()));
    }
    let problem = match serde_json::from_str::<Value>(arguments) {
        Ok(input @ Value::Object(_)) => return Ok(input),
        Ok(other) => format!("are {}, not a JSON object", json_kind(&other)),
        Err(error) => format!("are not valid JSON ({error})"),
    };
    Err(openai_error(
        format!("{path}.function.arguments"),
        format!("the arguments of tool call {:?} {problem}", call.id),
    ))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A tool message as a `tool_result` block.
fn tool_result_block(message: &Message, path: &str) -> Result<ContentBlock, CoreError> {
    let tool_use_id = message.tool_call_id.clone().ok_or_else(|| {
        openai_error(
            format!("{path}.tool_call_id"),
            "a tool message needs `tool_call_id` to become an Anthropic tool_result",
        )
    })?;
    let content = match &message.content {
        None => None,
        Some(Content::Text(text)) => Some(AnthropicContent::Text(text.clone())),
        Some(Content::Parts(_)) => Some(AnthropicContent::Blocks(content_blocks(message, path)?)),
    };
    Ok(ContentBlock::ToolResult {
        tool_use_id,
        content,
        is_error: None,
        extra: Extra::new(),
    })
}

/// An OpenAI function tool as an Anthropic tool; a missing schema means "no arguments".
fn anthropic_tool(tool: &Tool, index: usize) -> Result<AnthropicTool, CoreError> {
    if tool.kind != "function" {
        return Err(openai_error(
            format!("tools[{index}].type"),
            format!("tool type {:?} has no Anthropic equivalent", tool.kind),
        ));
    }
    let function = &tool.function;
    Ok(AnthropicTool {
        name: function.name.clone(),
        description: function.description.clone(),
        input_schema: function
            .parameters
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        extra: tool.extra.clone(),
    })
}

/// The wire `type` of a block, for error messages.
fn block_type(block: &ContentBlock) -> String {
    match block {
        ContentBlock::Text { .. } => "text".to_owned(),
        ContentBlock::Image { .. } => "image".to_owned(),
        ContentBlock::ToolUse { .. } => "tool_use".to_owned(),
        ContentBlock::ToolResult { .. } => "tool_result".to_owned(),
        ContentBlock::Other(value) => value.get("type").unwrap_or(&Value::Null).to_string(),
    }
}

/// Anthropic content (text and images only) as OpenAI content; `None` when there are no blocks.
fn openai_content(content: &AnthropicContent, path: &str) -> Result<Option<Content>, CoreError> {
    match content {
        AnthropicContent::Text(text) => Ok(Some(Content::Text(text.clone()))),
        AnthropicContent::Blocks(blocks) => {
            let parts = blocks
                .iter()
                .enumerate()
                .map(|(index, block)| openai_part(block, &format!("{path}.content[{index}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(parts_content(parts))
        }
    }
}

/// Parts as content: a lone plain text part becomes string content; no parts, no content.
fn parts_content(mut parts: Vec<ContentPart>) -> Option<Content> {
    match parts.as_mut_slice() {
        [] => None,
        [ContentPart::Known(KnownPart::Text { text, extra })] if extra.is_empty() => {
            Some(Content::Text(std::mem::take(text)))
        }
        _ => Some(Content::Parts(parts)),
    }
}

/// A text or image block as an OpenAI content part.
fn openai_part(block: &ContentBlock, path: &str) -> Result<ContentPart, CoreError> {
    match block {
        ContentBlock::Text { text, extra } => Ok(ContentPart::Known(KnownPart::Text {
            text: text.clone(),
            extra: extra.clone(),
        })),
        ContentBlock::Image { source, extra } => {
            let url = match source {
                ImageSource::Base64 { media_type, data } => {
                    format!("data:{media_type};base64,{data}")
                }
                ImageSource::Url { url } => url.clone(),
            };
            let mut part = ContentPart::image_url(url);
            if let ContentPart::Known(KnownPart::ImageUrl {
                extra: part_extra, ..
            }) = &mut part
            {
                part_extra.clone_from(extra);
            }
            Ok(part)
        }
        other => Err(anthropic_error(
            path.to_owned(),
            format!("a {} block is not allowed here", block_type(other)),
        )),
    }
}

/// A user turn as OpenAI messages: each `tool_result` becomes a tool message, and the blocks
/// between them user messages, keeping block order.
fn push_user_turn(
    content: &AnthropicContent,
    path: &str,
    converted: &mut Vec<Message>,
) -> Result<(), CoreError> {
    let AnthropicContent::Blocks(blocks) = content else {
        converted.push(with_content(Role::User, openai_content(content, path)?));
        return Ok(());
    };
    let mut pending = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        let block_path = format!("{path}.content[{index}]");
        if let ContentBlock::ToolResult {
            tool_use_id,
            content,
            ..
        } = block
        {
            flush_user_parts(&mut pending, converted);
            let result = match content {
                Some(content) => openai_content(content, &block_path)?,
                None => None,
            };
            converted.push(Message {
                tool_call_id: Some(tool_use_id.clone()),
                ..with_content(
                    Role::Tool,
                    Some(result.unwrap_or(Content::Text(String::new()))),
                )
            });
        } else {
            pending.push(openai_part(block, &block_path)?);
        }
    }
    flush_user_parts(&mut pending, converted);
    Ok(())
}

fn flush_user_parts(pending: &mut Vec<ContentPart>, converted: &mut Vec<Message>) {
    if let Some(content) = parts_content(std::mem::take(pending)) {
        converted.push(with_content(Role::User, Some(content)));
    }
}

/// An assistant turn as one assistant message: text and images as content, `tool_use` blocks as
/// tool calls.
fn assistant_turn(content: &AnthropicContent, path: &str) -> Result<Message, CoreError> {
    let AnthropicContent::Blocks(blocks) = content else {
        return Ok(with_content(
            Role::Assistant,
            openai_content(content, path)?,
        ));
    };
    let mut parts = Vec::new();
    let mut tool_calls = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        match block {
            ContentBlock::ToolUse {
                id, name, input, ..
            } => tool_calls.push(ToolCall::function(id, name, input.to_string())),
            other => parts.push(openai_part(other, &format!("{path}.content[{index}]"))?),
        }
    }
    Ok(Message {
        tool_calls,
        ..with_content(Role::Assistant, parts_content(parts))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::parse_messages;
    use serde_json::json;

    /// Converts the OpenAI `messages` (no tools) and compares with the expected Anthropic request
    /// parts, or the expected error message.
    fn check(messages: Value, expected: Result<Value, &str>) {
        let messages = parse_messages(&messages.to_string()).unwrap();
        let converted =
            to_anthropic(&messages, &[]).map(|parts| serde_json::to_value(parts).unwrap());
        assert_eq!(
            converted.map_err(|error| error.to_string()),
            expected.map_err(str::to_owned)
        );
    }

    /// Converts an Anthropic request back and compares with the expected OpenAI messages, or the
    /// expected error message.
    fn check_back(request: Value, expected: Result<Value, &str>) {
        let request = parse_anthropic_request(&request.to_string()).unwrap();
        let converted = from_anthropic(request.system.as_ref(), &request.messages)
            .map(|messages| serde_json::to_value(messages).unwrap());
        assert_eq!(
            converted.map_err(|error| error.to_string()),
            expected.map_err(str::to_owned)
        );
    }

    #[test]
    fn hoists_system_and_developer_messages() {
        check(
            json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]),
            Ok(json!({"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]})),
        );
        check(
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "developer", "content": [{"type": "text", "text": "Use French.", "cache_control": {"type": "ephemeral"}}]},
            ]),
            Ok(json!({
                "system": [
                    {"type": "text", "text": "Be brief."},
                    {"type": "text", "text": "Use French.", "cache_control": {"type": "ephemeral"}},
                ],
                "messages": [{"role": "user", "content": "Hi"}],
            })),
        );
        check(
            json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]),
            Err(
                "invalid openai payload at messages[0].content[0]: an Anthropic system prompt can only hold text",
            ),
        );
    }

    #[test]
    fn merges_consecutive_turns_and_drops_empty_text() {
        check(
            json!([
                {"role": "user", "content": "one"},
                {"role": "user", "content": "two"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": " "}},
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "r1"},
                {"role": "user", "content": "three"},
            ]),
            Ok(json!({"messages": [
                {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "r1"},
                    {"type": "text", "text": "three"},
                ]},
            ]})),
        );
    }

    #[test]
    fn converts_image_urls() {
        check(
            json!([{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
            ]}]),
            Ok(json!({"messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
            ]}]})),
        );
        check(
            json!([{"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]}]),
            Err(
                "invalid openai payload at messages[0].content[1].image_url.url: a data: URL must have the form data:<media type>;base64,<data>",
            ),
        );
        check(
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x.test/a.png"}}]}]),
            Err(
                "invalid openai payload at messages[0].content[0].image_url.url: image URL scheme \"ftp\" is not supported; use http(s) or a base64 data: URL",
            ),
        );
    }

    #[test]
    fn refuses_what_anthropic_cannot_express() {
        let call = |arguments: &str| {
            json!([
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_ok", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "call_bad", "type": "function", "function": {"name": "f", "arguments": arguments}},
                ]},
            ])
        };
        check(
            call("{\"city\": \"Par"),
            Err(
                "invalid openai payload at messages[1].tool_calls[1].function.arguments: the arguments of tool call \"call_bad\" are not valid JSON (EOF while parsing a string at line 1 column 13)",
            ),
        );
        check(
            call("[1, 2]"),
            Err(
                "invalid openai payload at messages[1].tool_calls[1].function.arguments: the arguments of tool call \"call_bad\" are an array, not a JSON object",
            ),
        );
        check(
            json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}]}]),
            Err(
                "invalid openai payload at messages[0].content[0]: a content part of type \"input_audio\" has no Anthropic equivalent",
            ),
        );
        check(
            json!([{"role": "function", "name": "f", "content": "1"}]),
            Err(
                "invalid openai payload at messages[0].role: legacy `function` messages have no Anthropic equivalent; send `tool` messages",
            ),
        );
        let orphan = Message {
            tool_call_id: None,
            ..Message::tool_result("x", "42")
        };
        let error = to_anthropic(&[Message::user("go"), orphan], &[]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid openai payload at messages[1].tool_call_id: a tool message needs `tool_call_id` to become an Anthropic tool_result"
        );
    }

    #[test]
    fn converts_tools() {
        let tools: Vec<Tool> = serde_json::from_value(json!([
            {"type": "function", "function": {"name": "now", "description": "Current time."}},
            {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}, "cache_control": {"type": "ephemeral"}},
        ]))
        .unwrap();
        let parts = to_anthropic(&[], &tools).unwrap();
        assert_eq!(
            serde_json::to_value(&parts.tools).unwrap(),
            json!([
                {"name": "now", "description": "Current time.", "input_schema": {"type": "object", "properties": {}}},
                {"name": "add", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
            ])
        );
        let custom: Vec<Tool> =
            serde_json::from_value(json!([{"type": "custom", "function": {"name": "x"}}])).unwrap();
        assert_eq!(
            to_anthropic(&[], &custom).unwrap_err().to_string(),
            "invalid openai payload at tools[0].type: tool type \"custom\" has no Anthropic equivalent"
        );
    }

    #[test]
    fn converts_back_in_block_order() {
        check_back(
            json!({"system": "Be brief.", "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Oslo"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "-3 C", "is_error": false},
                    {"type": "text", "text": "And tomorrow?"},
                    {"type": "tool_result", "tool_use_id": "t2"},
                ]},
            ]}),
            Ok(json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Oslo\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "t1", "content": "-3 C"},
                {"role": "user", "content": "And tomorrow?"},
                {"role": "tool", "tool_call_id": "t2", "content": ""},
            ])),
        );
        check_back(
            json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "Long document", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
            ]}]}),
            Ok(json!([{"role": "user", "content": [
                {"type": "text", "text": "Long document", "cache_control": {"type": "ephemeral"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
            ]}])),
        );
    }

    #[test]
    fn converting_back_names_misplaced_and_unknown_blocks() {
        check_back(
            json!({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]}),
            Err(
                "invalid anthropic payload at messages[0].content[0]: a tool_use block is not allowed here",
            ),
        );
        check_back(
            json!({"messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "c2ln"}]},
            ]}),
            Err(
                "invalid anthropic payload at messages[1].content[0]: a \"thinking\" block is not allowed here",
            ),
        );
    }

    #[test]
    fn keeps_unknown_blocks_and_names_malformed_ones() {
        let request = json!({"messages": [{"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
            {"type": "text", "text": "Hi", "citations": [{"type": "char_location", "cited_text": "x"}]},
        ]}]});
        let parsed = parse_anthropic_request(&request.to_string()).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), request);
        let error = parse_anthropic_request(r#"{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}"#)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid anthropic payload at messages[0].content[0]: image block: unknown variant `file`, expected `base64` or `url` at line 1 column 95"
        );
        let error = parse_anthropic_request(r#"{"messages":[{"role":"system","content":"x"}]}"#)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid anthropic payload at messages[0].role: unknown variant `system`, expected `user` or `assistant` at line 1 column 29"
        );
    }

    #[test]
    fn converts_a_response() {
        let content: Vec<ContentBlock> = serde_json::from_value(json!([
            {"type": "text", "text": "The grass is "},
            {"type": "text", "text": "green", "citations": []},
            {"type": "text", "text": "."},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "grass"}},
        ]))
        .unwrap();
        let message = message_from_response(&content).unwrap();
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            json!({"role": "assistant", "content": "The grass is green.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"grass\"}"}},
            ]})
        );
        let tools_only = message_from_response(&content[3..]).unwrap();
        assert_eq!(tools_only.content, None);
        let thinking: Vec<ContentBlock> =
            serde_json::from_value(json!([{"type": "redacted_thinking", "data": "EmwK"}])).unwrap();
        assert_eq!(
            message_from_response(&thinking).unwrap_err().to_string(),
            "invalid anthropic payload at content[0]: a \"redacted_thinking\" block cannot be part of an OpenAI assistant message"
        );
    }
}
