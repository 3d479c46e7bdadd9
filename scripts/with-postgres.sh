#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server, so the integration suite can run against
# the PostgreSQL backend on any Debian machine (CI starts from a bare Debian 12, as root, with
# only the package registries reachable) without touching a real cluster:
#
#   scripts/with-postgres.sh CMD [ARGS...]
#
# If TALLY_TEST_DATABASE_URL is already set, CMD runs against that database and nothing is
# installed or started (a developer's own server, or a CI service container). Otherwise:
#   1. Debian's `postgresql` is installed if no server binaries are found; the packaged "main"
#      cluster is not created and no service is started: tests must not depend on, or leave
#      behind, a system-wide server.
#   2. A new cluster is created in a temp directory by the `postgres` system user (initdb and
#      the server refuse to run as root), listening only on 127.0.0.1 on a free port, its unix
#      socket inside the temp directory (mode 0700, so only its owner and root can reach it).
#   3. CMD runs with these exported:
#        TALLY_TEST_DATABASE_URL   postgres://tally:tally@127.0.0.1:PORT/tally_test
#                                  (role `tally` owns the database and may CREATEDB)
#        TALLY_TEST_PG_ADMIN_URL   postgres://postgres:RANDOM@127.0.0.1:PORT/postgres
#                                  (superuser, for tests that create one database per test)
#        TALLY_TEST_PG_CTL         a pg_ctl for this cluster, runnable as root, so restart tests
#                                  can `"$TALLY_TEST_PG_CTL" restart -m immediate`, `stop`, `start`
#   4. On every exit path (CMD's end, a failed step, Ctrl-C, SIGTERM) the server is stopped and
#      the temp directory deleted; the script exits with CMD's status.
# The server keeps fsync and synchronous_commit on: what Tally's tests check is durability, and
# a server that acknowledges commits it has not flushed would let them pass wrongly.
set -euo pipefail

if [[ "$#" -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

if [[ -n "${TALLY_TEST_DATABASE_URL:-}" ]]; then
    exec "$@"
fi

say() { echo "with-postgres.sh: $*" >&2; }
fail() {
    say "$*"
    exit 1
}

PG_USER=postgres
TALLY_ROLE=tally
TALLY_PASSWORD=tally
TALLY_DB=tally_test
# Several Tally nodes with a pool of up to 16 connections each, plus test helpers and one
# database per test: the default of 100 would be the first thing a multi-node test runs into.
MAX_CONNECTIONS=300

# The newest installed server's bin directory (Debian installs each major version side by side).
find_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" && -x "$dir/psql" \
            && -x "$dir/pg_isready" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
    sudo=(sudo)
fi

if ! BINDIR="$(find_bindir)"; then
    command -v apt-get >/dev/null 2>&1 || fail "no PostgreSQL server found and apt-get is not available"
    if [[ "${#sudo[@]}" -gt 0 ]] && ! command -v sudo >/dev/null 2>&1; then
        fail "no PostgreSQL server found; not root and sudo is not available"
    fi
    say "installing Debian's postgresql with apt-get"
    # postgresql-common reads this drop-in when the server package is configured: without it,
    # the install creates a "main" cluster in /var/lib/postgresql that nothing here uses.
    if [[ ! -e /etc/postgresql-common/createcluster.d/tally-no-main-cluster.conf ]]; then
        "${sudo[@]}" mkdir -p /etc/postgresql-common/createcluster.d
        echo 'create_main_cluster = false' \
            | "${sudo[@]}" tee /etc/postgresql-common/createcluster.d/tally-no-main-cluster.conf >/dev/null
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || fail "apt-get update failed"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql \
        || fail "apt-get install postgresql failed"
    BINDIR="$(find_bindir)" || fail "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin after the install"
fi

# As root, the server runs as the `postgres` system user (the package creates it; created here
# if absent); anyone else runs it as themselves.
as_pg=()
if [[ "$(id -u)" -eq 0 ]]; then
    if ! getent passwd "$PG_USER" >/dev/null; then
        say "creating the system user $PG_USER"
        useradd --system --user-group --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin "$PG_USER"
    fi
    as_pg=(runuser -u "$PG_USER" --)
fi

TMP=""
STARTED=""

# Stops the server if it runs and deletes its directory. Runs on every exit; keeps the exit
# status it was called with.
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ -n "$STARTED" && -f "$TMP/data/postmaster.pid" ]]; then
            (cd "$TMP" && "${as_pg[@]}" "$BINDIR/pg_ctl" -D "$TMP/data" stop -m fast -w -t 30 >/dev/null 2>&1) \
                || (cd "$TMP" && "${as_pg[@]}" "$BINDIR/pg_ctl" -D "$TMP/data" stop -m immediate -w -t 10 >/dev/null 2>&1) \
                || true
            # A postmaster that ignored both requests must not outlive its deleted directory.
            if [[ -f "$TMP/data/postmaster.pid" ]]; then
                local pid
                pid="$(head -n 1 "$TMP/data/postmaster.pid" 2>/dev/null || true)"
                if [[ "$pid" =~ ^[0-9]+$ ]]; then
                    kill -KILL "$pid" 2>/dev/null || true
                fi
            fi
        fi
        rm -rf -- "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tally-pg.XXXXXX")"
if [[ "${#as_pg[@]}" -gt 0 ]]; then
    chown "$PG_USER:" "$TMP"
    # TMPDIR may sit under a directory the postgres user cannot enter (e.g. /root).
    if ! "${as_pg[@]}" test -w "$TMP"; then
        rm -rf -- "$TMP"
        TMP="$(mktemp -d /tmp/tally-pg.XXXXXX)"
        chown "$PG_USER:" "$TMP"
    fi
fi
chmod 700 "$TMP"

# Runs a server binary as the server's user, from a directory that user can read.
pg() {
    (cd "$TMP" && "${as_pg[@]}" "$@")
}

ADMIN_PASSWORD="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
(umask 077 && printf '%s\n' "$ADMIN_PASSWORD" >"$TMP/pwfile")
[[ "${#as_pg[@]}" -eq 0 ]] || chown "$PG_USER:" "$TMP/pwfile"

# --no-locale: C collation, so text sorts bytewise as SQLite's BINARY does. --no-sync: a crash
# of this machine mid-test loses the cluster anyway; the server itself still fsyncs.
# Local (socket) connections are trusted: the socket's directory is reachable only by its owner
# and root. TCP connections need a password.
if ! pg "$BINDIR/initdb" -D "$TMP/data" -U "$PG_USER" --pwfile="$TMP/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-locale --no-sync \
    >"$TMP/initdb.log" 2>&1; then
    cat "$TMP/initdb.log" >&2
    fail "initdb failed"
fi
rm -f -- "$TMP/pwfile"

# A port is free when no TCP socket (IPv4 or IPv6, any state) uses it as its local port. Ports
# come from below Linux's ephemeral range (32768-60999), where outgoing connections take theirs.
port_in_use() {
    local hex
    hex="$(printf '%04X' "$1")"
    awk -v hex="$hex" 'FNR > 1 { split($2, a, ":"); if (a[2] == hex) { found = 1 } } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

PORT=""
echo "include = 'tally_test.conf'" >>"$TMP/data/postgresql.conf"
for attempt in 1 2 3 4 5 6 7 8; do
    candidate=$((20000 + RANDOM % 12000))
    if port_in_use "$candidate"; then
        continue
    fi
    # In a file of its own so a retry can rewrite the port; in the data directory so that
    # a test restarting the server through TALLY_TEST_PG_CTL gets the same settings back.
    cat >"$TMP/data/tally_test.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $candidate
unix_socket_directories = '$TMP'
unix_socket_permissions = 0700
max_connections = $MAX_CONNECTIONS
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
password_encryption = 'scram-sha-256'
EOF
    [[ "${#as_pg[@]}" -eq 0 ]] || chown "$PG_USER:" "$TMP/data/tally_test.conf"
    STARTED=1
    rm -f -- "$TMP/server.log"
    if pg "$BINDIR/pg_ctl" -D "$TMP/data" -l "$TMP/server.log" start -w -t 60 >/dev/null 2>&1; then
        PORT="$candidate"
        break
    fi
    # Another process took the port between the check and the bind: try another one. Any
    # other failure will not go away by retrying.
    if ! grep -q 'could not bind\|Address already in use' "$TMP/server.log" 2>/dev/null; then
        cat "$TMP/server.log" >&2 || true
        fail "the server did not start"
    fi
    say "port $candidate was taken (attempt $attempt), trying another"
done
[[ -n "$PORT" ]] || fail "found no free port to start the server on"

# pg_ctl -w waits for the postmaster; this also proves a TCP client gets in.
ready=""
for _ in $(seq 1 100); do
    if "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PORT" -d postgres; then
        ready=1
        break
    fi
    sleep 0.1
done
if [[ -z "$ready" ]]; then
    cat "$TMP/server.log" >&2 || true
    fail "the server on 127.0.0.1:$PORT did not become ready"
fi

# Over the unix socket as the superuser: the only connection that needs no password yet.
pg "$BINDIR/psql" -X -q -h "$TMP" -p "$PORT" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 >/dev/null <<EOF
CREATE ROLE $TALLY_ROLE LOGIN CREATEDB PASSWORD '$TALLY_PASSWORD';
CREATE DATABASE $TALLY_DB OWNER $TALLY_ROLE;
EOF

# Tests run as root and pg_ctl refuses root, so they get a wrapper bound to this cluster.
cat >"$TMP/pg_ctl" <<EOF
#!/bin/sh
cd '$TMP' || exit 1
exec ${as_pg[*]} '$BINDIR/pg_ctl' -D '$TMP/data' -l '$TMP/server.log' "\$@"
EOF
chmod 755 "$TMP/pg_ctl"

export TALLY_TEST_DATABASE_URL="postgres://$TALLY_ROLE:$TALLY_PASSWORD@127.0.0.1:$PORT/$TALLY_DB"
export TALLY_TEST_PG_ADMIN_URL="postgres://$PG_USER:$ADMIN_PASSWORD@127.0.0.1:$PORT/postgres"
export TALLY_TEST_PG_CTL="$TMP/pg_ctl"
say "PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (cluster in $TMP)"

# Not exec: the cleanup trap must run after CMD.
status=0
"$@" || status=$?
exit "$status"
