#!/usr/bin/env bash
# Runs Tally's whole test suite. This is the command the README gives and CI runs (.ci/run):
#   1. the unit tests and the integration tests that start the real binary (the dashboard's
#      browser test drives headless Chromium, the metrics test runs `promtool check metrics`,
#      the webhook tests run the standardwebhooks and stripe verifiers and the RateLimit tests
#      the http-sf structured-field parser from PyPI, the OFREP test the OpenFeature SDK and
#      OFREP provider from npm with Node.js, the gateway test Debian's nginx in front of a test
#      application, so all are installed first if missing), on SQLite;
#   2. the integration tests again on PostgreSQL (scripts/with-postgres.sh installs Debian's
#      postgresql if missing and runs a throwaway cluster; tests of what only SQLite has say
#      so and do not apply there);
#   3. a short schemathesis pass against a live server and docs/openapi.yaml (schemathesis is
#      installed from PyPI into target/ if missing; scripts/soak.sh runs the long pass);
#   4. the TypeScript client's tests against the real binary, its types checked for drift
#      from docs/openapi.yaml, and the Next.js example typechecked (scripts/test-typescript.sh;
#      Node.js from Debian and the npm packages are installed if missing);
#   5. docs/openapi.yaml validated, linted with Spectral, and a Python client generated from
#      it driven against a server with its own plan names (scripts/openapi.sh; the tools are
#      installed from PyPI and npm into target/ if missing).
# Arguments go to `cargo test` (e.g. a test name filter); the schemathesis pass then is skipped
# only when a filter is given, so the plain command always runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-browser.sh
./scripts/install-python.sh
./scripts/install-node.sh
./scripts/install-promtool.sh
./scripts/install-nginx.sh
cargo test --locked "$@"
if [ "$#" -eq 0 ]; then
    # The restart test stops the whole server: it runs alone, on a cluster of its own.
    ./scripts/with-postgres.sh cargo test --locked --test it -- --skip postgres_restart
    ./scripts/with-postgres.sh cargo test --locked --test it postgres_restart
else
    ./scripts/with-postgres.sh cargo test --locked --test it "$@"
fi
if [ "$#" -eq 0 ]; then
    ./scripts/test-typescript.sh
    ./scripts/schemathesis.sh 25
    ./scripts/openapi.sh
fi
