#!/usr/bin/env bash
# Builds the promptops binary (release) and runs it with the given arguments. Installs what it
# needs first: system packages (scripts/bootstrap.sh) and the embedded models
# (scripts/fetch-models.sh; a no-op once they are in the cache).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
bash scripts/fetch-models.sh
cargo build --release --quiet --bin promptops
exec target/release/promptops "$@"
