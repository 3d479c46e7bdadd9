#!/usr/bin/env bash
# The TypeScript client (clients/typescript) and the Next.js example (examples/nextjs):
#   1. Node.js and npm (Debian's nodejs and npm if missing; the client needs Node 18+);
#   2. npm ci in both (versions pinned by their package-lock.json files);
#   3. the types generated from docs/openapi.yaml (openapi-typescript) must match the
#      committed src/schema.ts: a spec change without regenerating fails here;
#   4. tsc builds the client; `node --test` runs its tests against the real binary (started
#      by the tests on port 0);
#   5. the example's route handlers typecheck against the `next` package.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    echo "installing Debian's nodejs and npm with apt-get" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
fi
cargo build --locked --quiet
CLIENT=clients/typescript
npm ci --prefix "$CLIENT" --no-audit --no-fund --silent
GENERATED=$(mktemp --suffix=.ts)
trap 'rm -f "$GENERATED"' EXIT
(cd "$CLIENT" && npx --no-install openapi-typescript ../../docs/openapi.yaml --output "$GENERATED" >/dev/null)
if ! diff -q "$CLIENT/src/schema.ts" "$GENERATED" >/dev/null; then
    echo "clients/typescript/src/schema.ts is out of date with docs/openapi.yaml:" >&2
    echo "run (cd clients/typescript && npm run generate) and commit the result" >&2
    diff "$CLIENT/src/schema.ts" "$GENERATED" | head -20 >&2
    exit 1
fi
(cd "$CLIENT" && npx --no-install tsc -p tsconfig.json)
(cd "$CLIENT" && TALLY_BIN="$PWD/../../target/debug/tally" node --test test/*.test.mjs)
npm ci --prefix examples/nextjs --no-audit --no-fund --silent
(cd examples/nextjs && npx --no-install tsc --noEmit -p tsconfig.json)
echo "typescript: schema in step, client tests passed, the Next.js example typechecks"
