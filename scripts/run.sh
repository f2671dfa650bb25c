#!/usr/bin/env bash
# Builds the promptops binary (release) and runs it with the given arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
cargo build --release --quiet --bin promptops
exec target/release/promptops "$@"
