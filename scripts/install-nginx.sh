#!/usr/bin/env bash
# Installs nginx, which tests/it/gateway_nginx.rs starts in front of a test application to run
# the README's auth_request snippet: Debian's `nginx` package (it has the auth_request
# module), unless /usr/sbin/nginx is there. Only the binary is used: the test runs its own
# nginx as the current user on a temp prefix; the package's service is neither needed nor
# started here.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/apt-install.sh
source scripts/lib/apt-install.sh
apt_install install-nginx.sh nginx /usr/sbin/nginx "the gateway test"
