//! Token counting throughput: promptops' encodings (bpe-openai) against tiktoken-rs, the Rust port
//! of tiktoken, on the same inputs in the same process. Figures go in BENCHMARKS.md.
//!
//! Each input is a seed text from tests/fixtures/tokens repeated to at least 1 MB, the same
//! corpus `scripts/gen-token-fixtures.py --bench` times Python tiktoken on.
//!
//! With `TOKENS_BENCH_RUNS=IMPL,ENCODING,INPUT,N` set (e.g. `promptops,o200k_base,mixed,2`) the
//! binary only counts that input N times and exits: run it under `valgrind --tool=callgrind`
//! with N=1 and N=2 and subtract, for an instruction count per run that the load of a shared
//! machine does not distort.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use promptops_core::tokens::Encoding;
use tiktoken_rs::CoreBPE;

const BENCH_BYTES: usize = 1_000_000;
const ENGLISH: &str = include_str!("../tests/fixtures/tokens/english.txt");
const CODE: &str = include_str!("../tests/fixtures/tokens/code.txt");
const CJK: &str = include_str!("../tests/fixtures/tokens/cjk.txt");

/// `unit` repeated until it is at least [`BENCH_BYTES`] long.
fn repeated(unit: &str) -> String {
    unit.repeat(BENCH_BYTES.div_ceil(unit.len()))
}

fn inputs() -> Vec<(&'static str, String)> {
    vec![
        ("english", repeated(ENGLISH)),
        ("code", repeated(CODE)),
        ("cjk", repeated(CJK)),
        ("mixed", repeated(&format!("{ENGLISH}\n{CODE}\n{CJK}\n"))),
    ]
}

fn reference(encoding: Encoding) -> &'static CoreBPE {
    match encoding {
        Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
    }
}

fn count_throughput(c: &mut Criterion) {
    for encoding in Encoding::ALL {
        let tiktoken = reference(encoding);
        let mut group = c.benchmark_group(format!("count/{encoding}"));
        group.sample_size(10);
        for (name, text) in inputs() {
            let ours = encoding.count(&text);
            let theirs = tiktoken.encode_ordinary(&text).len();
            assert_eq!(ours, theirs, "{encoding} counts differ on {name}");
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(BenchmarkId::new("promptops", name), &text, |b, text| {
                b.iter(|| encoding.count(black_box(text)))
            });
            group.bench_with_input(BenchmarkId::new("tiktoken-rs", name), &text, |b, text| {
                b.iter(|| tiktoken.encode_ordinary(black_box(text)).len())
            });
        }
        group.finish();
    }
}

/// Counts one input `N` times as `TOKENS_BENCH_RUNS` says; prints the tokens and bytes counted.
#[expect(
    clippy::print_stdout,
    reason = "reports what was counted, like criterion's own output"
)]
fn fixed_runs(spec: &str) {
    let fields: Vec<&str> = spec.split(',').collect();
    let [implementation, encoding, input, runs] = fields[..] else {
        panic!("TOKENS_BENCH_RUNS must be IMPL,ENCODING,INPUT,N, got {spec:?}");
    };
    let encoding: Encoding = encoding.parse().unwrap();
    let runs: usize = runs.parse().unwrap();
    let (_, text) = inputs()
        .into_iter()
        .find(|(name, _)| *name == input)
        .unwrap_or_else(|| panic!("unknown input {input:?}"));
    let count: fn(Encoding, &str) -> usize = match implementation {
        "promptops" => |encoding, text| encoding.count(text),
        "tiktoken-rs" => |encoding, text| reference(encoding).encode_ordinary(text).len(),
        other => panic!("unknown implementation {other:?}"),
    };
    count(
        encoding,
        "warm up: build the tables before the measured runs",
    );
    let tokens: usize = (0..runs).map(|_| count(encoding, black_box(&text))).sum();
    println!(
        "{implementation} {encoding} {input}: {runs} run(s), {tokens} tokens, {} bytes each",
        text.len()
    );
}

criterion_group!(benches, count_throughput);

fn main() {
    match std::env::var("TOKENS_BENCH_RUNS") {
        Ok(spec) => fixed_runs(&spec),
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
