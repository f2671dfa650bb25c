//! Reading chat messages, as the gateway does for every request body and upstream answer:
//! promptops' typed [`Message`] against `serde_json::Value` (the untyped floor: the same bytes
//! parsed with no checks and no types) on the same input in the same process. Figures go in
//! BENCHMARKS.md. Run: `cargo bench -p promptops-core --bench messages`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promptops_core::message::{Message, Tool};
use serde_json::Value;

/// An upstream answer's message, as OpenAI sends it.
const ANSWER: &str =
    r#"[{"role":"assistant","content":"Paris is the capital of France.","refusal":null}]"#;

/// A request's conversation: system, user, an assistant tool call, the tool's answer.
const CONVERSATION: &str = r#"[
  {"role":"system","content":"You are a concise travel assistant. Answer in one sentence."},
  {"role":"user","content":"What is the weather in Paris, and what should I wear?"},
  {"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_8Xh2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]},
  {"role":"tool","tool_call_id":"call_8Xh2","content":"{\"temperature\":11,\"sky\":\"overcast\"}"}
]"#;

const TOOLS: &str = r#"[{"type":"function","function":{"name":"get_weather","description":"Current weather for a city.","parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]},"strict":true}}]"#;

fn messages(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    for (name, input) in [("answer", ANSWER), ("conversation", CONVERSATION)] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(format!("{name}/typed"), |b| {
            b.iter(|| serde_json::from_str::<Vec<Message>>(black_box(input)).unwrap())
        });
        group.bench_function(format!("{name}/value"), |b| {
            b.iter(|| serde_json::from_str::<Value>(black_box(input)).unwrap())
        });
    }
    group.throughput(Throughput::Bytes(TOOLS.len() as u64));
    group.bench_function("tools/typed", |b| {
        b.iter(|| serde_json::from_str::<Vec<Tool>>(black_box(TOOLS)).unwrap())
    });
    group.bench_function("tools/value", |b| {
        b.iter(|| serde_json::from_str::<Value>(black_box(TOOLS)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, messages);
criterion_main!(benches);
