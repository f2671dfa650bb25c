#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The embedded chat model, run for real: SmolLM2-135M-Instruct from the model cache
//! (`scripts/test.sh` pulls it first).

use promptops_core::message::Message;
use promptops_core::tokens::{Exactness, Tokenizer};
use promptops_local::chat::{
    ChatEvent, ChatOptions, ChatRequest, Constraint, FinishReason, Prompt, Sampling,
};
use promptops_local::{LocalChat, LocalError, ModelCache};

fn engine() -> LocalChat {
    engine_with(ChatOptions::default())
}

fn engine_with(options: ChatOptions) -> LocalChat {
    let cache = ModelCache::from_env().unwrap();
    LocalChat::from_cache(&cache, options).unwrap_or_else(|error| panic!("{error}"))
}

/// A question with a plain system prompt: this 135M model answers far better with it than with
/// its template's default "You are SmolLM" prompt.
fn ask(question: &str) -> ChatRequest {
    ChatRequest::new(vec![
        Message::system("You are a helpful assistant."),
        Message::user(question),
    ])
}

fn greedy(question: &str, max_tokens: u32) -> ChatRequest {
    let mut request = ask(question);
    request.sampling = Sampling::greedy();
    request.max_tokens = Some(max_tokens);
    request
}

#[test]
fn answers_a_question_with_usage_and_timings() {
    let chat = engine();
    let generation = chat
        .generate_blocking(greedy("What is the capital of France?", 40))
        .unwrap();
    assert!(generation.text.contains("Paris"), "{:?}", generation.text);
    assert!(generation.usage.completion_tokens > 0);
    assert!(generation.usage.completion_tokens <= 40);
    let expected_prompt = chat
        .count_prompt_tokens(&greedy("What is the capital of France?", 40))
        .unwrap();
    assert_eq!(generation.usage.prompt_tokens as usize, expected_prompt);
    assert!(generation.timings.first_token > std::time::Duration::ZERO);
}

#[test]
fn chat_template_comes_from_the_gguf_with_its_default_system_prompt() {
    let chat = engine();
    let prompt = chat.render(&[Message::user("hi")]).unwrap();
    assert!(
        prompt.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{prompt:?}"
    );
    assert!(
        prompt.ends_with("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
        "{prompt:?}"
    );
    let with_system = chat
        .render(&[Message::system("Be terse."), Message::user("hi")])
        .unwrap();
    assert!(
        with_system.starts_with("<|im_start|>system\nBe terse.<|im_end|>\n"),
        "{with_system:?}"
    );
    assert!(!with_system.contains("SmolLM"));
}

#[tokio::test]
async fn streamed_deltas_add_up_to_the_blocking_result() {
    let chat = engine();
    let request = greedy("Name three colours.", 30);
    let whole = chat.generate_blocking(request.clone()).unwrap();
    let mut stream = chat.stream(request).unwrap();
    let mut text = String::new();
    let mut deltas = 0;
    let mut done = None;
    while let Some(event) = stream.next_event().await {
        match event.unwrap() {
            ChatEvent::Delta { text: delta, .. } => {
                assert!(done.is_none(), "delta after done");
                deltas += 1;
                text.push_str(&delta);
            }
            ChatEvent::Done {
                finish_reason,
                usage,
                ..
            } => done = Some((finish_reason, usage)),
        }
    }
    let (finish_reason, usage) = done.expect("a Done event");
    assert_eq!(text, whole.text);
    assert!(deltas > 1, "expected several deltas, got {deltas}");
    assert_eq!(finish_reason, whole.finish_reason);
    assert_eq!(usage.completion_tokens, whole.usage.completion_tokens);
}

fn sampled(seed: u64) -> ChatRequest {
    let mut request = ask("Write one sentence about the sea.");
    request.sampling = Sampling {
        temperature: 1.0,
        top_k: Some(50),
        top_p: Some(0.95),
        min_p: Some(0.02),
        repetition_penalty: Some(1.1),
        seed: Some(seed),
        ..Sampling::default()
    };
    request.max_tokens = Some(24);
    request
}

#[test]
fn the_same_seed_reproduces_the_output() {
    let chat = engine();
    let first = chat.generate_blocking(sampled(42)).unwrap();
    let second = chat.generate_blocking(sampled(42)).unwrap();
    assert_eq!(first.text, second.text);
    // A fresh engine (fresh context, no KV reuse) gives the same text too.
    let third = engine().generate_blocking(sampled(42)).unwrap();
    assert_eq!(first.text, third.text);
}

#[test]
fn different_seeds_give_different_outputs_at_temperature_one() {
    let chat = engine();
    let outputs: std::collections::BTreeSet<String> = (1..=4)
        .map(|seed| chat.generate_blocking(sampled(seed)).unwrap().text)
        .collect();
    assert!(
        outputs.len() >= 2,
        "all seeds gave the same text: {outputs:?}"
    );
}

#[test]
fn stop_sequence_ends_the_output_before_it() {
    let chat = engine();
    let free = chat
        .generate_blocking(greedy("Count from one to ten in words.", 60))
        .unwrap();
    // Stop on a piece of text the model produces mid-way (it spans tokens in general).
    let words: Vec<&str> = free.text.split_whitespace().collect();
    assert!(words.len() >= 4, "{:?}", free.text);
    let stop = format!("{} {}", words[2], words[3]);
    let cut = free.text.find(&stop).unwrap();
    let mut request = greedy("Count from one to ten in words.", 60);
    request.stop = vec!["never-appears-here".to_owned(), stop.clone()];
    let stopped = chat.generate_blocking(request).unwrap();
    assert_eq!(stopped.text, free.text[..cut], "stop {stop:?}");
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
}

#[test]
fn max_tokens_bounds_the_generation() {
    let chat = engine();
    let generation = chat
        .generate_blocking(greedy("Write a long story about a dragon.", 7))
        .unwrap();
    assert_eq!(generation.usage.completion_tokens, 7);
    assert_eq!(generation.finish_reason, FinishReason::Length);
}

#[test]
fn logprobs_follow_the_model_distribution() {
    let chat = engine();
    let mut request = greedy("Say hello.", 8);
    request.logprobs = Some(3);
    let generation = chat.generate_blocking(request).unwrap();
    let logprobs = generation.logprobs.expect("logprobs were requested");
    assert_eq!(logprobs.len(), generation.usage.completion_tokens as usize);
    let joined: String = logprobs.iter().map(|l| l.token.as_str()).collect();
    assert_eq!(joined, generation.text);
    for entry in &logprobs {
        assert!(
            entry.logprob <= 0.0 && entry.logprob.is_finite(),
            "{entry:?}"
        );
        assert_eq!(entry.top.len(), 3);
        assert!(entry.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        // Greedy decoding picks the most likely token.
        assert!(
            (entry.top[0].logprob - entry.logprob).abs() < 1e-5,
            "{entry:?}"
        );
    }
}

#[test]
fn json_schema_constrained_output_parses_and_validates() {
    let chat = engine();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": { "type": "string" },
            "age": { "type": "integer", "minimum": 0 },
            "colours": { "type": "array", "items": { "type": "string" }, "maxItems": 3 }
        },
        "required": ["name", "age", "colours"],
        "additionalProperties": false
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    for seed in [1, 2] {
        let mut request = ask("Describe a person as JSON.");
        request.sampling = Sampling {
            temperature: 0.8,
            seed: Some(seed),
            ..Sampling::default()
        };
        request.max_tokens = Some(120);
        request.constraint = Some(Constraint::JsonSchema(schema.clone()));
        let generation = chat.generate_blocking(request).unwrap();
        assert_eq!(
            generation.finish_reason,
            FinishReason::Stop,
            "{:?}",
            generation.text
        );
        let value: serde_json::Value = serde_json::from_str(&generation.text)
            .unwrap_or_else(|error| panic!("{error}: {:?}", generation.text));
        assert!(validator.is_valid(&value), "{value}");
    }
}

#[test]
fn gbnf_grammar_constrains_the_output() {
    let chat = engine();
    let mut request = greedy("Is the sky blue? Answer yes or no.", 10);
    request.constraint = Some(Constraint::Grammar {
        gbnf: r#"root ::= ("yes" | "no") "." "#.to_owned(),
        root: "root".to_owned(),
    });
    let generation = chat.generate_blocking(request).unwrap();
    assert!(
        generation.text == "yes." || generation.text == "no.",
        "{:?}",
        generation.text
    );
}

#[test]
fn regex_constrains_the_whole_output_with_sampling_too() {
    let chat = engine();
    let pattern = r"(yes|no), because [a-z ]{3,30}\.";
    let whole = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
    let mut request = greedy("Is the sky blue? Answer yes or no, then why.", 40);
    request.constraint = Some(Constraint::Regex(pattern.to_owned()));
    let generation = chat.generate_blocking(request.clone()).unwrap();
    assert!(whole.is_match(&generation.text), "{:?}", generation.text);
    assert_eq!(generation.finish_reason, FinishReason::Stop);
    // Sampling at temperature 1 explores other tokens; the mask still holds for every seed.
    for seed in 1..=3 {
        let mut sampled = request.clone();
        sampled.sampling = Sampling {
            temperature: 1.0,
            seed: Some(seed),
            ..Sampling::default()
        };
        let generation = chat.generate_blocking(sampled).unwrap();
        assert!(
            whole.is_match(&generation.text),
            "seed {seed}: {:?}",
            generation.text
        );
    }
    // A regex that does not parse is an error of the call, naming the constraint kind.
    let mut bad = greedy("hi", 5);
    bad.constraint = Some(Constraint::Regex("(unclosed".to_owned()));
    let error = chat.generate_blocking(bad).unwrap_err();
    assert!(
        matches!(error, LocalError::Constraint { kind: "regex", .. }),
        "{error}"
    );
}

#[test]
fn a_grammar_that_does_not_compile_is_a_clear_error() {
    let chat = engine();
    let mut request = greedy("hi", 5);
    request.constraint = Some(Constraint::Grammar {
        gbnf: "root ::= missing_rule".to_owned(),
        root: "root".to_owned(),
    });
    let error = chat.generate_blocking(request).unwrap_err();
    assert!(
        matches!(
            error,
            LocalError::Constraint {
                kind: "grammar",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn tokenizer_is_exact_and_matches_the_prompt_usage() {
    let chat = engine();
    let tokenizer = chat.tokenizer();
    assert_eq!(tokenizer.exactness(), Exactness::Exact);
    assert_eq!(tokenizer.vocab_size(), 49_152);
    let text = "Hello, world! Ünïcödé 12345 tokens\n\tand   spaces 🚀 <|im_start|>";
    let ids = tokenizer.encode(text, false);
    assert_eq!(tokenizer.count(text), ids.len());
    assert_eq!(tokenizer.decode(&ids), text);
    // Special-token text is plain text unless asked for: one id when parsed as special.
    assert_eq!(tokenizer.encode("<|im_start|>", true), vec![1]);
    assert!(tokenizer.encode("<|im_start|>", false).len() > 1);
    // The count of a raw prompt is exactly what the model evaluates.
    let mut request = ChatRequest::text(text);
    request.sampling = Sampling::greedy();
    request.max_tokens = Some(1);
    let generation = chat.generate_blocking(request).unwrap();
    assert_eq!(
        generation.usage.prompt_tokens as usize,
        tokenizer.count(text)
    );
}

#[test]
fn kv_cache_is_reused_across_turns() {
    let chat = engine();
    let first = chat
        .generate_blocking(greedy("Tell me a fact about cats.", 20))
        .unwrap();
    assert_eq!(first.usage.cached_tokens, 0);
    let mut follow_up = greedy("Tell me a fact about cats.", 20);
    follow_up.prompt = Prompt::Messages(vec![
        Message::system("You are a helpful assistant."),
        Message::user("Tell me a fact about cats."),
        Message::assistant(first.text.clone()),
        Message::user("And one about dogs?"),
    ]);
    let second = chat.generate_blocking(follow_up).unwrap();
    assert!(
        second.usage.cached_tokens >= first.usage.prompt_tokens,
        "cached {} of {}, first prompt {}",
        second.usage.cached_tokens,
        second.usage.prompt_tokens,
        first.usage.prompt_tokens
    );
}

#[tokio::test]
async fn dropping_a_stream_cancels_its_generation() {
    let chat = engine(); // one worker: every request below runs on the same context
    let prompt = "Once upon a time, in a small village by the sea,";
    let raw = |max_tokens: u32| {
        let mut request = ChatRequest::text(prompt);
        request.sampling = Sampling::greedy();
        request.max_tokens = Some(max_tokens);
        request
    };
    // The greedy continuation, 200 tokens long.
    let continuation = chat.generate(raw(200)).await.unwrap();
    assert_eq!(continuation.usage.completion_tokens, 200);
    // Start the same generation with a large budget, read one delta, then drop the stream.
    let mut stream = chat.stream(raw(1000)).unwrap();
    let first = stream.next_event().await.unwrap().unwrap();
    assert!(matches!(first, ChatEvent::Delta { .. }));
    drop(stream);
    // The worker's KV cache now holds the prompt plus the few tokens generated before the
    // cancellation was seen; had it run on, it would hold hundreds of continuation tokens.
    let mut probe = ChatRequest::text(format!("{prompt}{}", continuation.text));
    probe.sampling = Sampling::greedy();
    probe.max_tokens = Some(1);
    let probe = chat.generate(probe).await.unwrap();
    assert!(
        probe.usage.cached_tokens < continuation.usage.prompt_tokens + 50,
        "cached {} tokens: the cancelled generation kept running",
        probe.usage.cached_tokens
    );
}

#[tokio::test]
async fn two_workers_serve_requests_concurrently_with_identical_results() {
    let chat = engine_with(ChatOptions {
        workers: 2,
        threads: 1,
        ..ChatOptions::default()
    });
    let request = greedy("What is two plus two?", 16);
    let (a, b) = tokio::join!(chat.generate(request.clone()), chat.generate(request));
    assert_eq!(a.unwrap().text, b.unwrap().text);
}

#[test]
fn invalid_requests_are_rejected_naming_the_field() {
    let chat = engine();
    let mut request = greedy("hi", 5);
    request.sampling.temperature = -1.0;
    let error = chat.generate_blocking(request).unwrap_err().to_string();
    assert!(error.contains("temperature"), "{error}");
    let error = chat
        .generate_blocking(ChatRequest::new(Vec::new()))
        .unwrap_err()
        .to_string();
    assert!(error.contains("messages"), "{error}");
    let mut request = greedy("hi", 5);
    request.logprobs = Some(21);
    let error = chat.generate_blocking(request).unwrap_err().to_string();
    assert!(error.contains("top_logprobs"), "{error}");
}
