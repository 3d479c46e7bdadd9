#!/usr/bin/env bash
# Installs what the OpenFeature test runs (tests/it/ofrep.rs): Node.js and npm (Debian's
# nodejs and npm packages, if missing), then the real OpenFeature server SDK and OFREP
# provider from npm into target/node-ofrep (kept between runs):
#   @openfeature/server-sdk 1.23.0, @openfeature/ofrep-provider 0.1.3 and its peer
#   @openfeature/ofrep-core 0.1.4
# The test fails with a pointer here when they are missing; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=target/node-ofrep
PACKAGES='@openfeature/server-sdk@1.23.0 @openfeature/ofrep-provider@0.1.3 @openfeature/ofrep-core@0.1.4'
STAMP="$PREFIX/.packages"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    command -v apt-get >/dev/null 2>&1 || { echo "node and npm are missing and apt-get is not available" >&2; exit 1; }
    echo "installing Debian's nodejs and npm with apt-get" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
fi
if [ -d "$PREFIX/node_modules/@openfeature/ofrep-provider" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$PACKAGES" ]; then
    exit 0
fi
mkdir -p "$PREFIX"
# shellcheck disable=SC2086 # the packages are separate words on purpose
npm install --prefix "$PREFIX" --no-audit --no-fund --silent $PACKAGES
echo "$PACKAGES" > "$STAMP"
