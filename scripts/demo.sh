#!/usr/bin/env bash
# The demo on the embedded defaults: a pipeline over synthetic traffic, then every element's counters.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -p nf-examples --bin nf -- run nf-examples/configs/counters.click --stats "$@"
