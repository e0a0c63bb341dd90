#!/usr/bin/env bash
# Receive-path benchmark (needs root): a veth pair between two network namespaces; `nf run` blasts frames
# of each size into one end (Replay -> ToDevice), and `nf bench rx` receives on the other end with
# FromDevice over its PACKET_RX_RING (zero copy), then with recvmmsg bursts, then (with --smoltcp) with
# smoltcp's RawSocket. Prints frames/s and the receiver's CPU time per frame (needs /usr/bin/time).
# Usage: scripts/bench-rx.sh [SECONDS] [SIZES] [--smoltcp]   e.g. scripts/bench-rx.sh 5 "64 1500"
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
sizes="${2:-64 1500}"
receivers=("" "--no-ring")
if [ "${3:-}" = "--smoltcp" ]; then receivers+=("--smoltcp"); fi
nf=target/release/nf
cargo build --release -q -p nf-examples
tag="nfbrx$$"
cleanup() { kill "${blaster:-0}" 2>/dev/null || true; ip netns del "${tag}s" 2>/dev/null || true; ip netns del "${tag}r" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "${tag}s"; ip netns add "${tag}r"
ip link add s0 netns "${tag}s" type veth peer name r0 netns "${tag}r"
ip -n "${tag}s" link set s0 up; ip -n "${tag}r" link set r0 up
cfg=$(mktemp --suffix .click)
for size in $sizes; do
    echo "Replay(PACKETS 10000, FLOWS 1000, LENGTH $size, LIMIT 1000000000000) -> ToDevice(s0);" > "$cfg"
    ip netns exec "${tag}s" "$nf" run -q "$cfg" & blaster=$!
    sleep 1
    # The sender's veth does most of the kernel's work, so the rates are the sender's: the receivers'
    # difference shows in their own CPU time per frame.
    for opt in "${receivers[@]}"; do
        out=$(ip netns exec "${tag}r" /usr/bin/time -f "cpu %U %S" "$nf" bench rx --dev r0 --seconds "$secs" $opt 2>&1)
        frames=$(echo "$out" | grep -o '[0-9]* frames,' | grep -o '[0-9]*')
        cpu=$(echo "$out" | awk '/^cpu/ {print $2 + $3}')
        echo "$size bytes: $(echo "$out" | grep frames); $(echo "$out" | grep "kernel drops")"
        echo "  receiver CPU $(echo "$out" | awk '/^cpu/ {print "user " $2 " s, system " $3 " s"}'), $(awk -v c="$cpu" -v f="$frames" 'BEGIN { if (f > 0) printf "%.0f ns a frame", c * 1e9 / f }')"
    done
    kill "$blaster"; wait "$blaster" 2>/dev/null || true
done
