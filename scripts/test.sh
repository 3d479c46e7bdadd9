#!/usr/bin/env bash
# Runs Tally's whole test suite: unit tests and the integration tests that start the real
# binary. This is the command the README gives and CI runs (.ci/run). The dashboard's
# browser test drives headless Chromium, so the browser is installed first when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-browser.sh
cargo test --locked "$@"
