#!/usr/bin/env bash
# bench/pinned.sh TALLY_BIN LABEL: Tally on CPU 1, the load generator on CPU 0 (so each gets one
# core whatever its thread count), 64 connections: durable track, then check. Prints JSON lines.
# Run from the repository root after bench/run.sh built target/release.
set -euo pipefail
BIN=$1; LABEL=$2; DIR=$(mktemp -d /tmp/pinned.XXXXXX)
cat > "$DIR/tally.toml" <<TOML
[server]
listen = "127.0.0.1:0"
max_connections = 1024
[database]
path = "$DIR/tally.db"
synchronous = "full"
TOML
cat bench/plans.toml >> "$DIR/tally.toml"
RUST_LOG=warn taskset -c 1 "$BIN" serve --config "$DIR/tally.toml" > "$DIR/stdout" 2> "$DIR/stderr" &
PID=$!
for _ in $(seq 1 200); do ADDR=$(sed -n 's#^listening on http://##p' "$DIR/stdout"); [ -n "$ADDR" ] && break; sleep 0.02; done
for op in track check; do
  taskset -c 0 target/release/loadgen --label "$LABEL-$op" --target http --op $op --addr "$ADDR" --connections 64 --duration ${DURATION:-10}
done
kill $PID; wait $PID 2>/dev/null || true
