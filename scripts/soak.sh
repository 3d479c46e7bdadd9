#!/usr/bin/env bash
# The long versions of the reliability checks, one summary line each:
#   20 kill -9 rounds under load, the long schemathesis run (1,000 cases per route), and the
#   slowloris run. Takes about 15 minutes on 2 cores. CI runs the short versions.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --tests >/dev/null 2>&1 || { echo "build failed"; exit 1; }

status=0
summary() { # summary NAME COMMAND...
    local name=$1; shift
    local log; log=$(mktemp)
    local started=$SECONDS
    if "$@" > "$log" 2>&1; then
        echo "ok    $name ($((SECONDS - started)) s) $(grep -E '^(crash round|schemathesis:)' "$log" | tail -n 1)"
    else
        echo "FAIL  $name ($((SECONDS - started)) s): see $log"
        status=1
    fi
}

summary "crash: 20 kill -9 rounds under 32-connection load" \
    env TALLY_CRASH_ROUNDS=20 cargo test --locked --test it crash:: -- --nocapture
summary "schemathesis: 1000 generated cases per operation" \
    scripts/schemathesis.sh 1000
summary "slowloris: 1000 idle + 1000 dripping connections" \
    cargo test --locked --test it transport::a_thousand_idle -- --nocapture
exit $status
