#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Throughput of the incremental SSE parser on a recorded-style OpenAI chunk stream, fed in
//! 1,460-byte reads (one TCP segment), against a whole-buffer reference that sees all bytes at
//! once and splits on blank lines (the lower bound of work for the same events).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promptops_llm::sse::SseParser;

/// About 1 MiB of `chat.completion.chunk` events, one short text piece each.
fn stream_bytes() -> Vec<u8> {
    let mut out = String::new();
    let mut index = 0;
    while out.len() < 1 << 20 {
        out.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1732550001,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" token{index}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
        ));
        if index % 50 == 0 {
            out.push_str(": keep-alive\n\n");
        }
        index += 1;
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

/// Whole-buffer reference: split events on blank lines, keep `data:` payloads.
fn reference(bytes: &[u8]) -> usize {
    let text = std::str::from_utf8(bytes).unwrap();
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|value| value.strip_prefix(' ').unwrap_or(value))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .count()
}

fn incremental(bytes: &[u8]) -> usize {
    let mut parser = SseParser::new();
    let mut events = 0;
    for chunk in bytes.chunks(1460) {
        events += parser.feed(chunk).unwrap().len();
    }
    events
}

fn bench(c: &mut Criterion) {
    let bytes = stream_bytes();
    assert_eq!(incremental(&bytes), reference(&bytes));
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("incremental_1460_byte_reads", |b| {
        b.iter(|| incremental(black_box(&bytes)))
    });
    group.bench_function("reference_whole_buffer_split", |b| {
        b.iter(|| reference(black_box(&bytes)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
