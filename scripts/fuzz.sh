#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60), one after the other, on the machine's stable
# toolchain: cargo-fuzz needs nightly flags, which RUSTC_BOOTSTRAP=1 unlocks on stable. Crashes land in
# fuzz/artifacts/TARGET/; copy a fixed one to fuzz/regressions/TARGET/ and `cargo test` replays it forever.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
shift || true
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "== $t ($secs s)"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time="$secs" -max_len=4096 2>&1 \
        | grep -E "^#[0-9]+.*DONE|^Done|SUMMARY|panicked" || true
done
