# Sourced by the install-*.sh scripts: `apt_install SCRIPT PACKAGE BINARY WHY` installs Debian's
# PACKAGE with apt-get unless BINARY is already there, and fails loudly (naming the script and
# why the tests need it) when it cannot. Only the binary is used: no service is started here.
apt_install() {
    local script=$1 package=$2 binary=$3 why=$4
    [[ -x "$binary" ]] && return 0
    fail() {
        echo "$script: $*" >&2
        echo "$script: $why needs $binary; install the Debian package $package by hand." >&2
        exit 1
    }
    command -v apt-get >/dev/null 2>&1 || fail "apt-get is not available on this machine"
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || fail "not root and sudo is not available"
        sudo=(sudo)
    fi
    echo "$script: installing $package with apt-get" >&2
    # Another install on the machine may hold dpkg's lock for a while: wait for it, do not fail.
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
    "${apt[@]}" update -q || fail "apt-get update failed"
    "${apt[@]}" install -y -q --no-install-recommends "$package" || fail "apt-get install $package failed"
    [[ -x "$binary" ]] || fail "$binary is still missing after the install"
}
