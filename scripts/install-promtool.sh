#!/usr/bin/env bash
# Installs promtool, which tests/it/telemetry.rs runs on `GET /metrics` (`promtool check
# metrics`): Debian's `prometheus` package, unless /usr/bin/promtool is there. Only the tool
# is used: the package's service is not started by this script and no test depends on it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/apt-install.sh
source scripts/lib/apt-install.sh
apt_install install-promtool.sh prometheus /usr/bin/promtool "the metrics test"
