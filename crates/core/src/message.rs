//! Chat messages, content parts, tool definitions and tool calls in the OpenAI chat wire format.
//!
//! The types read and write the OpenAI JSON shape directly, and every object keeps the fields it
//! does not know in `extra`, so a request passing through promptops reaches the upstream provider
//! with nothing dropped (new vendor fields keep working without a release of ours).
//!
//! Round trip: JSON → [`Message`] → JSON gives back an equal `serde_json::Value` for everything
//! OpenAI accepts, with three normalisations: an absent `content` is written back as `null` (what
//! OpenAI itself sends for tool-call-only assistant turns), an absent tool/tool-call `type` is
//! written as `"function"`, and `null` or `[]` in the optional `name`, `tool_call_id`,
//! `tool_calls` fields are written as absent.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::CoreError;

/// Unknown JSON fields of an object, kept so that serialisation gives them back unchanged.
pub type Extra = Map<String, Value>;

/// A string read without a copy when the input holds it unescaped (an object key, a role).
/// `Cow<str>`'s own `Deserialize` always copies.
pub struct Key<'de>(pub Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }

            fn visit_string<E: serde::de::Error>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Declares a wire-shape struct whose known members are read into `Option`s (present or not)
/// and whose other members go to `extra`, in one pass over the object, and the `Deserialize`
/// of the public type that its `TryFrom<raw>` settles (required members, defaults, checks).
///
/// This stands in for `#[serde(flatten)]`, which buffers the whole object into an intermediate
/// tree before reading it (the `messages` bench: an answer's message reads in about three
/// quarters of the time). `tests/wire_reader_oracle.rs` holds it to the flatten derive.
macro_rules! wire_object {
    ($(#[$meta:meta])* $raw:ident => $target:ident expecting $expecting:literal {
        $($field:ident: $ty:ty = $key:literal),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Default)]
        struct $raw {
            $($field: Option<$ty>,)*
            extra: Extra,
        }

        impl<'de> Deserialize<'de> for $target {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct RawVisitor;

                impl<'de> Visitor<'de> for RawVisitor {
                    type Value = $target;

                    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                        formatter.write_str($expecting)
                    }

                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$target, A::Error> {
                        let mut raw = $raw::default();
                        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                            match key.as_ref() {
                                $($key => {
                                    if raw.$field.is_some() {
                                        return Err(A::Error::duplicate_field($key));
                                    }
                                    raw.$field = Some(map.next_value()?);
                                })*
                                _ => {
                                    let value: Value = map.next_value()?;
                                    raw.extra.insert(key.into_owned(), value);
                                }
                            }
                        }
                        // Settled here, inside the object, so an error points where serde's
                        // derive would (the parser's position is still in the object).
                        $target::try_from(raw).map_err(A::Error::custom)
                    }
                }

                deserializer.deserialize_map(RawVisitor)
            }
        }
    };
}

/// The value of a required member, or serde's own error for its absence.
fn required<T>(value: Option<T>, name: &'static str) -> Result<T, String> {
    value.ok_or_else(|| format!("missing field `{name}`"))
}

/// Who speaks a message. `Developer` is OpenAI's name for instructions that rank below `System`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions from the application owner.
    System,
    /// Instructions from the developer (OpenAI's newer name for system-level instructions).
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call, linked by `tool_call_id`.
    Tool,
    /// Legacy function-call result (pre-tools API), still accepted by OpenAI.
    Function,
}

impl Role {
    /// Every role, in the order the error message for an unknown role lists them.
    pub const ALL: [Role; 6] = [
        Role::System,
        Role::Developer,
        Role::User,
        Role::Assistant,
        Role::Tool,
        Role::Function,
    ];

    /// The role with this wire name, if there is one.
    pub fn from_wire(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }

    /// The wire name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        }
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Key(name) = Key::deserialize(deserializer)?;
        Role::from_wire(&name).ok_or_else(|| {
            let known: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
            D::Error::custom(format!(
                "unknown role {name:?} (expected one of {})",
                known.join(", ")
            ))
        })
    }
}

/// The content of a message: a plain string or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Multi-part content (text, images, and part types we pass through untouched).
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The text of the content: the string itself, or the text parts joined by newlines.
    pub fn text(&self) -> String {
        match self {
            Content::Text(text) => text.clone(),
            Content::Parts(parts) => {
                let texts: Vec<&str> = parts.iter().filter_map(ContentPart::as_text).collect();
                texts.join("\n")
            }
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(
            match deserialize_text_or_list(deserializer, "a string or an array of content parts")? {
                TextOrList::Text(text) => Content::Text(text),
                TextOrList::List(parts) => Content::Parts(parts),
            },
        )
    }
}

/// A string or a list of `T`: the shape of message content in both OpenAI and Anthropic.
pub(crate) enum TextOrList<T> {
    /// The string form.
    Text(String),
    /// The list form.
    List(Vec<T>),
}

/// Reads [`TextOrList`] with an error that says what was expected, and element paths kept (an
/// untagged enum would only say "data did not match any variant").
pub(crate) fn deserialize_text_or_list<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
) -> Result<TextOrList<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct TextOrListVisitor<T>(&'static str, PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for TextOrListVisitor<T> {
        type Value = TextOrList<T>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str(self.0)
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(TextOrList::Text(text.to_owned()))
        }

        fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
            Ok(TextOrList::Text(text))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(TextOrList::List(items))
        }
    }

    deserializer.deserialize_any(TextOrListVisitor(expecting, PhantomData))
}

impl From<&str> for Content {
    fn from(text: &str) -> Self {
        Content::Text(text.to_owned())
    }
}

impl From<String> for Content {
    fn from(text: String) -> Self {
        Content::Text(text)
    }
}

/// One part of multi-part content.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ContentPart {
    /// A part type promptops understands.
    Known(KnownPart),
    /// Any other part (audio, files, future types), kept verbatim.
    Other(Value),
}

/// The `type`s that [`KnownPart`] models; a part of such a type must be well-formed.
const KNOWN_PART_TYPES: [&str; 2] = ["text", "image_url"];

impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let Some(kind) = value.get("type").and_then(Value::as_str) else {
            return Err(D::Error::custom(
                "a content part must be an object with a string `type`",
            ));
        };
        let Some(known) = KNOWN_PART_TYPES.into_iter().find(|known| *known == kind) else {
            return Ok(ContentPart::Other(value));
        };
        KnownPart::deserialize(value)
            .map(ContentPart::Known)
            .map_err(|error| D::Error::custom(format!("{known} part: {error}")))
    }
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Known(KnownPart::Text {
            text: text.into(),
            extra: Extra::new(),
        })
    }

    /// An image part referring to a URL (http(s) or a `data:` URL).
    pub fn image_url(url: impl Into<String>) -> Self {
        ContentPart::Known(KnownPart::ImageUrl {
            image_url: ImageUrl {
                url: url.into(),
                detail: None,
                extra: Extra::new(),
            },
            extra: Extra::new(),
        })
    }

    /// The text of a text part.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            ContentPart::Known(KnownPart::Text { text, .. }) => Some(text),
            _ => None,
        }
    }
}

/// Content parts with a known `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum KnownPart {
    /// `{"type":"text","text":...}`
    #[serde(rename = "text")]
    Text {
        /// The text.
        text: String,
        /// Unknown fields.
        #[serde(flatten)]
        extra: Extra,
    },
    /// `{"type":"image_url","image_url":{"url":...,"detail":...}}`
    #[serde(rename = "image_url")]
    ImageUrl {
        /// The image reference.
        image_url: ImageUrl,
        /// Unknown fields.
        #[serde(flatten)]
        extra: Extra,
    },
}

/// An image reference inside an `image_url` part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageUrl {
    /// An http(s) URL or a `data:` URL with base64 content.
    pub url: String,
    /// `low`, `high` or `auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// Identifier that the matching tool message quotes in `tool_call_id`.
    pub id: String,
    /// Always `function` today.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function and its JSON-encoded arguments.
    pub function: FunctionCall,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

fn function_kind() -> String {
    "function".to_owned()
}

/// The function part of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments as a JSON string, exactly as the model produced them (possibly invalid JSON).
    pub arguments: String,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tool {
    /// Always `function` today.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function's declaration.
    pub function: FunctionDefinition,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Declaration of a callable function.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionDefinition {
    /// Function name.
    pub name: String,
    /// What the function does, shown to the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the arguments object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Whether the provider must follow the schema exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

wire_object! {
    /// [`ImageUrl`] as read.
    RawImageUrl => ImageUrl expecting "an image_url object" {
        url: String = "url",
        detail: Option<String> = "detail",
    }
}

impl TryFrom<RawImageUrl> for ImageUrl {
    type Error = String;

    fn try_from(raw: RawImageUrl) -> Result<Self, Self::Error> {
        Ok(ImageUrl {
            url: required(raw.url, "url")?,
            detail: raw.detail.flatten(),
            extra: raw.extra,
        })
    }
}

wire_object! {
    /// [`ToolCall`] as read.
    RawToolCall => ToolCall expecting "a tool call object" {
        id: String = "id",
        kind: String = "type",
        function: FunctionCall = "function",
    }
}

impl TryFrom<RawToolCall> for ToolCall {
    type Error = String;

    fn try_from(raw: RawToolCall) -> Result<Self, Self::Error> {
        Ok(ToolCall {
            id: required(raw.id, "id")?,
            kind: raw.kind.unwrap_or_else(function_kind),
            function: required(raw.function, "function")?,
            extra: raw.extra,
        })
    }
}

wire_object! {
    /// [`FunctionCall`] as read.
    RawFunctionCall => FunctionCall expecting "a function call object" {
        name: String = "name",
        arguments: String = "arguments",
    }
}

impl TryFrom<RawFunctionCall> for FunctionCall {
    type Error = String;

    fn try_from(raw: RawFunctionCall) -> Result<Self, Self::Error> {
        Ok(FunctionCall {
            name: required(raw.name, "name")?,
            arguments: required(raw.arguments, "arguments")?,
            extra: raw.extra,
        })
    }
}

wire_object! {
    /// [`Tool`] as read.
    RawTool => Tool expecting "a tool object" {
        kind: String = "type",
        function: FunctionDefinition = "function",
    }
}

impl TryFrom<RawTool> for Tool {
    type Error = String;

    fn try_from(raw: RawTool) -> Result<Self, Self::Error> {
        Ok(Tool {
            kind: raw.kind.unwrap_or_else(function_kind),
            function: required(raw.function, "function")?,
            extra: raw.extra,
        })
    }
}

wire_object! {
    /// [`FunctionDefinition`] as read.
    RawFunctionDefinition => FunctionDefinition expecting "a function object" {
        name: String = "name",
        description: Option<String> = "description",
        parameters: Option<Value> = "parameters",
        strict: Option<bool> = "strict",
    }
}

impl TryFrom<RawFunctionDefinition> for FunctionDefinition {
    type Error = String;

    fn try_from(raw: RawFunctionDefinition) -> Result<Self, Self::Error> {
        Ok(FunctionDefinition {
            name: required(raw.name, "name")?,
            description: raw.description.flatten(),
            parameters: raw.parameters.flatten(),
            strict: raw.strict.flatten(),
            extra: raw.extra,
        })
    }
}

/// One chat message.
///
/// Reading checks what OpenAI would reject anyway: a `tool` message needs `tool_call_id`, and
/// every role but `assistant` and `function` needs `content`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// The content; `None` for assistant messages that only call tools. Always written, as
    /// `null` when `None`, because that is what OpenAI sends (an absent `content` reads as `None`).
    pub content: Option<Content>,
    /// Optional participant name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by an assistant message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `tool` messages: the id of the call this message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Unknown fields (e.g. `refusal`, `audio`), kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

wire_object! {
    /// [`Message`] as it stands on the wire, before the checks of [`Message::check`].
    RawMessage => Message expecting "a message object" {
        role: Role = "role",
        content: Option<Content> = "content",
        name: Option<String> = "name",
        tool_calls: Option<Vec<ToolCall>> = "tool_calls",
        tool_call_id: Option<String> = "tool_call_id",
    }
}

impl TryFrom<RawMessage> for Message {
    type Error = String;

    fn try_from(raw: RawMessage) -> Result<Self, Self::Error> {
        let message = Message {
            role: required(raw.role, "role")?,
            content: raw.content.flatten(),
            name: raw.name.flatten(),
            tool_calls: raw.tool_calls.flatten().unwrap_or_default(),
            tool_call_id: raw.tool_call_id.flatten(),
            extra: raw.extra,
        };
        message.check()?;
        Ok(message)
    }
}

impl Message {
    /// Why OpenAI would reject this message, if it would.
    fn check(&self) -> Result<(), String> {
        if self.role == Role::Tool && self.tool_call_id.is_none() {
            return Err(
                "a tool message needs `tool_call_id` (the id of the call it answers)".to_owned(),
            );
        }
        if self.content.is_none() && !matches!(self.role, Role::Assistant | Role::Function) {
            return Err(format!("a {} message needs `content`", self.role.as_str()));
        }
        Ok(())
    }

    /// A message with plain text content.
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(Content::Text(text.into())),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            extra: Extra::new(),
        }
    }

    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Message::new(Role::System, text)
    }

    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Message::new(Role::User, text)
    }

    /// An assistant message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Message::new(Role::Assistant, text)
    }

    /// An assistant message that calls tools and says nothing.
    pub fn assistant_tool_calls(tool_calls: Vec<ToolCall>) -> Self {
        Message {
            content: None,
            tool_calls,
            ..Message::new(Role::Assistant, "")
        }
    }

    /// A tool result answering the call `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, text: impl Into<String>) -> Self {
        Message {
            tool_call_id: Some(tool_call_id.into()),
            ..Message::new(Role::Tool, text)
        }
    }

    /// The text of the message content (empty when there is none).
    pub fn text(&self) -> String {
        self.content.as_ref().map(Content::text).unwrap_or_default()
    }
}

impl ToolCall {
    /// A function tool call with JSON-encoded arguments.
    pub fn function(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        ToolCall {
            id: id.into(),
            kind: function_kind(),
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
                extra: Extra::new(),
            },
            extra: Extra::new(),
        }
    }
}

/// Parses a JSON array of OpenAI chat messages; errors name the JSON path, e.g.
/// `messages[2].role: unknown role "robot" ...`.
pub fn parse_messages(json: &str) -> Result<Vec<Message>, CoreError> {
    parse_wire("openai", "messages", json)
}

/// Parses a JSON array of OpenAI tool definitions; errors name the JSON path (`tools[0].function`).
pub fn parse_tools(json: &str) -> Result<Vec<Tool>, CoreError> {
    parse_wire("openai", "tools", json)
}

/// Parses `json` as a `T` of wire format `format`, naming the JSON path of any error below `root`.
pub(crate) fn parse_wire<T: DeserializeOwned>(
    format: &'static str,
    root: &str,
    json: &str,
) -> Result<T, CoreError> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let parsed = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        invalid_wire(format, root, &path, error.into_inner())
    })?;
    deserializer
        .end()
        .map_err(|error| invalid_wire(format, root, ".", error))?;
    Ok(parsed)
}

/// The [`CoreError::InvalidWire`] for `reason` at `path` (as printed by serde_path_to_error).
fn invalid_wire(
    format: &'static str,
    root: &str,
    path: &str,
    reason: impl fmt::Display,
) -> CoreError {
    let path = match path {
        "." if root.is_empty() => "(top level)".to_owned(),
        "." => root.to_owned(),
        _ if root.is_empty() || path.starts_with('[') => format!("{root}{path}"),
        _ => format!("{root}.{path}"),
    };
    CoreError::InvalidWire {
        format,
        path,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parses `input` (a JSON array of messages): it must fail with exactly `expected_error`, or,
    /// when that is `None`, serialise back to a JSON value equal to the input.
    fn check(input: &str, expected_error: Option<&str>) {
        match (parse_messages(input), expected_error) {
            (Ok(messages), None) => {
                let original: Value = serde_json::from_str(input).unwrap();
                assert_eq!(serde_json::to_value(&messages).unwrap(), original);
            }
            (Err(error), Some(expected)) => assert_eq!(error.to_string(), expected),
            (Ok(messages), Some(expected)) => panic!("expected `{expected}`, parsed {messages:?}"),
            (Err(error), None) => panic!("{input} did not parse: {error}"),
        }
    }

    #[test]
    fn round_trips_every_role_and_shape() {
        check(r#"[{"role": "system", "content": "Be terse."}]"#, None);
        check(
            r#"[{"role": "developer", "content": "Answer in French."}]"#,
            None,
        );
        check(
            r#"[{"role": "user", "name": "alice", "content": "Hi"}]"#,
            None,
        );
        check(
            r#"[{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
                {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}
            ]}]"#,
            None,
        );
        check(
            r#"[{"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{\"a\":1}"}}
            ]}]"#,
            None,
        );
        check(
            r#"[{"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "42"}]}]"#,
            None,
        );
        check(
            r#"[{"role": "function", "name": "f", "content": null}]"#,
            None,
        );
    }

    #[test]
    fn normalises_absent_content_to_null() {
        let messages = parse_messages(r#"[{"role":"assistant","tool_calls":[]}]"#).unwrap();
        assert_eq!(
            messages,
            vec![Message {
                content: None,
                ..Message::assistant("")
            }]
        );
        assert_eq!(
            serde_json::to_value(&messages).unwrap(),
            json!([{"role": "assistant", "content": null}])
        );
    }

    #[test]
    fn errors_name_the_path() {
        check(
            r#"[{"role":"user","content":"a"},{"role":"robot","content":"b"}]"#,
            Some(
                "invalid openai payload at messages[1].role: unknown role \"robot\" (expected one \
                 of system, developer, user, assistant, tool, function) at line 1 column 46",
            ),
        );
        check(
            r#"[{"role":"tool","content":"42"}]"#,
            Some(
                "invalid openai payload at messages[0]: a tool message needs `tool_call_id` (the id \
                 of the call it answers) at line 1 column 31",
            ),
        );
        check(
            r#"[{"role":"user"}]"#,
            Some(
                "invalid openai payload at messages[0]: a user message needs `content` at line 1 column 16",
            ),
        );
        check(
            r#"[{"role":"user","content":7}]"#,
            Some(
                "invalid openai payload at messages[0].content: invalid type: integer `7`, expected \
                 a string or an array of content parts at line 1 column 27",
            ),
        );
        check(
            r#"[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"}]}]"#,
            Some(
                "invalid openai payload at messages[0].content[1]: image_url part: missing field \
                 `image_url` at line 1 column 75",
            ),
        );
        check(
            r#"[{"role":"user","content":["bare string"]}]"#,
            Some(
                "invalid openai payload at messages[0].content[0]: a content part must be an \
                 object with a string `type` at line 1 column 41",
            ),
        );
    }

    #[test]
    fn rejects_trailing_garbage_and_non_arrays() {
        check(
            "[] x",
            Some("invalid openai payload at messages: trailing characters at line 1 column 4"),
        );
        check(
            r#"{"role":"user"}"#,
            Some(
                "invalid openai payload at messages: invalid type: map, expected a sequence at \
                 line 1 column 0",
            ),
        );
    }

    #[test]
    fn tools_round_trip() {
        let input = json!([{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "strict": true,
            },
        }]);
        let tools = parse_tools(&input.to_string()).unwrap();
        assert_eq!(tools[0].function.name, "get_weather");
        assert_eq!(serde_json::to_value(&tools).unwrap(), input);
        let error = parse_tools(r#"[{"type":"function","function":{}}]"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid openai payload at tools[0].function: missing field `name` at line 1 column 33"
        );
    }
}
