#!/usr/bin/env bash
# Installs the Python packages the integration tests run, from PyPI into target/python-venv
# (kept between runs; a fresh machine gets it on the first ./scripts/test.sh):
#   standardwebhooks  the official Standard Webhooks verifier (tests/it/outbox.rs)
#   stripe            Stripe's WebhookSignature.verify_header, for Tally-Signature
#   http-sf           an RFC 9651 structured-field parser, for the RateLimit headers (tests/it/ratelimit.rs)
#   aiosmtpd          a local SMTP sink that keeps each mail in a Maildir (tests/it/email.rs)
# Tests that need them fail with a pointer here when the venv is missing; they never skip.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/python-venv
REQUIREMENTS='standardwebhooks==1.1.0 stripe>=11,<14 http-sf==1.5.0 aiosmtpd==1.4.6'
STAMP="$VENV/.requirements"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$REQUIREMENTS" ]; then
    exit 0
fi
python3 -m venv "$VENV"
# shellcheck disable=SC2086 # the requirements are separate words on purpose
"$VENV/bin/pip" install --quiet $REQUIREMENTS
echo "$REQUIREMENTS" > "$STAMP"
