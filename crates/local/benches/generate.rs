#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]
//! Local chat model throughput: prompt tokens/s, generation tokens/s, time to first token and
//! the per-token cost of JSON-schema constrained decoding, on SmolLM2-135M-Instruct Q4_1.
//!
//! `cargo bench -p promptops-local --bench generate` (env: `BENCH_THREADS`, default all cores;
//! `BENCH_ROUNDS`, default 5). Prints one table; each figure is the median over the rounds.
//! With `BENCH_JSON=1` it also prints one `BENCH_JSON {...}` line with the per-round figures
//! (scripts/bench-local-reference.sh compares them with llama-cpp-python).
//! A plain harness rather than criterion: one generation takes about a second, and the figures
//! wanted are rates that llama.cpp's reference script reports the same way.

use std::time::Duration;

use promptops_core::message::Message;
use promptops_local::chat::{ChatOptions, ChatRequest, Constraint, Sampling};
use promptops_local::{LocalChat, ModelCache};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn rate(tokens: u32, time: Duration) -> f64 {
    f64::from(tokens) / time.as_secs_f64()
}

fn main() {
    let threads: u32 = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| ChatOptions::default().threads);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let cache = ModelCache::from_env().unwrap();
    let started = std::time::Instant::now();
    let chat = LocalChat::from_cache(
        &cache,
        ChatOptions {
            threads,
            ..ChatOptions::default()
        },
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let load = started.elapsed();

    // Prompt evaluation: a ~500-token raw prompt, one generated token; a distinct first word per
    // round so the KV cache cannot be reused.
    let paragraph = "The quick brown fox jumps over the lazy dog while the committee reviews \
                     the quarterly budget, the weather turns cold, and engineers benchmark \
                     small language models on modest hardware. ";
    let mut prompt_rates = Vec::new();
    let mut prompt_tokens = 0;
    let mut prompt_counts = Vec::new();
    for round in 0..rounds {
        let mut request = ChatRequest::text(format!("Round {round}. {}", paragraph.repeat(14)));
        request.sampling = Sampling::greedy();
        request.max_tokens = Some(1);
        let generation = chat.generate_blocking(request).unwrap();
        // Only the uncached tokens were evaluated (the shared "Round" prefix is reused).
        prompt_tokens = generation.usage.prompt_tokens - generation.usage.cached_tokens;
        prompt_counts.push(prompt_tokens);
        prompt_rates.push(rate(prompt_tokens, generation.timings.prompt));
    }

    // Generation: 128 greedy tokens after a short chat prompt (no stop: the budget is spent).
    let story = |round: usize| {
        let mut request = ChatRequest::new(vec![Message::user(format!(
            "Story {round}: write a long story about a lighthouse keeper."
        ))]);
        request.sampling = Sampling::greedy();
        request.max_tokens = Some(128);
        request
    };
    let mut generation_rates = Vec::new();
    let mut first_token = Vec::new();
    let mut generated = 0;
    let mut generated_counts = Vec::new();
    let mut story_prompt_tokens = 0;
    let mut greedy_text = String::new();
    for round in 0..rounds {
        let generation = chat.generate_blocking(story(round)).unwrap();
        generated = generation.usage.completion_tokens;
        generated_counts.push(generated);
        story_prompt_tokens = generation.usage.prompt_tokens;
        if round == 0 {
            greedy_text.clone_from(&generation.text);
        }
        generation_rates.push(rate(
            generation.usage.completion_tokens,
            generation.timings.generation,
        ));
        first_token.push(generation.timings.first_token.as_secs_f64() * 1000.0);
    }

    // Constrained: the same kind of generation held to a JSON schema.
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "title": { "type": "string" },
            "year": { "type": "integer" },
            "characters": { "type": "array", "items": { "type": "string" } },
            "summary": { "type": "string" }
        },
        "required": ["title", "year", "characters", "summary"]
    });
    let mut constrained_rates = Vec::new();
    let mut constrained_tokens = 0;
    let mut constrained_counts = Vec::new();
    for round in 0..rounds {
        let mut request = story(round);
        request.sampling = Sampling {
            temperature: 0.7,
            seed: Some(round as u64),
            ..Sampling::default()
        };
        request.constraint = Some(Constraint::JsonSchema(schema.clone()));
        let generation = chat.generate_blocking(request).unwrap();
        constrained_tokens = generation.usage.completion_tokens;
        constrained_counts.push(constrained_tokens);
        constrained_rates.push(rate(
            generation.usage.completion_tokens,
            generation.timings.generation,
        ));
    }
    let mut unconstrained_sampled = Vec::new();
    let mut sampled_counts = Vec::new();
    for round in 0..rounds {
        let mut request = story(round);
        request.sampling = Sampling {
            temperature: 0.7,
            seed: Some(round as u64),
            ..Sampling::default()
        };
        let generation = chat.generate_blocking(request).unwrap();
        sampled_counts.push(generation.usage.completion_tokens);
        unconstrained_sampled.push(rate(
            generation.usage.completion_tokens,
            generation.timings.generation,
        ));
    }

    let json_line = std::env::var_os("BENCH_JSON")
        .is_some_and(|v| v == "1")
        .then(|| {
            serde_json::json!({
                "engine": "promptops",
                "threads": threads,
                "rounds": rounds,
                "load_ms": load.as_secs_f64() * 1000.0,
                "prompt_tok_s": prompt_rates,
                "prompt_tokens": prompt_counts,
                "gen_tok_s": generation_rates,
                "gen_tokens": generated_counts,
                "ttft_ms": first_token,
                "sampled_tok_s": unconstrained_sampled,
                "sampled_tokens": sampled_counts,
                "constrained_tok_s": constrained_rates,
                "constrained_tokens": constrained_counts,
                "story_prompt_tokens": story_prompt_tokens,
                "greedy_text": greedy_text,
                "schema": schema.to_string(),
            })
        });
    let prompt_rate = median(prompt_rates);
    let generation_rate = median(generation_rates);
    let sampled_rate = median(unconstrained_sampled);
    let constrained_rate = median(constrained_rates);
    let overhead_ms = 1000.0 / constrained_rate - 1000.0 / sampled_rate;
    println!(
        "local chat model: SmolLM2-135M-Instruct Q4_1, {threads} thread(s), {rounds} rounds (medians)"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| model load | {:.0} ms |", load.as_secs_f64() * 1000.0);
    println!("| prompt eval ({prompt_tokens} tokens) | {prompt_rate:.0} tok/s |");
    println!("| generation, greedy ({generated} tokens) | {generation_rate:.0} tok/s |");
    println!(
        "| time to first token (chat prompt) | {:.0} ms |",
        median(first_token)
    );
    println!("| generation, sampled t=0.7 | {sampled_rate:.0} tok/s |");
    println!(
        "| generation, JSON-schema constrained t=0.7 ({constrained_tokens} tokens) | {constrained_rate:.0} tok/s |"
    );
    println!("| constrained overhead per token | {overhead_ms:.2} ms |");
    if let Some(line) = json_line {
        println!("BENCH_JSON {line}");
    }
}
