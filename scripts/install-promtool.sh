#!/usr/bin/env bash
# Installs promtool, which tests/it/telemetry.rs runs on `GET /metrics` (`promtool check
# metrics`): Debian's `prometheus` package. Does nothing when /usr/bin/promtool is there;
# otherwise installs it with apt-get, and fails loudly when it cannot. Only the tool is used:
# the package's service is not started by this script and no test depends on it.
set -euo pipefail

PROMTOOL=/usr/bin/promtool

if [[ -x "$PROMTOOL" ]]; then
    exit 0
fi

fail() {
    echo "install-promtool.sh: $*" >&2
    echo "install-promtool.sh: the metrics test needs $PROMTOOL; install the Debian package prometheus by hand." >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "apt-get is not available on this machine"

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || fail "not root and sudo is not available"
    sudo=(sudo)
fi

echo "install-promtool.sh: installing prometheus (for promtool) with apt-get" >&2
# Another install on the machine may hold dpkg's lock for a while: wait for it, do not fail.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
"${apt[@]}" update -q || fail "apt-get update failed"
"${apt[@]}" install -y -q --no-install-recommends prometheus || fail "apt-get install prometheus failed"

[[ -x "$PROMTOOL" ]] || fail "$PROMTOOL is still missing after the install"
echo "install-promtool.sh: $("$PROMTOOL" --version 2>&1 | head -n 1)" >&2
