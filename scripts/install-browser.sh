#!/usr/bin/env bash
# Installs the headless browser the dashboard's browser test drives: Debian's `chromium` and
# `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver). Does nothing when both are
# there; otherwise installs them with apt-get, and fails loudly when it cannot.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    exit 0
fi

fail() {
    echo "install-browser.sh: $*" >&2
    echo "install-browser.sh: the dashboard's browser test needs $CHROMIUM and $CHROMEDRIVER;" \
        "install the Debian packages chromium and chromium-driver by hand." >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "apt-get is not available on this machine"

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || fail "not root and sudo is not available"
    sudo=(sudo)
fi

echo "install-browser.sh: installing chromium and chromium-driver with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || fail "apt-get update failed"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver \
    || fail "apt-get install chromium chromium-driver failed"

[[ -x "$CHROMIUM" ]] || fail "$CHROMIUM is still missing after the install"
[[ -x "$CHROMEDRIVER" ]] || fail "$CHROMEDRIVER is still missing after the install"
echo "install-browser.sh: $("$CHROMIUM" --version 2>/dev/null || echo chromium), $("$CHROMEDRIVER" --version 2>/dev/null || echo chromedriver)" >&2
