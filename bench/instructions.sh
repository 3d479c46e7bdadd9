#!/usr/bin/env bash
# Instructions per request, server side: the stable figure of the hot path (issue 12). This
# machine's absolute req/s move 25% between runs; instruction counts barely move.
#
# Runs a release build of Tally under `valgrind --tool=callgrind` (Debian's valgrind, installed
# if missing) and sends it, over one keep-alive connection, one request after another, a fixed
# sequence of N checks or N tracks cycling over 100 users (bench/plans.toml: every track is
# recorded; the users are tracked once before the checks). Each figure is the difference of a
# run with N + 200 requests and one with 200, divided by N, so the start and the first requests
# (which create the 100 users) cancel out: the figure is a steady-state request on a known user.
# Counted: every thread of the server up to the last answer (a `callgrind_control --dump` before
# the shutdown, whose final checkpoint depends on the WAL's length), at RUST_LOG=warn.
#
#   bench/instructions.sh            # N = 1000
#   N=2000 bench/instructions.sh
#   TALLY_BIN=/path/to/tally bench/instructions.sh   # another build (e.g. before a change)
#   KEEP=/tmp/profiles bench/instructions.sh        # keep the callgrind files (callgrind_annotate)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
BASE=200
if ! command -v valgrind >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "installing Debian's valgrind" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null \
        || { $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null; }
fi
if [ -z "${TALLY_BIN:-}" ]; then
    cargo build --release --locked -p tally 2>&1 | tail -n 1 >&2
    TALLY_BIN=target/release/tally
fi
WORK=$(mktemp -d /tmp/tally-instructions.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# instructions KIND COUNT: the server's instruction count for COUNT requests of KIND.
instructions() {
    local kind=$1 count=$2 dir="$WORK/$1-$2"
    mkdir -p "$dir"
    {
        printf '[server]\nlisten = "127.0.0.1:0"\n[database]\npath = "%s/tally.db"\n' "$dir"
        cat bench/plans.toml
    } > "$dir/tally.toml"
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "$TALLY_BIN" serve --config "$dir/tally.toml" > "$dir/stdout" 2> "$dir/stderr" &
    local server=$! addr=""
    for _ in $(seq 1 600); do
        addr=$(sed -n 's#^listening on http://##p' "$dir/stdout")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "tally did not start under valgrind:" >&2; cat "$dir/stderr" >&2; exit 1; }
    python3 - "$addr" "$kind" "$count" <<'PY'
import http.client, json, sys
addr, kind, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
host, port = addr.rsplit(":", 1)
connection = http.client.HTTPConnection(host, int(port), timeout=120)
path = {"check": "/v1/check", "track": "/v1/track"}[kind]
# Checks are of known users, as in production: each is tracked once first (in both runs, so
# those tracks cancel out of the difference).
if kind == "check":
    for index in range(100):
        body = json.dumps({"user_id": f"user-{index}", "metric": "prompts"})
        connection.request("POST", "/v1/track", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
for index in range(count):
    body = json.dumps({"user_id": f"user-{index % 100}", "metric": "prompts"})
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        sys.exit(f"{kind} {index}: HTTP {answer.status}")
PY
    # The count up to here (start and requests), dumped before the shutdown, whose final
    # checkpoint's work depends on how long the WAL grew, not on the requests.
    callgrind_control --dump=measured "$server" > /dev/null 2>&1
    kill -TERM "$server"
    wait "$server" || true
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$dir/callgrind.out.1" "$KEEP/$kind-$count.callgrind.out"; fi
    sed -n 's/^summary: \([0-9]*\)$/\1/p' "$dir/callgrind.out.1"
}

echo "| request | instructions per request (server, all threads) |"
echo "|---|---:|"
for kind in check track; do
    small=$(instructions "$kind" "$BASE")
    large=$(instructions "$kind" "$((BASE + N))")
    echo "| $kind | $(( (large - small) / N )) |"
    echo "raw: $kind $BASE requests: $small instructions; $((BASE + N)) requests: $large" >&2
done
