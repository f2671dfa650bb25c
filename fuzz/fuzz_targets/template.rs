//! Fuzz target: compiling and rendering any template source never panics.
//!
//! The input is split at the first NUL byte into the template source and the source of a
//! component named `c`; the component `self` is the template itself, so include cycles are
//! exercised too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promptops_core::template::{PromptTemplate, Variables};
use serde_json::json;

/// Larger sources only slow the fuzzer down without reaching new parser states.
const MAX_SOURCE: usize = 4096;

fuzz_target!(|text: &str| {
    if text.len() > MAX_SOURCE {
        return;
    }
    let (source, component) = text.split_once('\0').unwrap_or((text, "{{ name }}"));
    let (source, component) = (source.to_owned(), component.to_owned());
    let lookup_source = source.clone();
    let lookup = move |name: &str| match name {
        "c" => Some(component.clone()),
        "self" => Some(lookup_source.clone()),
        _ => None,
    };
    let Ok(template) = PromptTemplate::builder("fuzz", source)
        .components(lookup)
        .build()
    else {
        return;
    };
    let _ = template.required_variables();
    let _ = template.lint();
    let vars = variables();
    let _ = template.render(&vars);
    let _ = template.render(&Variables::new());
    if let Ok(partial) = template.partial(&vars) {
        let _ = partial.render(&Variables::new());
    }
});

fn variables() -> Variables {
    let value = json!({
        "name": "Ada",
        "n": 3,
        "flag": true,
        "items": ["a", "b"],
        "user": {"name": "Bo", "tags": []},
    });
    match value {
        serde_json::Value::Object(map) => map,
        _ => Variables::new(),
    }
}
