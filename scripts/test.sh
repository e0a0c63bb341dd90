#!/usr/bin/env bash
# Installs what the tests need (on Debian: tcpdump, redis-server, iproute2, iptables, conntrack, ethtool,
# curl, util-linux's logger, ping, prometheus for promtool; the tests start their own Redis servers on free loopback ports and build
# their own network namespaces, as root) and runs every test of the workspace:
# unit tests, integration tests, the criterion benches in test mode, and the doctests; then the checks a
# change is held to: format, clippy, a warning-free `cargo doc`, cargo-deny and `cargo package`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v logger >/dev/null 2>&1 || need+=(bsdutils)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v stdbuf >/dev/null 2>&1 || need+=(coreutils)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v sysctl >/dev/null 2>&1 || need+=(procps)
command -v pkill >/dev/null 2>&1 || need+=(procps)
# promtool, Prometheus's own checker of the metrics endpoint's exposition.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "installing: ${need[*]}"
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# A watchdog: a test that hangs fails the run with a message after 45 minutes (the whole run takes
# about 8 here) instead of holding CI until its own limit, with no word of which test it was.
watchdog() {
    local rc=0
    timeout --kill-after=30 2700 "$@" || rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "test.sh: '$*' did not finish within 45 minutes: a test hangs (the last 'has been running for over 60 seconds' line names it)" >&2
    fi
    return "$rc"
}
# The code is formatted and lint-free as configured (what every change is held to). Both tools come with
# rustup's default profile; where one is missing it is added, so neither check is ever skipped.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
watchdog cargo test --workspace --all-targets
watchdog cargo test --workspace --doc
# The API documentation builds without a warning (broken or redundant links).
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace
# Licences, bans and sources (offline: the advisory database is not reachable from the build machines;
# DEPENDENCIES.md records each dependency's maintenance state instead). cargo-deny is installed from the
# registry when missing (a few minutes, once per machine), so the check always runs.
if ! cargo deny --version >/dev/null 2>&1; then
    echo "test.sh: installing cargo-deny (cargo install --locked)"
    cargo install --locked cargo-deny
fi
cargo deny check licenses bans sources
# Every crate packages and its package builds alone, in dependency order (what `cargo publish` would
# upload: metadata, licence files, README, no file left out).
# Cargo takes a registry's crates to be immutable: it reuses an earlier unpack of the same version from its
# temporary registry, and an earlier build of it. The packages are verified in a target directory of their
# own, whose builds of these crates (and the unpacks) are cleared first; their dependencies stay built.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
pkg_target=target/package-check
rm -rf "$pkg_target"/package "$cargo_home"/registry/src/-*/nf-{core,state,drivers,examples}-* \
    "$cargo_home"/registry/cache/-*/nf-{core,state,drivers,examples}-* \
    "$pkg_target"/debug/.fingerprint/nf-{core,state,drivers,examples}-* \
    "$pkg_target"/debug/deps/*nf_{core,state,drivers,examples}* "$pkg_target"/debug/build/nf-*
cargo package --workspace --allow-dirty --target-dir "$pkg_target"
