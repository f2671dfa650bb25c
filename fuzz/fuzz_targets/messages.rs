//! Fuzz target: OpenAI and Anthropic wire parsing and conversion never panic on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promptops_core::anthropic;
use promptops_core::message::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = serde_json::from_slice::<Vec<Message>>(data) {
        // What was read must serialise and read back to the same messages.
        if let Ok(json) = serde_json::to_string(&messages) {
            let again: Result<Vec<Message>, _> = serde_json::from_str(&json);
            assert_eq!(again.ok().as_ref(), Some(&messages), "round trip of {json}");
        }
        if let Ok(parts) = anthropic::to_anthropic(&messages, &[]) {
            let _ = anthropic::from_anthropic(parts.system.as_ref(), &parts.messages);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = promptops_core::message::parse_messages(text);
        if let Ok(parts) = anthropic::parse_anthropic_request(text) {
            let _ = anthropic::from_anthropic(parts.system.as_ref(), &parts.messages);
        }
    }
});
