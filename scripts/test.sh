#!/usr/bin/env bash
# Installs what the tests need (on Debian: tcpdump, redis-server; the tests start their own Redis servers
# on free loopback ports) and runs every test of the workspace:
# unit tests, integration tests, the criterion benches in test mode, and the doctests.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "installing: ${need[*]}"
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

cargo test --workspace --all-targets
cargo test --workspace --doc
