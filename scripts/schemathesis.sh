#!/usr/bin/env bash
# Fuzzes a live Tally with schemathesis (from PyPI) against docs/openapi.yaml: generated valid
# and invalid requests for every JSON operation, every check (no 5xx, responses that match
# the spec, invalid input refused, auth enforced). Usage: scripts/schemathesis.sh [CASES]
# (cases per operation; CI runs a short pass, scripts/soak.sh the 1,000-case one).
# The dashboard's HTML routes are excluded: they need a browser session and a CSRF token,
# and tests/it/dashboard.rs covers them.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/serve.sh
source scripts/lib/serve.sh
CASES=${1:-25}
VENV=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
if [ ! -x "$VENV/bin/schemathesis" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet 'schemathesis>=4.3,<5'
fi
cargo build --locked --quiet
WORK=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/tally.toml" <<TOML
[server]
listen = "127.0.0.1:0"
[database]
path = "$WORK/tally.db"
synchronous = "normal"
[auth]
service_keys = ["service-key-schemathesis"]
admin_keys = ["admin-key-schemathesis"]
# schemathesis sends hundreds of requests without a key or with a wrong one, on purpose,
# from one address: throttling them would turn its expected 401s into 429s.
# tests/it/auth.rs tests the throttle.
max_failures_per_minute = 1000000
TOML
start_tally "$WORK/tally.toml" "$WORK"
"$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml run docs/openapi.yaml \
    --url "http://$ADDR" \
    -H "Authorization: Bearer admin-key-schemathesis" \
    --exclude-path-regex '^/admin' \
    --checks all \
    --max-examples "$CASES" \
    --seed "${SCHEMATHESIS_SEED:-20261127}" \
    --no-color \
    --report junit --report-dir "$WORK/report"
echo "schemathesis: $CASES cases per operation, no failures"
