#!/usr/bin/env bash
# Installs nginx, which tests/it/gateway_nginx.rs starts in front of a test application to run
# the README's auth_request snippet: Debian's `nginx` package (it has the auth_request
# module). Does nothing when /usr/sbin/nginx is there; otherwise installs it with apt-get, and
# fails loudly when it cannot. Only the binary is used: the test runs its own nginx as the
# current user on a temp prefix; the package's service is neither needed nor started here.
set -euo pipefail

NGINX=/usr/sbin/nginx

if [[ -x "$NGINX" ]]; then
    exit 0
fi

fail() {
    echo "install-nginx.sh: $*" >&2
    echo "install-nginx.sh: the gateway test needs $NGINX; install the Debian package nginx by hand." >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "apt-get is not available on this machine"

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || fail "not root and sudo is not available"
    sudo=(sudo)
fi

echo "install-nginx.sh: installing nginx with apt-get" >&2
# Another install on the machine may hold dpkg's lock for a while: wait for it, do not fail.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
"${apt[@]}" update -q || fail "apt-get update failed"
"${apt[@]}" install -y -q --no-install-recommends nginx || fail "apt-get install nginx failed"

[[ -x "$NGINX" ]] || fail "$NGINX is still missing after the install"
echo "install-nginx.sh: $("$NGINX" -v 2>&1)" >&2
