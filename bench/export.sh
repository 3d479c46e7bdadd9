#!/usr/bin/env bash
# The user export's memory: seeds N events for one user into a fresh SQLite database, starts
# a release build of Tally on it, and exports that user (JSON, then NDJSON) with curl,
# printing the server's anonymous resident memory (RssAnon: what it allocated) before and at
# its highest while the export runs (sampled every 20 ms), the export's size and time.
# RssFile is printed too: SQLite reads through a 1 GiB mmap, so the database's pages count as
# resident while mapped, but they are the page cache, shared and reclaimable, not the
# server's allocation. Usage: bench/export.sh [N] (default 1,000,000).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/serve.sh
source scripts/lib/serve.sh
N=${1:-1000000}
cargo build --release --locked --quiet
WORK=$(mktemp -d /tmp/tally-export.XXXXXX)
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/tally.toml" <<TOML
[server]
listen = "127.0.0.1:0"
[database]
path = "$WORK/tally.db"
[auth]
admin_keys = ["admin-key-export-bench"]
service_keys = ["service-key-export-bench"]
TOML
target/release/tally migrate --config "$WORK/tally.toml" > /dev/null
python3 - "$WORK/tally.db" "$N" <<'PY'
import sqlite3, sys, time, uuid
db = sqlite3.connect(sys.argv[1])
n = int(sys.argv[2])
now = int(time.time() * 1000)
db.execute("INSERT INTO users (uuid, user_id, plan, created_at, updated_at) VALUES (?, 'exporter', 'trial', ?, ?)",
           (str(uuid.uuid4()), now, now))
db.executemany(
    "INSERT INTO events (id, type, at, user_id, data) VALUES (?, 'limit_exceeded', ?, 'exporter', ?)",
    ((f"seed-{i}", now - n + i,
      '{"metric":"prompts","period":"2026-12","plan":"trial","used":30,"limit":30,"amount":1,"refusals":1}')
     for i in range(n)))
db.commit()
PY
start_tally "$WORK/tally.toml" "$WORK" target/release/tally
kib() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$SERVER/status"; }
echo "events: $N; server before any export: RssAnon $(kib RssAnon) KiB, RssFile $(kib RssFile) KiB"
for accept in application/json application/x-ndjson; do
    before=$(kib RssAnon)
    curl -s -o "$WORK/export" -w '%{size_download} %{time_total}\n' -H "Authorization: Bearer admin-key-export-bench" \
        -H "Accept: $accept" "http://$ADDR/v1/admin/users/exporter/export" > "$WORK/curl" &
    CURL=$!
    peak=$before
    while kill -0 "$CURL" 2>/dev/null; do
        now=$(kib RssAnon)
        [ "$now" -gt "$peak" ] && peak=$now
        sleep 0.02
    done
    wait "$CURL"
    stats=$(awk '{ printf "%d bytes in %.1f s", $1, $2 }' "$WORK/curl")
    echo "$accept: $stats; RssAnon before $before KiB, highest during $peak KiB (+$(( (peak - before) / 1024 )) MiB); RssFile after $(kib RssFile) KiB"
done
