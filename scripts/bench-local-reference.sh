#!/usr/bin/env bash
# Same-run benchmark of the embedded local model (crates/local: llama.cpp through llama-cpp-2)
# against the reference llama.cpp engine (llama-cpp-python), on the same GGUF file.
#
#   bash scripts/bench-local-reference.sh
#
# Runs crates/local/benches/generate.rs (BENCH_JSON=1) and scripts/bench_local_reference.py
# (the same measurements, made the same way) alternately, A B B A ..., BENCH_PASSES times each
# with BENCH_ROUNDS rounds per run, so machine noise hits both; pools the per-round figures of
# each engine, takes medians, and prints a markdown table with ours/ref ratios.
#
# Env: BENCH_THREADS (default: all cores), BENCH_ROUNDS (default 3), BENCH_PASSES (default 2),
# REFBENCH_SDIST (the llama-cpp-python sdist; default /work/refbench/llama_cpp_python-0.3.36.tar.gz,
# else llama-cpp-python==0.3.36 is built from PyPI's sdist), BENCH_FLASH_ATTN (passed to the
# reference; default 1 = what our context's "auto" resolves to on CPU).
# The reference is built once into target/refbench-venv with the flags our llama-cpp-sys-2
# build uses (GGML_NATIVE=OFF, no OpenMP); raw JSON lands in target/refbench-results/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh
bash scripts/fetch-models.sh

threads="${BENCH_THREADS:-$(nproc)}"
rounds="${BENCH_ROUNDS:-3}"
passes="${BENCH_PASSES:-2}"
venv="target/refbench-venv"
sdist="${REFBENCH_SDIST:-/work/refbench/llama_cpp_python-0.3.36.tar.gz}"
python_bin="$(command -v python3.11 || command -v python3)"

# The reference engine, built from source with our build's ggml flags.
if ! "$venv/bin/python" -c 'import llama_cpp' >/dev/null 2>&1; then
  echo "bench-local-reference: building llama-cpp-python into $venv (several minutes)" >&2
  "$python_bin" -m venv "$venv"
  if [ -f "$sdist" ]; then source_spec="$sdist"; else source_spec="llama-cpp-python==0.3.36"; fi
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF" \
    nice -n 10 "$venv/bin/pip" install --quiet --disable-pip-version-check \
    --no-binary llama-cpp-python "$source_spec"
fi

# Our side: build the bench once (bench profile), then run its executable directly so that a
# cargo lock held by another build cannot stall a pass.
bench_exe="$(nice -n 10 cargo bench -p promptops-local --bench generate --no-run \
  --message-format=json | "$python_bin" -c '
import json, sys
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    target = msg.get("target") or {}
    if msg.get("reason") == "compiler-artifact" and target.get("name") == "generate" \
            and "bench" in target.get("kind", []) and msg.get("executable"):
        print(msg["executable"])
')"
if [ -z "$bench_exe" ] || [ ! -x "$bench_exe" ]; then
  echo "bench-local-reference: could not build the generate bench; run" >&2
  echo "  cargo bench -p promptops-local --bench generate --no-run" >&2
  exit 1
fi

results="target/refbench-results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$results"
echo "bench-local-reference: $threads thread(s), $rounds rounds x $passes passes per engine; raw JSON in $results" >&2
uptime > "$results/uptime-start.txt"

run_ours() {
  (cd crates/local && BENCH_JSON=1 BENCH_THREADS="$threads" BENCH_ROUNDS="$rounds" "$bench_exe" --bench) \
    > "$results/ours-$1.txt"
  sed -n 's/^BENCH_JSON //p' "$results/ours-$1.txt" > "$results/ours-$1.json"
}
run_ref() {
  local schema=""
  if [ -s "$results/ours-0.json" ]; then
    schema="$("$python_bin" -c 'import json, sys; print(json.load(open(sys.argv[1]))["schema"])' "$results/ours-0.json")"
  fi
  BENCH_SCHEMA="$schema" BENCH_THREADS="$threads" BENCH_ROUNDS="$rounds" \
    "$venv/bin/python" scripts/bench_local_reference.py > "$results/ref-$1.json"
}

for ((pass = 0; pass < passes; pass++)); do
  if ((pass % 2 == 0)); then order="ours ref"; else order="ref ours"; fi
  for engine in $order; do
    echo "bench-local-reference: pass $((pass + 1))/$passes: $engine" >&2
    "run_$engine" "$pass"
    uptime >> "$results/uptime-during.txt"
  done
done
uptime > "$results/uptime-end.txt"

"$python_bin" - "$results" "$passes" <<'PY' | tee "$results/table.md"
import json, sys

results, passes = sys.argv[1], int(sys.argv[2])
load = lambda name: [json.load(open(f"{results}/{name}-{p}.json")) for p in range(passes)]
ours, ref = load("ours"), load("ref")

def median(values):  # generate.rs: sorted, values[len / 2]
    values = sorted(values)
    return values[len(values) // 2]

def pooled(runs, key):
    return [v for run in runs for v in (run[key] if isinstance(run[key], list) else [run[key]])]

def counts(runs, key):
    values = sorted(set(pooled(runs, key)))
    return "/".join(str(v) for v in values)

m = {}
for name, runs in (("ours", ours), ("ref", ref)):
    m[name] = {key: median(pooled(runs, key)) for key in
               ("load_ms", "prompt_tok_s", "gen_tok_s", "ttft_ms", "sampled_tok_s", "constrained_tok_s")}
    m[name]["overhead_ms"] = 1000.0 / m[name]["constrained_tok_s"] - 1000.0 / m[name]["sampled_tok_s"]

rows = [
    ("model load", "load_ms", "ms", None),
    ("prompt eval", "prompt_tok_s", "tok/s", "prompt_tokens"),
    ("generation, greedy", "gen_tok_s", "tok/s", "gen_tokens"),
    ("time to first token (chat prompt)", "ttft_ms", "ms", None),
    ("generation, sampled t=0.7", "sampled_tok_s", "tok/s", "sampled_tokens"),
    ("generation, JSON-schema constrained t=0.7", "constrained_tok_s", "tok/s", "constrained_tokens"),
    ("constrained overhead per token", "overhead_ms", "ms", None),
]
r = ref[0]
print(f"promptops (llama-cpp-2 0.1.160) vs llama-cpp-python {r['version']}, SmolLM2-135M-Instruct Q4_1, "
      f"{r['threads']} thread(s), {sum(o['rounds'] for o in ours)} rounds per engine over {passes} alternating passes (medians)")
print()
print("| measure | promptops | llama-cpp-python | ratio ours/ref |")
print("|---|---|---|---|")
for label, key, unit, count_key in rows:
    a, b = m["ours"][key], m["ref"][key]
    if count_key:
        label += f" (tokens: {counts(ours, count_key)} vs {counts(ref, count_key)})"
    digits = 2 if key == "overhead_ms" else 0
    ratio = a / b if b else float("nan")
    better = "higher is better" if unit == "tok/s" else "lower is better"
    print(f"| {label} | {a:.{digits}f} {unit} | {b:.{digits}f} {unit} | {ratio:.2f}x ({better}) |")
print()
same = ours[0]["greedy_text"] == r["greedy_text"]
print(f"- chat prompt tokens: {ours[0]['story_prompt_tokens']} (promptops) vs {r['story_prompt_tokens']} (llama-cpp-python); "
      f"greedy text of round 0 identical: {'yes' if same else 'no'}")
print(f"- reference flash_attn: {r['flash_attn']}; reference system info: {r['system_info']}")
print("- per-round rates (tok/s): " + "; ".join(
    f"{name} {key} {[round(v) for v in pooled(runs, key)]}"
    for name, runs in (("ours", ours), ("ref", ref)) for key in ("prompt_tok_s", "gen_tok_s")))
PY
echo >&2
echo "bench-local-reference: load during the run:" >&2
cat "$results/uptime-start.txt" "$results/uptime-during.txt" "$results/uptime-end.txt" >&2
