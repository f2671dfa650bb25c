#!/usr/bin/env python3
"""The reference side of scripts/bench-local-reference.sh: llama.cpp through llama-cpp-python.

Mirrors crates/local/benches/generate.rs step for step on the same GGUF (SmolLM2-135M-Instruct
Q4_1), so the figures can be divided one by one:

* model load: `llama_cpp.Llama(...)` (model + a 4096-token context, n_batch = n_ubatch = 512).
* prompt eval: the same ~450-token raw prompt (`Round {r}. ` + the paragraph x 14, tokenized with
  BOS handling on and special tokens off), a distinct first word per round. Like our worker, the
  context keeps its KV cache and only the tokens after the longest common prefix (capped at
  len - 1) are decoded; the rate is those tokens over the wall time of the decode calls.
* generation, greedy: the same short chat prompt rendered through the GGUF's own chat template
  (Jinja2, the same variables our minijinja render passes), then a greedy sampler; the loop is
  ours: sample from the last logits, stop on an end-of-generation token, else count it, turn it
  into text, and decode it unless the 128-token budget is spent. Rate = tokens actually
  generated / wall time from the end of the prompt decode to the end of the loop.
* time to first token: from the start of the job (tokenizing included) to the first sample.
* sampled: temperature 0.7 + dist(seed = round), no other samplers (our chain).
* JSON-constrained: grammar (llama-cpp-python's JSON-schema-to-GBNF converter) + temp 0.7 +
  dist(seed = round), our chain order.

Model and context are created through `llama_cpp.Llama`; decoding goes through `Llama.eval`
(llama-cpp-python's own batched decode) and sampling through its sampler-chain wrapper.

Env: BENCH_THREADS (default: all cores, as ours), BENCH_ROUNDS (default 5), BENCH_MODEL (the
GGUF; default: the promptops models cache), BENCH_SCHEMA (the schema JSON text to constrain to;
default: the schema of generate.rs in serde_json's key order), BENCH_FLASH_ATTN (1/0, default 1:
our context resolves llama.cpp's "auto" to enabled on the CPU backend; llama-cpp-python's default
would be disabled). Prints one JSON object on stdout.
"""

import json
import os
import sys
import time

import jinja2
import llama_cpp
from llama_cpp import _internals
from llama_cpp.llama_grammar import LlamaGrammar

CONTEXT_SIZE = 4096  # ChatOptions::default().context_size
BATCH_SIZE = 512  # ChatOptions::default().batch_size
PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog while the committee reviews "
    "the quarterly budget, the weather turns cold, and engineers benchmark "
    "small language models on modest hardware. "
)
# serde_json::json! in generate.rs; the bench passes the exact serialisation via BENCH_SCHEMA.
DEFAULT_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "year": {"type": "integer"},
        "characters": {"type": "array", "items": {"type": "string"}},
        "summary": {"type": "string"},
    },
    "required": ["title", "year", "characters", "summary"],
}


def median(values):
    # generate.rs: sort, take values[len / 2] (the upper median for an even count).
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def model_path():
    if os.environ.get("BENCH_MODEL"):
        return os.environ["BENCH_MODEL"]
    root = os.environ.get("PROMPTOPS_MODELS_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache/promptops/models"
    )
    return os.path.join(root, "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf")


class Engine:
    """One llama-cpp-python context used the way our worker uses its context."""

    def __init__(self, path, threads, flash_attn):
        started = time.perf_counter()
        self.llm = llama_cpp.Llama(
            model_path=path,
            n_ctx=CONTEXT_SIZE,
            n_batch=BATCH_SIZE,
            n_ubatch=BATCH_SIZE,
            n_threads=threads,
            n_threads_batch=threads,
            flash_attn=flash_attn,
            verbose=False,
        )
        self.load_s = time.perf_counter() - started
        self.vocab = self.llm._model.vocab
        template = self.llm.metadata.get("tokenizer.chat_template")
        env = jinja2.Environment()

        def raise_exception(message):
            raise jinja2.TemplateError(message)

        env.globals["raise_exception"] = raise_exception
        self.template = env.from_string(template) if template else None

    def render(self, messages):
        return self.template.render(
            messages=messages,
            add_generation_prompt=True,
            bos_token="<|im_start|>",
            eos_token="<|im_end|>",
        )

    def run(self, prompt, parse_special, max_tokens, sampler):
        """Our run_job: returns prompt-eval tokens, timings and generated token count and text."""
        llm = self.llm
        started = time.perf_counter()
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=parse_special)
        room = CONTEXT_SIZE - len(tokens)
        limit = room if max_tokens is None else min(max_tokens, room)
        cached = list(llm._input_ids)
        common = 0
        for a, b in zip(cached, tokens):
            if a != b:
                break
            common += 1
        common = min(common, len(tokens) - 1)
        llm.n_tokens = common  # Llama.eval removes the KV entries from n_tokens on
        prompt_start = time.perf_counter()
        llm.eval(tokens[common:])
        prompt_time = time.perf_counter() - prompt_start

        chain = sampler()
        first_token = None
        generation_start = time.perf_counter()
        completion = 0
        text = b""
        while completion < limit:
            token = chain.sample(llm._ctx, -1)
            if first_token is None:
                first_token = time.perf_counter() - started
            if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                break
            completion += 1
            text += llm._model.token_to_piece(token, special=False).rstrip(b"\0")
            if completion == limit:
                break
            llm.eval([token])
        generation_time = time.perf_counter() - generation_start
        chain.close()
        return {
            "prompt_tokens": len(tokens),
            "evaluated": len(tokens) - common,
            "prompt_s": prompt_time,
            "first_token_s": first_token if first_token is not None else time.perf_counter() - started,
            "generation_s": generation_time,
            "completion_tokens": completion,
            "text": text.decode("utf-8", errors="replace"),
        }


def greedy():
    chain = _internals.LlamaSampler()
    chain.add_greedy()
    return chain


def sampled(seed, grammar=None, model=None):
    def build():
        chain = _internals.LlamaSampler()
        if grammar is not None:
            chain.add_grammar(model, grammar)
        chain.add_temp(0.7)
        chain.add_dist(seed)
        return chain

    return build


def main():
    threads = int(os.environ.get("BENCH_THREADS") or len(os.sched_getaffinity(0)))
    rounds = int(os.environ.get("BENCH_ROUNDS") or 5)
    flash_attn = os.environ.get("BENCH_FLASH_ATTN", "1") != "0"
    schema_text = os.environ.get("BENCH_SCHEMA") or json.dumps(DEFAULT_SCHEMA, separators=(",", ":"))
    engine = Engine(model_path(), threads, flash_attn)

    prompt_rates, prompt_counts = [], []
    for round_ in range(rounds):
        out = engine.run(f"Round {round_}. " + PARAGRAPH * 14, False, 1, greedy)
        prompt_counts.append(out["evaluated"])
        prompt_rates.append(out["evaluated"] / out["prompt_s"])

    def story(round_):
        return engine.render(
            [{"role": "user", "content": f"Story {round_}: write a long story about a lighthouse keeper."}]
        )

    gen_rates, gen_counts, ttft = [], [], []
    story_prompt_tokens, greedy_text = 0, ""
    for round_ in range(rounds):
        out = engine.run(story(round_), True, 128, greedy)
        gen_counts.append(out["completion_tokens"])
        gen_rates.append(out["completion_tokens"] / out["generation_s"])
        ttft.append(out["first_token_s"] * 1000.0)
        story_prompt_tokens = out["prompt_tokens"]
        if round_ == 0:
            greedy_text = out["text"]

    grammar = LlamaGrammar.from_json_schema(schema_text, verbose=False)
    constrained_rates, constrained_counts = [], []
    for round_ in range(rounds):
        out = engine.run(story(round_), True, 128, sampled(round_, grammar, engine.llm._model))
        constrained_counts.append(out["completion_tokens"])
        constrained_rates.append(out["completion_tokens"] / out["generation_s"])
    sampled_rates, sampled_counts = [], []
    for round_ in range(rounds):
        out = engine.run(story(round_), True, 128, sampled(round_))
        sampled_counts.append(out["completion_tokens"])
        sampled_rates.append(out["completion_tokens"] / out["generation_s"])

    result = {
        "engine": "llama-cpp-python",
        "version": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip(),
        "flash_attn": flash_attn,
        "threads": threads,
        "rounds": rounds,
        "load_ms": engine.load_s * 1000.0,
        "prompt_tok_s": prompt_rates,
        "prompt_tokens": prompt_counts,
        "gen_tok_s": gen_rates,
        "gen_tokens": gen_counts,
        "ttft_ms": ttft,
        "sampled_tok_s": sampled_rates,
        "sampled_tokens": sampled_counts,
        "constrained_tok_s": constrained_rates,
        "constrained_tokens": constrained_counts,
        "story_prompt_tokens": story_prompt_tokens,
        "greedy_text": greedy_text,
        "schema": schema_text,
        "medians": {
            "prompt_tok_s": median(prompt_rates),
            "gen_tok_s": median(gen_rates),
            "ttft_ms": median(ttft),
            "sampled_tok_s": median(sampled_rates),
            "constrained_tok_s": median(constrained_rates),
        },
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
