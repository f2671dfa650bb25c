//! The one-pass readers of [`Message`] and [`Tool`] against an independent oracle: the same
//! shapes written with serde's derive and `#[serde(flatten)]` (how they were read before), on
//! generated objects with known and unknown members, wrong types, nulls and repeated keys.
//! Both must accept the same texts and read them to the same values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use promptops_core::message::{Content, Extra, Message, Role, Tool};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct OracleMessage {
    role: Role,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<OracleToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct OracleToolCall {
    id: String,
    #[serde(rename = "type", default = "function_kind")]
    kind: String,
    function: OracleFunctionCall,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct OracleFunctionCall {
    name: String,
    arguments: String,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct OracleTool {
    #[serde(rename = "type", default = "function_kind")]
    kind: String,
    function: OracleFunctionDefinition,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct OracleFunctionDefinition {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
    #[serde(flatten)]
    extra: Extra,
}

fn function_kind() -> String {
    "function".to_owned()
}

/// The oracle's message as JSON, with the normalisations `Message` documents (absent content
/// written as null, empty or null optional members absent, the tool call type defaulted), or
/// `None` where `Message`'s own checks refuse it.
fn oracle_message(text: &str) -> Option<Value> {
    let raw: OracleMessage = serde_json::from_str(text).ok()?;
    if raw.role == Role::Tool && raw.tool_call_id.is_none() {
        return None;
    }
    if raw.content.is_none() && !matches!(raw.role, Role::Assistant | Role::Function) {
        return None;
    }
    let mut out = serde_json::Map::new();
    out.insert("role".into(), Value::from(raw.role.as_str()));
    out.insert(
        "content".into(),
        serde_json::to_value(&raw.content).unwrap(),
    );
    if let Some(name) = raw.name {
        out.insert("name".into(), Value::from(name));
    }
    let calls: Vec<Value> = raw
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|call| {
            let mut function = serde_json::Map::new();
            function.insert("name".into(), Value::from(call.function.name));
            function.insert("arguments".into(), Value::from(call.function.arguments));
            function.extend(call.function.extra);
            let mut value = serde_json::Map::new();
            value.insert("id".into(), Value::from(call.id));
            value.insert("type".into(), Value::from(call.kind));
            value.insert("function".into(), Value::Object(function));
            value.extend(call.extra);
            Value::Object(value)
        })
        .collect();
    if !calls.is_empty() {
        out.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(id) = raw.tool_call_id {
        out.insert("tool_call_id".into(), Value::from(id));
    }
    out.extend(raw.extra);
    Some(Value::Object(out))
}

fn oracle_tool(text: &str) -> Option<Value> {
    let raw: OracleTool = serde_json::from_str(text).ok()?;
    let mut function = serde_json::Map::new();
    function.insert("name".into(), Value::from(raw.function.name));
    if let Some(description) = raw.function.description {
        function.insert("description".into(), Value::from(description));
    }
    if let Some(parameters) = raw.function.parameters {
        function.insert("parameters".into(), parameters);
    }
    if let Some(strict) = raw.function.strict {
        function.insert("strict".into(), Value::from(strict));
    }
    function.extend(raw.function.extra);
    let mut out = serde_json::Map::new();
    out.insert("type".into(), Value::from(raw.kind));
    out.insert("function".into(), Value::Object(function));
    out.extend(raw.extra);
    Some(Value::Object(out))
}

/// Members sorted by key: the comparison is of content, not of member order.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("7".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        "[a-z]{0,3}".prop_map(|s| format!("\"{s}\"")),
        Just("\"esc\\u0061ped\"".to_owned()),
    ]
}

/// An object text from `members` (repeats allowed, order kept).
fn object(members: Vec<(String, String)>) -> String {
    let body: Vec<String> = members
        .into_iter()
        .map(|(key, value)| format!("\"{key}\":{value}"))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn function_call() -> impl Strategy<Value = String> {
    let key = prop_oneof![Just("name"), Just("arguments"), Just("x")];
    prop::collection::vec((key, scalar()), 0..4).prop_map(|members| {
        object(
            members
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    })
}

fn tool_call() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        (Just("id"), scalar()),
        (Just("type"), scalar()),
        (Just("function"), function_call().boxed()),
        (Just("index"), scalar()),
    ];
    prop::collection::vec(member, 0..5).prop_map(|members| {
        object(
            members
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    })
}

fn message_text() -> impl Strategy<Value = String> {
    let role = prop_oneof![
        Just("\"user\"".to_owned()),
        Just("\"assistant\"".to_owned()),
        Just("\"tool\"".to_owned()),
        Just("\"robot\"".to_owned()),
        scalar(),
    ];
    let member = prop_oneof![
        3 => (Just("role"), role.boxed()),
        3 => (Just("content"), scalar().boxed()),
        1 => (Just("name"), scalar().boxed()),
        2 => (Just("tool_calls"), prop::collection::vec(tool_call(), 0..3)
            .prop_map(|calls| format!("[{}]", calls.join(","))).boxed()),
        1 => (Just("tool_calls"), scalar().boxed()),
        1 => (Just("tool_call_id"), scalar().boxed()),
        2 => (Just("refusal"), scalar().boxed()),
        1 => (Just("r\\u006fle"), scalar().boxed()),
    ];
    prop::collection::vec(member, 0..6).prop_map(|members| {
        object(
            members
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    })
}

fn tool_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("name"),
        Just("description"),
        Just("parameters"),
        Just("strict"),
        Just("extra"),
    ];
    let function = prop::collection::vec((key, scalar()), 0..5).prop_map(|members| {
        object(
            members
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    });
    let member = prop_oneof![
        (Just("type"), scalar().boxed()),
        (Just("function"), function.boxed()),
        (Just("cache_control"), scalar().boxed()),
    ];
    prop::collection::vec(member, 0..4).prop_map(|members| {
        object(
            members
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn messages_read_as_the_flatten_oracle_reads_them(text in message_text()) {
        let ours = serde_json::from_str::<Message>(&text)
            .ok()
            .map(|message| sorted(serde_json::to_value(message).unwrap()));
        let oracle = oracle_message(&text).map(sorted);
        prop_assert_eq!(ours, oracle, "{}", text);
    }

    #[test]
    fn tools_read_as_the_flatten_oracle_reads_them(text in tool_text()) {
        let ours = serde_json::from_str::<Tool>(&text)
            .ok()
            .map(|tool| sorted(serde_json::to_value(tool).unwrap()));
        let oracle = oracle_tool(&text).map(sorted);
        prop_assert_eq!(ours, oracle, "{}", text);
    }
}
