//! Wire-format round trips: OpenAI JSON ↔ `Message`, and OpenAI ↔ Anthropic, on hand-written
//! fixtures of real request shapes and on generated conversations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;

use promptops_core::anthropic::{
    AnthropicRole, ContentBlock, from_anthropic, message_from_response, parse_anthropic_request,
    to_anthropic,
};
use promptops_core::message::{
    Content, ContentPart, Extra, ImageUrl, KnownPart, Message, Role, Tool, ToolCall,
    parse_messages, parse_tools,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wire")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn fixture_value(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// The `messages` and `tools` of the OpenAI request fixture, parsed.
fn openai_request() -> (Vec<Message>, Vec<Tool>) {
    let request = fixture_value("openai_request.json");
    (
        parse_messages(&request["messages"].to_string()).unwrap(),
        parse_tools(&request["tools"].to_string()).unwrap(),
    )
}

#[test]
fn openai_fixtures_round_trip_losslessly() {
    let request = fixture_value("openai_request.json");
    let (messages, tools) = openai_request();
    assert_eq!(messages.len(), 10);
    assert_eq!(messages[3].tool_calls.len(), 2, "parallel tool calls");
    assert_eq!(
        serde_json::to_value(&messages).unwrap(),
        request["messages"]
    );
    assert_eq!(serde_json::to_value(&tools).unwrap(), request["tools"]);

    let unusual = fixture_value("openai_unusual_messages.json");
    let messages = parse_messages(&unusual.to_string()).unwrap();
    assert!(
        matches!(&messages[0].content, Some(Content::Parts(parts)) if matches!(parts[1], ContentPart::Other(_)))
    );
    assert_eq!(serde_json::to_value(&messages).unwrap(), unusual);
}

#[test]
fn openai_request_converts_to_the_anthropic_fixture() {
    let (messages, tools) = openai_request();
    let parts = to_anthropic(&messages, &tools).unwrap();
    assert_eq!(
        serde_json::to_value(&parts).unwrap(),
        fixture_value("anthropic_request.json")
    );
}

#[test]
fn anthropic_fixture_round_trips_and_converts_back() {
    let expected = fixture_value("anthropic_request.json");
    let request = parse_anthropic_request(&expected.to_string()).unwrap();
    assert_eq!(serde_json::to_value(&request).unwrap(), expected);

    let messages = from_anthropic(request.system.as_ref(), &request.messages).unwrap();
    assert_eq!(
        parsed_arguments(serde_json::to_value(&messages).unwrap()),
        parsed_arguments(fixture_value("openai_from_anthropic.json"))
    );
}

/// Tool-call `arguments` strings parsed into JSON values, so the comparison does not depend on
/// key order inside them (serde_json keeps insertion order when another crate of the build turns
/// on its `preserve_order` feature, and sorts keys otherwise).
fn parsed_arguments(mut messages: serde_json::Value) -> serde_json::Value {
    for message in messages.as_array_mut().into_iter().flatten() {
        for call in message["tool_calls"].as_array_mut().into_iter().flatten() {
            let arguments = &mut call["function"]["arguments"];
            if let Some(text) = arguments.as_str() {
                *arguments = serde_json::from_str(text).unwrap();
            }
        }
    }
    messages
}

#[test]
fn anthropic_response_becomes_an_assistant_message() {
    let response = fixture_value("anthropic_response.json");
    let content: Vec<ContentBlock> = serde_json::from_value(response["content"].clone()).unwrap();
    let message = message_from_response(&content).unwrap();
    assert_eq!(
        serde_json::to_value(&message).unwrap(),
        json!({
            "role": "assistant",
            "content": "I'll check the weather in both cities.",
            "tool_calls": [
                {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Lisbon\",\"unit\":\"celsius\"}"}},
                {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Porto\",\"unit\":\"celsius\"}"}},
            ],
        })
    );
}

// ---- generated values ----

fn simple_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ]
}

/// Unknown fields; the `x_` prefix keeps them clear of every known field name.
fn extra() -> impl Strategy<Value = Extra> {
    prop::collection::btree_map("x_[a-z]{1,6}", simple_value(), 0..3)
        .prop_map(|map| map.into_iter().collect())
}

fn content_part() -> impl Strategy<Value = ContentPart> {
    prop_oneof![
        (".{0,20}", extra())
            .prop_map(|(text, extra)| ContentPart::Known(KnownPart::Text { text, extra })),
        (
            ".{0,20}",
            prop::option::of("low|high|auto"),
            extra(),
            extra()
        )
            .prop_map(|(url, detail, inner, extra)| {
                ContentPart::Known(KnownPart::ImageUrl {
                    image_url: ImageUrl {
                        url,
                        detail,
                        extra: inner,
                    },
                    extra,
                })
            }),
        ("input_audio|file|refusal", simple_value()).prop_map(|(kind, payload)| {
            ContentPart::Other(json!({"type": kind, "payload": payload}))
        }),
    ]
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        ".{0,30}".prop_map(Content::Text),
        prop::collection::vec(content_part(), 0..4).prop_map(Content::Parts),
    ]
}

fn tool_call() -> impl Strategy<Value = ToolCall> {
    (
        "[a-zA-Z0-9_]{1,12}",
        "[a-z_]{1,10}",
        ".{0,20}",
        extra(),
        extra(),
    )
        .prop_map(|(id, name, arguments, inner, extra)| {
            let mut call = ToolCall::function(id, name, arguments);
            call.function.extra = inner;
            call.extra = extra;
            call
        })
}

fn message() -> impl Strategy<Value = Message> {
    let role = prop::sample::select(Role::ALL.to_vec());
    (
        role,
        prop::option::of(content()),
        content(),
        prop::option::of(".{0,8}"),
        prop::collection::vec(tool_call(), 0..3),
        prop::option::of("[a-z0-9_]{1,10}"),
        extra(),
    )
        .prop_map(
            |(role, optional, required, name, tool_calls, tool_call_id, extra)| {
                let content_optional = matches!(role, Role::Assistant | Role::Function);
                Message {
                    role,
                    content: if content_optional {
                        optional
                    } else {
                        Some(required)
                    },
                    name,
                    tool_calls,
                    tool_call_id: if role == Role::Tool {
                        tool_call_id.or(Some("call_0".into()))
                    } else {
                        tool_call_id
                    },
                    extra,
                }
            },
        )
}

/// A valid tool-using conversation, as OpenAI would accept it, with no empty text anywhere
/// Anthropic would drop it, and no two user or assistant messages in a row.
fn conversation() -> impl Strategy<Value = Vec<Message>> {
    let arguments = prop::collection::btree_map("[a-z]{1,5}", simple_value(), 0..3)
        .prop_flat_map(|map| {
            let value = Value::Object(map.into_iter().collect());
            (
                Just(value.to_string()),
                Just(serde_json::to_string_pretty(&value).unwrap()),
            )
        })
        .prop_flat_map(|(compact, pretty)| prop_oneof![Just(compact), Just(pretty)]);
    let exchange = (
        prop_oneof![
            ".{1,20}".prop_map(Content::Text),
            (
                ".{1,20}",
                "https://x\\.test/[a-z]{1,8}\\.png|data:image/png;base64,[A-Za-z0-9+/]{4,12}"
            )
                .prop_map(|(text, url)| Content::Parts(vec![
                    ContentPart::text(text),
                    ContentPart::image_url(url)
                ])),
        ],
        prop::option::of(".{1,20}"),
        prop::collection::vec(("[a-z_]{1,8}", arguments, ".{0,20}"), 0..3),
        prop::option::of(".{1,20}"),
    );
    (
        prop::option::of(".{1,20}"),
        prop::collection::vec(exchange, 1..4),
    )
        .prop_map(|(system, exchanges)| {
            let mut messages: Vec<Message> = system.into_iter().map(Message::system).collect();
            for (turn, (user, said, calls, answer)) in exchanges.into_iter().enumerate() {
                messages.push(Message {
                    content: Some(user),
                    ..Message::user("")
                });
                if calls.is_empty() {
                    messages.push(Message::assistant(said.unwrap_or_else(|| "ok".into())));
                    continue;
                }
                let tool_calls: Vec<ToolCall> = calls
                    .iter()
                    .enumerate()
                    .map(|(index, (name, arguments, _))| {
                        ToolCall::function(format!("call_{turn}_{index}"), name, arguments)
                    })
                    .collect();
                messages.push(Message {
                    content: said.map(Content::Text),
                    ..Message::assistant_tool_calls(tool_calls.clone())
                });
                for (call, (_, _, result)) in tool_calls.iter().zip(calls) {
                    messages.push(Message::tool_result(&call.id, result));
                }
                messages.extend(answer.map(Message::assistant));
            }
            messages
        })
}

/// Messages with every tool-call arguments string in canonical JSON, to compare JSON-equality.
fn canonical_arguments(mut messages: Vec<Message>) -> Vec<Message> {
    for call in messages
        .iter_mut()
        .flat_map(|message| message.tool_calls.iter_mut())
    {
        let parsed: Value = serde_json::from_str(&call.function.arguments).unwrap();
        call.function.arguments = parsed.to_string();
    }
    messages
}

proptest! {
    #[test]
    fn messages_round_trip_through_json(messages in prop::collection::vec(message(), 0..4)) {
        let json = serde_json::to_string(&messages).unwrap();
        let parsed = parse_messages(&json).unwrap();
        prop_assert_eq!(&parsed, &messages);
        let value: Value = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(serde_json::to_value(&parsed).unwrap(), value);
    }

    #[test]
    fn conversations_survive_anthropic_and_back(messages in conversation()) {
        let parts = to_anthropic(&messages, &[]).unwrap();
        let roles: Vec<AnthropicRole> = parts.messages.iter().map(|turn| turn.role).collect();
        prop_assert!(roles.windows(2).all(|pair| pair[0] != pair[1]), "roles alternate: {:?}", roles);
        prop_assert_eq!(roles.first(), Some(&AnthropicRole::User));

        let wire = serde_json::to_string(&parts).unwrap();
        let reparsed = parse_anthropic_request(&wire).unwrap();
        prop_assert_eq!(&reparsed, &parts);

        let back = from_anthropic(reparsed.system.as_ref(), &reparsed.messages).unwrap();
        prop_assert_eq!(canonical_arguments(back), canonical_arguments(messages));
    }
}
