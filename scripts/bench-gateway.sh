#!/usr/bin/env bash
# Load benchmark of the gateway, in one run on this machine: wrk drives the mock OpenAI upstream
# directly (the reference) and the same upstream through `promptops serve`, at several
# concurrency levels. Reports throughput, p50/p99 latency, the latency the gateway adds, and CPU
# time per request of the gateway process and of the mock upstream (from /proc).
# Usage: bash scripts/bench-gateway.sh [SECONDS_PER_RUN] [CONNECTIONS...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
if ! command -v wrk >/dev/null 2>&1; then
  echo "bench-gateway: installing wrk (apt)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null \
    || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
fi
seconds=${1:-10}
shift || true
connections=("$@")
[ ${#connections[@]} -gt 0 ] || connections=(1 8 32 128)

cargo build --release --quiet -p promptops-cli
cargo build --release --quiet -p promptops-gateway --example mock_upstream
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits for process $2 to listen on port $1 (fails at once if the process died).
wait_port() {
  for _ in $(seq 400); do
    kill -0 "$2" 2>/dev/null || { echo "bench-gateway: process $2 exited before listening on $1" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench-gateway: port $1 never opened" >&2; exit 1
}
# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v tck="$(getconf CLK_TCK)" '{ printf "%.4f", ($14 + $15) / tck }' "/proc/$1/stat"; }

upstream_port=$(free_port)
gateway_port=$(free_port)
target/release/examples/mock_upstream "127.0.0.1:$upstream_port" 2>/dev/null &
upstream_pid=$!; pids+=("$upstream_pid")
cat > "$work/promptops.toml" <<TOML
[server]
listen = "127.0.0.1:$gateway_port"

[[providers]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:$upstream_port/v1"
TOML
PROMPTOPS_LOG=off target/release/promptops --database-url "sqlite://$work/registry.db" \
  --config "$work/promptops.toml" serve 2>"$work/gateway.log" &
gateway_pid=$!; pids+=("$gateway_pid")
wait_port "$upstream_port" "$upstream_pid"
wait_port "$gateway_port" "$gateway_pid"

cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"mock/gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"What is the capital of France?"}]}'
LUA

# One wrk run: prints "rps p50_ms p99_ms requests".
run() {
  wrk -t"$(( $2 < 2 ? $2 : 2 ))" -c"$2" -d"${seconds}s" --latency -s "$work/post.lua" "$1" | python3 -c '
import re, sys
text = sys.stdin.read()
def ms(label):
    m = re.search(r"^\s*" + label + r"\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors:
    sys.exit("wrk saw %s non-2xx responses" % errors.group(1))
print("%.0f %.3f %.3f %d" % (rps, ms("50%"), ms("99%"), total))
'
}

# Warm both paths (connection pools, allocator) before measuring.
wrk -t1 -c4 -d2s -s "$work/post.lua" "http://127.0.0.1:$upstream_port/v1/chat/completions" >/dev/null
wrk -t1 -c4 -d2s -s "$work/post.lua" "http://127.0.0.1:$gateway_port/v1/chat/completions" >/dev/null

echo "| connections | direct req/s | gateway req/s | direct p50 / p99 (ms) | gateway p50 / p99 (ms) | added p50 / p99 (ms) | CPU µs/req: mock | CPU µs/req: gateway |"
echo "|---|---|---|---|---|---|---|---|"
for c in "${connections[@]}"; do
  up_before=$(cpu_of "$upstream_pid")
  read -r d_rps d_p50 d_p99 d_n < <(run "http://127.0.0.1:$upstream_port/v1/chat/completions" "$c")
  up_direct=$(cpu_of "$upstream_pid")
  gw_before=$(cpu_of "$gateway_pid")
  read -r g_rps g_p50 g_p99 g_n < <(run "http://127.0.0.1:$gateway_port/v1/chat/completions" "$c")
  gw_after=$(cpu_of "$gateway_pid")
  up_after=$(cpu_of "$upstream_pid")
  python3 - "$c" "$d_rps" "$d_p50" "$d_p99" "$d_n" "$g_rps" "$g_p50" "$g_p99" "$g_n" \
    "$up_before" "$up_direct" "$gw_before" "$gw_after" "$up_after" <<'PY'
import sys
(c, d_rps, d_p50, d_p99, d_n, g_rps, g_p50, g_p99, g_n,
 up0, up1, gw0, gw1, up2) = sys.argv[1:]
d_n, g_n = int(d_n), int(g_n)
mock_us = (float(up1) - float(up0)) / d_n * 1e6
gw_us = (float(gw1) - float(gw0)) / g_n * 1e6
print(f"| {c} | {d_rps} | {g_rps} | {float(d_p50):.3f} / {float(d_p99):.3f} | "
      f"{float(g_p50):.3f} / {float(g_p99):.3f} | "
      f"{float(g_p50) - float(d_p50):+.3f} / {float(g_p99) - float(d_p99):+.3f} | "
      f"{mock_us:.1f} | {gw_us:.1f} |")
PY
done
