#!/usr/bin/env bash
# Runs Tally's whole test suite. This is the command the README gives and CI runs (.ci/run):
#   1. the unit tests and the integration tests that start the real binary (the dashboard's
#      browser test drives headless Chromium, so the browser is installed first if missing),
#      on SQLite (scripts/install-python.sh first installs the webhook verifiers and the
#      structured-field parser the tests run: standardwebhooks, stripe and http-sf, from PyPI
#      into target/; scripts/install-node.sh installs Node.js if missing and the OpenFeature
#      SDK and OFREP provider from npm into target/);
#   2. the integration tests again on PostgreSQL (scripts/with-postgres.sh installs Debian's
#      postgresql if missing and runs a throwaway cluster; tests of what only SQLite has say
#      so and do not apply there);
#   3. a short schemathesis pass against a live server and docs/openapi.yaml (schemathesis is
#      installed from PyPI into target/ if missing; scripts/soak.sh runs the long pass).
# Arguments go to `cargo test` (e.g. a test name filter); the schemathesis pass then is skipped
# only when a filter is given, so the plain command always runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-browser.sh
./scripts/install-python.sh
./scripts/install-node.sh
cargo test --locked "$@"
if [ "$#" -eq 0 ]; then
    # The restart test stops the whole server: it runs alone, on a cluster of its own.
    ./scripts/with-postgres.sh cargo test --locked --test it -- --skip postgres_restart
    ./scripts/with-postgres.sh cargo test --locked --test it postgres_restart
else
    ./scripts/with-postgres.sh cargo test --locked --test it "$@"
fi
if [ "$#" -eq 0 ]; then
    ./scripts/schemathesis.sh 25
fi
