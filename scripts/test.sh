#!/usr/bin/env bash
# Runs Tally's whole test suite: unit tests and the integration tests that start the real
# binary. This is the command the README gives and CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked "$@"
