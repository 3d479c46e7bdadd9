#!/usr/bin/env bash
# Tally's benchmark: one command, one table. Builds release, then measures with the same load
# generator (bench/src/bin/loadgen.rs) and the same connection count:
#   the HTTP ceiling (a constant-body server on hyper, Tally's HTTP layer, and this once the
#   same on oxhttp, the layer Tally left), Tally track (synchronous full and
#   normal), check and a mixed load, Redis with a Lua check-and-increment (appendfsync always
#   and no persistence), PostgreSQL's conditional upsert (synchronous_commit on and off),
#   latency at half of Tally's peak (open loop), the connection sweep, and correctness (the
#   stored counters add up to the 200s). Missing Redis/PostgreSQL are installed from Debian.
#
#   bench/run.sh                 # the main table (about 3 minutes)
#   bench/run.sh http            # the HTTP layer's figures only: ceilings, durable track,
#                                # check, open-loop latency at half the durable peak
#   bench/run.sh scale           # 1,000,000 users x 3 metrics x 12 months (seeds first; long)
#   bench/run.sh postgres        # PostgreSQL: its own conditional upsert (synchronous_commit
#                                # on), then Tally with 1 and with 2 nodes on that server,
#                                # durable track
#   bench/run.sh batch           # durable tracks one per request, then in batches of 100
#                                # (POST /v1/track/batch), same connections: events/s and ratio
#   bench/run.sh webhooks        # webhook delivery (issue 13), [webhook_delivery] defaults:
#                                # EVENTS plan changes (20,000) delivered to a receiver that
#                                # answers 200 at once (deliveries/s, backlog drain, latency),
#                                # then again beside a receiver that never answers; ROUNDS=3
#                                # repeats both, interleaved; RATE=1000 emits on a schedule
#   DURATION=5 CONNECTIONS=64 bench/run.sh
#   TALLY_BIN=/path/to/tally bench/run.sh http   # another build of Tally (e.g. before a change)
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-main}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
WORK=$(mktemp -d /tmp/tally-bench.XXXXXX)
RESULTS="$WORK/results.jsonl"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

need_package() { # need_package COMMAND PACKAGE
    if ! command -v "$1" >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/"$1" >/dev/null 2>&1; then
        log "installing $2 (for $1)"
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null \
            || { $sudo apt-get update >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null; }
    fi
}

log "building release binaries"
cargo build --release --locked -p tally -p tally-bench 2>&1 | tail -n 1 >&2
BIN=target/release

# A free loopback port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until something listens on port $1.
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.05
    done
    log "nothing listens on port $1"; return 1
}

peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# Starts Tally with synchronous=$1 on a fresh database in $2; sets TALLY_PID and TALLY_ADDR.
start_tally() {
    local sync=$1 dir=$2
    mkdir -p "$dir"
    cat > "$dir/tally.toml" <<EOF
[server]
listen = "127.0.0.1:0"
max_connections = 1024
[database]
path = "$dir/tally.db"
synchronous = "$sync"
EOF
    cat bench/plans.toml >> "$dir/tally.toml"
    # The access log is off for the measurement (RUST_LOG=warn); see docs/PERFORMANCE.md.
    RUST_LOG=warn "${TALLY_BIN:-$BIN/tally}" serve --config "$dir/tally.toml" > "$dir/stdout" 2> "$dir/stderr" &
    TALLY_PID=$!
    PIDS+=("$TALLY_PID")
    for _ in $(seq 1 200); do
        TALLY_ADDR=$(sed -n 's#^listening on http://##p' "$dir/stdout")
        [ -n "$TALLY_ADDR" ] && return 0
        sleep 0.02
    done
    log "tally did not start: $(cat "$dir/stderr")"; return 1
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# loadgen LABEL ARGS... : runs the generator, appends its JSON line (plus extra fields).
loadgen() {
    local label=$1; shift
    "$BIN/loadgen" --label "$label" "$@" | tee -a "$RESULTS" >&2
}

add_field() { # add_field LABEL KEY VALUE : sets a field on the last line with that label
    python3 - "$RESULTS" "$1" "$2" "$3" <<'EOF'
import json, sys
path, label, key, value = sys.argv[1:]
lines = [json.loads(line) for line in open(path)]
for line in reversed(lines):
    if line["label"] == label:
        line[key] = json.loads(value)
        break
open(path, "w").write("".join(json.dumps(line) + "\n" for line in lines))
EOF
}

stored_sum() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select coalesce(sum(value),0) from usage_counters').fetchone()[0])" "$1"; }

run_main() {
    need_package redis-server redis-server
    need_package postgres postgresql
    log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"

    # 1. The HTTP ceilings.
    run_ceilings

    # 2. Tally: track (full, normal), check, mixed; correctness after each track run.
    for sync in full normal; do
        start_tally "$sync" "$WORK/tally-$sync"
        loadgen "track-$sync" --target http --op track --addr "$TALLY_ADDR" --connections "$CONNECTIONS" --duration "$DURATION"
        add_field "track-$sync" peak_rss_kib "$(peak_rss_kib "$TALLY_PID")"
        if [ "$sync" = full ]; then
            loadgen check --target http --op check --addr "$TALLY_ADDR" --connections "$CONNECTIONS" --duration "$DURATION"
            loadgen mixed --target http --op mixed --addr "$TALLY_ADDR" --connections "$CONNECTIONS" --duration "$DURATION"
        fi
        stop "$TALLY_PID"
        add_field "track-$sync" stored_sum "$(stored_sum "$WORK/tally-$sync/tally.db")"
    done

    # 3. Latency at half of the durable peak, open loop (latency from the intended send time).
    local peak; peak=$(python3 -c "import json,sys; print(next(json.loads(l)['throughput'] for l in open(sys.argv[1]) if json.loads(l)['label']=='track-full'))" "$RESULTS")
    start_tally full "$WORK/tally-half"
    loadgen track-full-half-rate --target http --op track --addr "$TALLY_ADDR" --connections "$CONNECTIONS" --duration "$DURATION" --rate "$(python3 -c "print(round($peak/2))")"
    stop "$TALLY_PID"

    # 4. Redis with the Lua script: appendfsync always, then no persistence.
    for mode in always none; do
        port=$(free_port); mkdir -p "$WORK/redis-$mode"
        if [ "$mode" = always ]; then persistence=(--appendonly yes --appendfsync always --save ""); else persistence=(--appendonly no --save ""); fi
        redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis-$mode" --daemonize no "${persistence[@]}" > "$WORK/redis-$mode/log" 2>&1 &
        local redis=$!; PIDS+=("$redis"); wait_port "$port"
        loadgen "redis-$mode" --target redis --addr "127.0.0.1:$port" --connections "$CONNECTIONS" --duration "$DURATION"
        stop "$redis"
    done

    # 5. PostgreSQL's upsert: synchronous_commit on, then off.
    local pgbin; pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    local pgdata="$WORK/pg"; mkdir -p "$pgdata"
    local owner=""; [ "$(id -u)" = 0 ] && { owner=postgres; chown postgres "$WORK" "$pgdata"; }
    run_pg() { if [ -n "$owner" ]; then su -s /bin/sh postgres -c "$*"; else sh -c "$*"; fi; }
    run_pg "$pgbin/initdb -D $pgdata -U postgres -A trust" > /dev/null
    port=$(free_port)
    for commit in on off; do
        run_pg "$pgbin/pg_ctl -D $pgdata -o '-p $port -k $pgdata -c listen_addresses=127.0.0.1 -c synchronous_commit=$commit -c max_connections=600 -c fsync=on' -l $pgdata/log -w start" > /dev/null
        "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "DROP TABLE IF EXISTS usage_counters; CREATE TABLE usage_counters (user_id text, period text, metric text, value bigint, PRIMARY KEY (user_id, period, metric))" > /dev/null
        loadgen "postgres-sync-$commit" --target postgres --addr "127.0.0.1:$port" --connections "$CONNECTIONS" --duration "$DURATION"
        run_pg "$pgbin/pg_ctl -D $pgdata -m fast -w stop" > /dev/null
    done

    # 6. Cost growth: durable track at 16, 64, 256 and 512 connections, with peak RSS.
    for connections in 16 64 256 512; do
        start_tally full "$WORK/tally-c$connections"
        loadgen "sweep-$connections" --target http --op track --addr "$TALLY_ADDR" --connections "$connections" --duration "$DURATION"
        add_field "sweep-$connections" peak_rss_kib "$(peak_rss_kib "$TALLY_PID")"
        stop "$TALLY_PID"
    done

    # 7. Binary size (stripped) and start-to-ready on an existing database.
    strip -o "$WORK/tally.stripped" "$BIN/tally"
    local size; size=$(stat -c %s "$WORK/tally.stripped")
    local ready_ms; ready_ms=$(python3 bench/serve.py "$BIN/tally" "$WORK/tally-full/tally.toml")
    echo "{\"label\": \"binary\", \"stripped_bytes\": $size, \"start_to_ready_ms\": $ready_ms}" >> "$RESULTS"
    python3 bench/report.py "$RESULTS"
}

# The HTTP ceiling on hyper (label "ceiling"), then on oxhttp ("ceiling-oxhttp").
run_ceilings() {
    local port server label
    for server in ceiling-hyper ceiling; do
        label=ceiling; [ "$server" = ceiling ] && label=ceiling-oxhttp
        port=$(free_port)
        "$BIN/$server" "127.0.0.1:$port" > /dev/null & local ceiling=$!; PIDS+=("$ceiling")
        wait_port "$port"
        loadgen "$label" --target http --op ceiling --addr "127.0.0.1:$port" --connections "$CONNECTIONS" --duration "$DURATION"
        add_field "$label" peak_rss_kib "$(peak_rss_kib "$ceiling")"
        stop "$ceiling"
    done
}

# What a change to the HTTP layer is judged by (issue 10): the ceilings, durable track,
# check, and open-loop latency at half the durable peak, one run each.
run_http() {
    log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
    log "tally: ${TALLY_BIN:-$BIN/tally}"
    run_ceilings
    start_tally full "$WORK/tally-full"
    loadgen track-full --target http --op track --addr "$TALLY_ADDR" --connections "$CONNECTIONS" --duration "$DURATION"
    add_field track-full peak_rss_kib "$(peak_rss_kib "$TALLY_PID")"
    loadgen check --target http --op check --addr "$TALLY_ADDR" --connections "$CONNECTIONS" --duration "$DURATION"
    stop "$TALLY_PID"
    add_field track-full stored_sum "$(stored_sum "$WORK/tally-full/tally.db")"
    local peak; peak=$(python3 -c "import json,sys; print(next(json.loads(l)['throughput'] for l in open(sys.argv[1]) if json.loads(l)['label']=='track-full'))" "$RESULTS")
    start_tally full "$WORK/tally-half"
    loadgen track-full-half-rate --target http --op track --addr "$TALLY_ADDR" --connections "$CONNECTIONS" --duration "$DURATION" --rate "$(python3 -c "print(round($peak/2))")"
    stop "$TALLY_PID"
    python3 bench/report.py "$RESULTS"
}

# Issue 11's comparison, in one run on one PostgreSQL server (synchronous_commit on, fsync on):
# a client doing Tally's conditional upsert directly, one statement and one commit per request;
# then Tally on PostgreSQL with one node, then with two nodes sharing the connections.
run_postgres() {
    need_package postgres postgresql
    log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
    local pgbin; pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    local pgdata="$WORK/pg"; mkdir -p "$pgdata"
    local owner=""; [ "$(id -u)" = 0 ] && { owner=postgres; chown postgres "$WORK" "$pgdata"; }
    run_pg() { if [ -n "$owner" ]; then su -s /bin/sh postgres -c "$*"; else sh -c "$*"; fi; }
    run_pg "$pgbin/initdb -D $pgdata -U postgres -A trust" > /dev/null
    local port; port=$(free_port)
    run_pg "$pgbin/pg_ctl -D $pgdata -o '-p $port -k $pgdata -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c max_connections=600 -c fsync=on' -l $pgdata/log -w start" > /dev/null
    local psql=("$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -q)
    "${psql[@]}" -c "CREATE TABLE usage_counters (user_id text, period text, metric text, value bigint, PRIMARY KEY (user_id, period, metric))"
    loadgen postgres-direct --target postgres --addr "127.0.0.1:$port" --connections "$CONNECTIONS" --duration "$DURATION"
    local nodes addrs dir pids
    for nodes in 1 2; do
        # Each run starts from a clean checkpoint: the previous run's dirty pages are not
        # flushed on this one's time.
        "${psql[@]}" -c "CHECKPOINT"
        "${psql[@]}" -c "CREATE DATABASE tally_nodes_$nodes"
        addrs=""; pids=()
        for node in $(seq 1 "$nodes"); do
            dir="$WORK/tally-pg-$nodes-$node"; mkdir -p "$dir"
            printf '[server]\nlisten = "127.0.0.1:0"\nmax_connections = 1024\n[database]\nurl = "postgres://postgres@127.0.0.1:%s/tally_nodes_%s"\n' "$port" "$nodes" > "$dir/tally.toml"
            cat bench/plans.toml >> "$dir/tally.toml"
            RUST_LOG=warn "${TALLY_BIN:-$BIN/tally}" serve --config "$dir/tally.toml" > "$dir/stdout" 2> "$dir/stderr" &
            pids+=($!); PIDS+=($!)
            local addr=""
            for _ in $(seq 1 200); do addr=$(sed -n 's#^listening on http://##p' "$dir/stdout"); [ -n "$addr" ] && break; sleep 0.05; done
            [ -n "$addr" ] || { log "tally did not start: $(cat "$dir/stderr")"; return 1; }
            addrs="${addrs:+$addrs,}$addr"
        done
        loadgen "tally-postgres-$nodes-node" --target http --op track --addr "$addrs" --connections "$CONNECTIONS" --duration "$DURATION"
        for pid in "${pids[@]}"; do stop "$pid"; done
        add_field "tally-postgres-$nodes-node" stored_sum "$("${psql[@]}" -d "tally_nodes_$nodes" -tAc 'SELECT coalesce(sum(value), 0) FROM usage_counters')"
    done
    run_pg "$pgbin/pg_ctl -D $pgdata -m fast -w stop" > /dev/null
    python3 bench/report.py "$RESULTS"
}

# Issue 13: webhook delivery with the defaults of [webhook_delivery] (max_in_flight = 4,
# timeout_ms = 5000), synchronous = full, a fresh database per run. `healthy`: one receiver
# answering 200 at once. `with-hanging`: that receiver and, listed first, one that accepts
# and never answers; the healthy one's figures should not move. ROUNDS runs of each,
# interleaved, so a change in the machine's load falls on both.
run_webhooks() {
    local events=${EVENTS:-20000} emitters=${EMITTERS:-16} rounds=${ROUNDS:-1}
    [ -z "${RATE:-}" ] || log "emitting at $RATE events/s"
    log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
    log "tally: ${TALLY_BIN:-$BIN/tally}"
    local round scenario
    for round in $(seq 1 "$rounds"); do
        for scenario in ${SCENARIOS:-healthy with-hanging}; do
            webhook_scenario "$scenario" "$round" "$events" "$emitters"
        done
    done
    python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
keys = ["deliveries_per_s", "drain_per_s", "drain_after_last_emit_s", "latency_p50_ms", "latency_p99_ms", "emitted_per_s"]
print(f"{'run':<24}{'round':>6}{'deliv/s':>9}{'drain/s':>9}{'drain s':>8}{'p50 ms':>9}{'p99 ms':>9}{'emit/s':>8}  load")
for row in rows:
    print(f"{row['label']:<24}{row['round']:>6}{row['deliveries_per_s']:>9.0f}{row['drain_per_s']:>9.0f}"
          f"{row['drain_after_last_emit_s']:>8.2f}{row['latency_p50_ms']:>9.1f}{row['latency_p99_ms']:>9.1f}"
          f"{row['emitted_per_s']:>8.0f}  {row['load']}")
for label in dict.fromkeys(row["label"] for row in rows):
    mine = [row for row in rows if row["label"] == label]
    medians = "  ".join(f"{key} {statistics.median(row[key] for row in mine):.2f}" for key in keys)
    print(f"median of {len(mine)} {label}: {medians}")
EOF
}

# One scenario on a fresh Tally and fresh receivers; appends its JSON line.
webhook_scenario() {
    local scenario=$1 round=$2 events=$3 emitters=$4
    local dir="$WORK/webhooks-$scenario-$round" label="webhooks-$scenario" healthy hanging url pid
    mkdir -p "$dir"
    RECEIVER_PIDS=()
    start_receiver "$dir/healthy"; healthy=$RECEIVER_ADDR
    cat > "$dir/tally.toml" <<EOF
[server]
listen = "127.0.0.1:0"
max_connections = 1024
[database]
path = "$dir/tally.db"
synchronous = "full"
EOF
    if [ "$scenario" = with-hanging ]; then
        start_receiver "$dir/hanging" --hang; hanging=$RECEIVER_ADDR
        printf '[[webhooks]]\nurl = "http://%s/hooks/hanging"\nsecret = "bench-secret-hanging"\nevents = ["plan_changed"]\n' "$hanging" >> "$dir/tally.toml"
    fi
    url="http://$healthy/hooks/healthy"
    printf '[[webhooks]]\nurl = "%s"\nsecret = "bench-secret-healthy"\nevents = ["plan_changed"]\n' "$url" >> "$dir/tally.toml"
    cat bench/plans.toml >> "$dir/tally.toml"
    local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
    RUST_LOG=warn "${TALLY_BIN:-$BIN/tally}" serve --config "$dir/tally.toml" > "$dir/stdout" 2> "$dir/stderr" &
    pid=$!; PIDS+=("$pid")
    local addr=""
    # (The started process may not have opened its stdout yet: a sed that fails is a retry.)
    for _ in $(seq 1 200); do addr=$(sed -n 's#^listening on http://##p' "$dir/stdout" 2>/dev/null || true); [ -n "$addr" ] && break; sleep 0.02; done
    [ -n "$addr" ] || { log "tally did not start: $(cat "$dir/stderr")"; return 1; }
    "$BIN/webhook_bench" --label "$label" --tally "$addr" --receiver "$healthy" --url "$url" \
        --db "$dir/tally.db" --events "$events" --connections "$emitters" ${RATE:+--rate "$RATE"} | tee -a "$RESULTS" >&2
    add_field "$label" round "$round"
    add_field "$label" load "\"$load\""
    add_field "$label" peak_rss_kib "$(peak_rss_kib "$pid")"
    stop "$pid"
    for pid in "${RECEIVER_PIDS[@]}"; do stop "$pid"; done
}

# Starts bin/webhook_receiver (further arguments passed on) with its output in $1.*; sets
# RECEIVER_ADDR to its host:port.
start_receiver() {
    local out=$1; shift
    "$BIN/webhook_receiver" "$@" > "$out.stdout" 2> "$out.stderr" &
    local pid=$!
    PIDS+=("$pid"); RECEIVER_PIDS+=("$pid")
    RECEIVER_ADDR=""
    for _ in $(seq 1 200); do
        RECEIVER_ADDR=$(sed -n 's#^listening on http://##p' "$out.stdout" 2>/dev/null || true)
        [ -n "$RECEIVER_ADDR" ] && return 0
        sleep 0.02
    done
    log "the receiver did not start: $(cat "$out.stderr")"; return 1
}

run_scale() {
    local users=${USERS:-1000000}
    local dir="$WORK/scale"; mkdir -p "$dir"
    log "seeding $users users x 3 metrics x 12 months (this takes minutes)"
    "$BIN/seed" --db "$dir/tally.db" --users "$users" --months 12
    python3 bench/scale.py "$BIN" "$dir" "$users" "$DURATION" "$CONNECTIONS" | tee -a "$RESULTS"
}

# Single tracks against batches of $BATCH_SIZE (default 100), one server, the same connections,
# synchronous = full; compares tracked events per second (every track is recorded: bench
# plans). Wall-clock figures compare only as a ratio from one run (STYLE.md).
run_batch() {
    local size=${BATCH_SIZE:-100}
    start_tally full "$WORK/tally-batch"
    loadgen track-single --target http --op track --addr "$TALLY_ADDR" --connections "$CONNECTIONS" --duration "$DURATION"
    loadgen "track-batch-$size" --target http --op batch --batch-size "$size" --addr "$TALLY_ADDR" --connections "$CONNECTIONS" --duration "$DURATION"
    stop "$TALLY_PID"
    add_field "track-batch-$size" stored_sum "$(stored_sum "$WORK/tally-batch/tally.db")"
    python3 - "$RESULTS" "$size" <<'EOF'
import json, sys
lines = {line["label"]: line for line in map(json.loads, open(sys.argv[1]))}
single, batch = lines["track-single"], lines["track-batch-" + sys.argv[2]]
recorded = single["tracked_ok"] + batch["tracked_ok"]
print(f"single tracks: {single['tracked_per_s']:,.0f} events/s (p99 {single['p99_ms']} ms)")
print(f"batches of {sys.argv[2]}: {batch['tracked_per_s']:,.0f} events/s (p99 {batch['p99_ms']} ms per batch)")
print(f"ratio: {batch['tracked_per_s'] / single['tracked_per_s']:.1f}x; stored {batch['stored_sum']} = answered {recorded}: {batch['stored_sum'] == recorded}")
EOF
}

case "$MODE" in
    main) run_main ;;
    batch) run_batch ;;
    http) run_http ;;
    scale) run_scale ;;
    postgres) run_postgres ;;
    webhooks) run_webhooks ;;
    *) log "usage: bench/run.sh [main|http|scale|postgres|webhooks|batch]"; exit 2 ;;
esac
log "raw results: $RESULTS"
