#!/usr/bin/env bash
# Load benchmark of the gateway, in one run on this machine, against two references measured in
# the same run: the mock OpenAI upstream alone ("direct"), and a minimal proxy on the gateway's
# own HTTP stack in front of the same mock ("reference proxy": axum + reqwest copying bytes, no
# parsing; examples/reference_proxy.rs), next to `promptops serve` in front of the same mock.
#
# 1. Closed loop (wrk, N connections each sending as fast as answers come): throughput, p50/p99
#    and CPU time per request of the process in front (from /proc): the mock for direct, the
#    reference proxy, the gateway. The highest gateway throughput is the machine's capacity.
# 2. Open loop (oha -q RATE --latency-correction: requests are due on a fixed schedule and
#    latency counts from when a request was due, so a stall is not hidden by the client waiting):
#    direct, reference proxy and gateway at fixed rates that are fractions of that capacity. The added p99 is
#    read at the highest rate the gateway sustains (delivers >= 99% of the offered rate with no
#    errors and a p50 under 5 ms, i.e. without a standing queue).
# Usage: bash scripts/bench-gateway.sh [SECONDS_PER_RUN] [CONNECTIONS...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
if ! command -v wrk >/dev/null 2>&1; then
  echo "bench-gateway: installing wrk (apt)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null \
    || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
fi
if ! command -v oha >/dev/null 2>&1; then
  echo "bench-gateway: installing oha (cargo install, a few minutes once)" >&2
  cargo install --quiet --locked oha
fi
seconds=${1:-10}
shift || true
connections=("$@")
[ ${#connections[@]} -gt 0 ] || connections=(1 8 32 128)

cargo build --release --quiet -p promptops-cli -p promptops-gateway --bin promptops \
  --example mock_upstream --example reference_proxy
bin=${CARGO_TARGET_DIR:-target}/release
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
proxy_port=$(free_port)
gateway_port=$(free_port)
"$bin/examples/mock_upstream" "127.0.0.1:$upstream_port" 2>/dev/null &
upstream_pid=$!; pids+=("$upstream_pid")
"$bin/examples/reference_proxy" "127.0.0.1:$proxy_port" "http://127.0.0.1:$upstream_port" 2>/dev/null &
proxy_pid=$!; pids+=("$proxy_pid")
cat > "$work/promptops.toml" <<TOML
[server]
listen = "127.0.0.1:$gateway_port"

[[providers]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:$upstream_port/v1"
TOML
PROMPTOPS_LOG=off "$bin/promptops" --database-url "sqlite://$work/registry.db" \
  --config "$work/promptops.toml" serve 2>"$work/gateway.log" &
gateway_pid=$!; pids+=("$gateway_pid")
wait_port "$upstream_port" "$upstream_pid"
wait_port "$proxy_port" "$proxy_pid"
wait_port "$gateway_port" "$gateway_pid"

path=/v1/chat/completions
direct="http://127.0.0.1:$upstream_port$path"
reference="http://127.0.0.1:$proxy_port$path"
gateway="http://127.0.0.1:$gateway_port$path"
body='{"model":"mock/gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"What is the capital of France?"}]}'
printf '%s' "$body" > "$work/body.json"
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$body'
LUA

# One closed-loop wrk run: prints "rps p50_ms p99_ms requests".
closed() {
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

# One open-loop oha run at a fixed rate: prints "rps p50_ms p99_ms requests errors".
open() {
  oha --no-tui --output-format json -z "${seconds}s" -q "$2" --latency-correction -c 64 \
    -m POST -T application/json -D "$work/body.json" "$1" | python3 -c '
import json, sys
report = json.load(sys.stdin)
summary, pct = report["summary"], report["latencyPercentiles"]
codes = report.get("statusCodeDistribution", {})
ok = sum(n for code, n in codes.items() if code.startswith("2"))
# Requests still in flight when the run ends are reported as "aborted due to deadline": not
# failures of the server.
failed = {k: n for k, n in report.get("errorDistribution", {}).items() if "deadline" not in k}
errors = sum(codes.values()) - ok + sum(failed.values())
print("%.0f %.3f %.3f %d %d" % (ok / summary["total"], pct["p50"] * 1e3, pct["p99"] * 1e3, ok, errors))
'
}

# Warm all paths (connection pools, allocator) before measuring.
for url in "$direct" "$reference" "$gateway"; do
  wrk -t1 -c4 -d2s -s "$work/post.lua" "$url" >/dev/null
done

echo "### Closed loop (wrk, ${seconds}s per run)"
echo
echo "| connections | req/s: direct / reference proxy / gateway | p50 ms: direct / reference / gateway | p99 ms: direct / reference / gateway | CPU µs/req: mock / reference proxy / gateway |"
echo "|---|---|---|---|---|"
capacity=0
for c in "${connections[@]}"; do
  a=$(cpu_of "$upstream_pid"); read -r d_rps d_p50 d_p99 d_n < <(closed "$direct" "$c"); b=$(cpu_of "$upstream_pid")
  e=$(cpu_of "$proxy_pid"); read -r r_rps r_p50 r_p99 r_n < <(closed "$reference" "$c"); f=$(cpu_of "$proxy_pid")
  g=$(cpu_of "$gateway_pid"); read -r g_rps g_p50 g_p99 g_n < <(closed "$gateway" "$c"); h=$(cpu_of "$gateway_pid")
  python3 - "$c" "$d_rps" "$r_rps" "$g_rps" "$d_p50" "$r_p50" "$g_p50" "$d_p99" "$r_p99" "$g_p99" \
    "$a" "$b" "$d_n" "$e" "$f" "$r_n" "$g" "$h" "$g_n" <<'PY'
import sys
v = sys.argv[1:]
us = lambda before, after, n: (float(after) - float(before)) / int(n) * 1e6
print(f"| {v[0]} | {v[1]} / {v[2]} / {v[3]} | {v[4]} / {v[5]} / {v[6]} | {v[7]} / {v[8]} / {v[9]} | "
      f"{us(v[10], v[11], v[12]):.1f} / {us(v[13], v[14], v[15]):.1f} / {us(v[16], v[17], v[18]):.1f} |")
PY
  capacity=$(( g_rps > capacity ? g_rps : capacity ))
done

echo
echo "### Open loop (oha -q, --latency-correction, 64 connections, ${seconds}s per run; gateway capacity above: $capacity req/s)"
echo
echo "| offered req/s | delivered: direct / reference / gateway | direct p50 / p99 (ms) | reference proxy p50 / p99 (ms) | gateway p50 / p99 (ms) | added by the reference p99 (ms) | added by the gateway p50 / p99 (ms) | CPU µs/req: mock / reference / gateway |"
echo "|---|---|---|---|---|---|---|---|"
sustained=""
for percent in 10 25 50 70 85; do
  rate=$(( capacity * percent / 100 ))
  [ "$rate" -gt 0 ] || continue
  a=$(cpu_of "$upstream_pid"); read -r d_rps d_p50 d_p99 d_n d_err < <(open "$direct" "$rate"); b=$(cpu_of "$upstream_pid")
  e=$(cpu_of "$proxy_pid"); read -r r_rps r_p50 r_p99 r_n r_err < <(open "$reference" "$rate"); f=$(cpu_of "$proxy_pid")
  g=$(cpu_of "$gateway_pid"); read -r g_rps g_p50 g_p99 g_n g_err < <(open "$gateway" "$rate"); h=$(cpu_of "$gateway_pid")
  line=$(python3 - "$rate" "$d_rps" "$r_rps" "$g_rps" "$d_p50" "$d_p99" "$r_p50" "$r_p99" "$g_p50" "$g_p99" \
    "$a" "$b" "$d_n" "$e" "$f" "$r_n" "$g" "$h" "$g_n" "$g_err" <<'PY'
import sys
v = sys.argv[1:]
rate, d_rps, r_rps, g_rps = int(v[0]), float(v[1]), float(v[2]), float(v[3])
d50, d99, r50, r99, g50, g99 = map(float, v[4:10])
us = lambda before, after, n: (float(after) - float(before)) / max(int(n), 1) * 1e6
# Sustained: delivered, no errors, and no standing queue (a p50 of several ms means requests
# wait behind a backlog that grows for as long as the rate holds).
ok = g_rps >= 0.99 * rate and int(v[19]) == 0 and g50 < 5.0
print(("ok" if ok else "no") + f" | {rate} | {d_rps:.0f} / {r_rps:.0f} / {g_rps:.0f} | {d50:.3f} / {d99:.3f} | "
      f"{r50:.3f} / {r99:.3f} | {g50:.3f} / {g99:.3f} | {r99 - d99:+.3f} | {g50 - d50:+.3f} / {g99 - d99:+.3f} | "
      f"{us(v[10], v[11], v[12]):.1f} / {us(v[13], v[14], v[15]):.1f} / {us(v[16], v[17], v[18]):.1f} |")
PY
)
  echo "${line#* }"
  [ "${line%% *}" = ok ] && sustained="${line#* }"
done
echo
if [ -n "$sustained" ]; then
  echo "Highest rate sustained through the gateway (>= 99% of offered, no errors, p50 < 5 ms): ${sustained}"
else
  echo "The gateway sustained none of the offered rates."
fi
