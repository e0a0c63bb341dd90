#!/usr/bin/env bash
# Live dispatch over two shards (needs root): a veth pair between two network namespaces; `nf run` blasts
# 64-byte frames of 1,000 flows into one end, and `nf run --shards 2` receives on the other end with
# FromDevice, its fanout group following the indirection table (`FANOUT table`: a classic BPF program) and
# then the kernel's own hash (`FANOUT hash`: the runtime then hands each packet to its flow's shard).
# Prints the frames each shard took, the frames per second and the receivers' CPU time per frame.
# Usage: scripts/bench-fanout.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
nf=target/release/nf
cargo build --release -q -p nf-examples
tag="nfbfo$$"
cleanup() { kill "${blaster:-0}" 2>/dev/null || true; ip netns del "${tag}s" 2>/dev/null || true; ip netns del "${tag}r" 2>/dev/null || true; rm -f "${cfg:-}" "${rx:-}"; }
trap cleanup EXIT
ip netns add "${tag}s"; ip netns add "${tag}r"
ip link add s0 netns "${tag}s" type veth peer name r0 netns "${tag}r"
ip -n "${tag}s" link set s0 up; ip -n "${tag}r" link set r0 up
cfg=$(mktemp --suffix .click); rx=$(mktemp --suffix .click)
echo "Replay(PACKETS 10000, FLOWS 1000, LENGTH 64, LIMIT 1000000000000) -> ToDevice(s0);" > "$cfg"
ip netns exec "${tag}s" "$nf" run -q "$cfg" & blaster=$!
sleep 1
for mode in table hash; do
    echo "src :: FromDevice(r0, FANOUT $mode) -> c :: Counter -> Discard;" > "$rx"
    out=$(ip netns exec "${tag}r" /usr/bin/time -f "cpu %U %S" timeout -s INT "$secs" "$nf" run "$rx" --shards 2 --stats -q 2>&1 || true)
    per=$(echo "$out" | grep -o 'shards: packets [0-9 /]*' | sed 's/shards: packets //; s/ *$//')
    frames=$(echo "$per" | tr -d ' ' | tr '/' '+' | bc)
    cpu=$(echo "$out" | awk '/^cpu/ {print $2 + $3}')
    echo "FANOUT $mode: $frames frames in $secs s ($(awk -v f="$frames" -v s="$secs" 'BEGIN { printf "%.2f Mfps", f / s / 1e6 }')), per shard $per;" \
         "receivers' CPU $(awk -v c="$cpu" -v f="$frames" 'BEGIN { if (f > 0) printf "%.0f ns a frame", c * 1e9 / f }')"
done
