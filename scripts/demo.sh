#!/usr/bin/env bash
# The demo on the embedded defaults (no root, no server): the middlebox-minion story in one process. A
# primary load balancer's flow mappings are replicated through an in-memory store to a minion; the primary
# fails halfway; the table shows the connections broken without the state (Fail) and with it (Failover),
# then each balancer's counters.
set -euo pipefail
cd "$(dirname "$0")/.."
# Not -q: the first build takes a few minutes, and cargo shows its progress.
cargo run --release -p nf-examples --bin nf -- demo "$@"
