# Sourced by scripts that need a live server: `start_tally CONFIG WORK` starts the debug build
# with CONFIG (whose [server] listen has port 0), its output in WORK/stdout and WORK/stderr,
# and sets SERVER (its pid) and ADDR (host:port from its first stdout line); it fails with
# the server's stderr when no address comes within 5 seconds. The caller stops SERVER.
start_tally() {
    local config=$1 work=$2 binary=${3:-target/debug/tally}
    # Created before the server starts: the loop below may read it before the child opens it.
    : > "$work/stdout"
    RUST_LOG=warn "$binary" serve --config "$config" > "$work/stdout" 2> "$work/stderr" &
    SERVER=$!
    ADDR=
    for _ in $(seq 1 100); do
        ADDR=$(sed -n 's#^listening on http://##p' "$work/stdout")
        [ -n "$ADDR" ] && return 0
        sleep 0.05
    done
    echo "tally did not start"
    cat "$work/stderr"
    exit 1
}
