//! Fuzz target: every parser of model output must accept any UTF-8 without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promptops_core::{builder, parse};

fuzz_target!(|text: &str| {
    if let Ok(value) = parse::extract_json(text) {
        // Whatever was found must be a container that survives a round trip.
        assert!(value.is_object() || value.is_array());
        let rendered = value.to_string();
        let again = parse::extract_json(&rendered).ok();
        assert_eq!(again.as_ref(), Some(&value), "re-extracting {rendered:?}");
    }
    let _ = parse::extract_json_as::<Vec<String>>(text);
    let blocks = parse::extract_code_blocks(text);
    // Only the last block can be unterminated.
    if let Some((_, earlier)) = blocks.split_last() {
        assert!(earlier.iter().all(|block| block.closed));
    }
    let _ = parse::extract_code(text, Some("python"));
    for item in parse::parse_list_items(text) {
        assert!(!item.text.is_empty());
    }
    let _ = parse::parse_list(text);
    let answer = builder::extract_answer(text);
    if let Some(answer) = &answer {
        assert!(!answer.is_empty());
        let normalized = builder::normalize_answer(answer);
        assert_eq!(builder::normalize_answer(&normalized), normalized);
    }
    let _ = builder::extract_answer_or_last_line(text);
    for (position, step) in builder::parse_steps(text).iter().enumerate() {
        assert_eq!(step.index, position + 1);
    }
});
