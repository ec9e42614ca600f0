#!/usr/bin/env bash
# The whole test suite on a new machine: installs and starts what the tests need
# (idempotently; run it as often as you like), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

for setup in scripts/setup/*.sh; do
  echo "== setup: $setup"
  source "$setup"
done

command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
echo "== tests"
cargo nextest run --workspace --all-features --no-fail-fast "$@"
echo "== doc tests"
cargo test --workspace --all-features --doc
scripts/fuzz.sh --ci
