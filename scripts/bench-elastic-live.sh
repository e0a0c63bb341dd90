#!/usr/bin/env bash
# Live elasticity (needs root): a capture whose flows static RSS over two shards splits 85/15 is blasted in
# a loop into a veth pair between two namespaces; `nf run --shards 2` receives on the other end through a
# CPU-heavy graph (APLOMB's compression, four round trips: a few microseconds a frame), first with the
# static table, then with `--rebalance`. Prints the frames each shard processed, the frames the kernel
# dropped (rings full) and the 99th percentile of the time frames waited in each shard's ring.
# Usage: scripts/bench-elastic-live.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
nf=target/release/nf
cargo build --release -q -p nf-examples
tag="nfbel$$"
dir=$(mktemp -d)
cleanup() { kill "${blaster:-0}" 2>/dev/null || true; ip netns del "${tag}s" 2>/dev/null || true; ip netns del "${tag}r" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
"$nf" pcap gen --packets 200000 --flows 1000 --size 1500 --skew 85 "$dir/skew.pcap" >/dev/null
ip netns add "${tag}s"; ip netns add "${tag}r"
ip link add s0 netns "${tag}s" type veth peer name r0 netns "${tag}r"
ip -n "${tag}s" link set s0 up; ip -n "${tag}r" link set r0 up
echo "FromPcap($dir/skew.pcap, LOOP true) -> ToDevice(s0);" > "$dir/blast.click"
echo "src :: FromDevice(r0) -> Compress -> Decompress -> Compress -> Decompress -> Compress -> Decompress
      -> Compress -> Decompress -> Discard;" > "$dir/rx.click"
ip netns exec "${tag}s" "$nf" run -q "$dir/blast.click" & blaster=$!
sleep 1
for opt in "" "--rebalance"; do
    out=$(ip netns exec "${tag}r" timeout -s INT "$secs" "$nf" run "$dir/rx.click" --shards 2 --stats $opt 2>&1 || true)
    per=$(echo "$out" | grep -o 'shards: packets [0-9 /]*' | sed 's/shards: packets //; s/ *$//')
    moves=$(echo "$out" | grep -o 'moves [0-9]* ([0-9]* by the controller' | sed 's/ (.*//')
    drops=$(echo "$out" | grep -E '^src\.kernel_drops' | awk '{print $NF}')
    wait99=$(echo "$out" | grep -E '^src\.ring_wait_p99_ms' | sed 's/^src.ring_wait_p99_ms *//')
    echo "${opt:-static}: frames per shard $per; $moves; kernel drops $drops; ring wait p99 (ms, per shard) $wait99"
done
