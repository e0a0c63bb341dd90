#!/usr/bin/env bash
# Receive-path benchmark (needs root): a veth pair between two network namespaces; `nf run` blasts
# 64-byte frames into one end (Replay -> ToDevice), and `nf bench rx` receives on the other end, first
# with FromDevice (AF_PACKET recvmmsg bursts), then with smoltcp's RawSocket (needs /usr/bin/time). Usage: scripts/bench-rx.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
nf=target/release/nf
cargo build --release -q -p nf-examples
tag="nfbrx$$"
cleanup() { kill "${blaster:-0}" 2>/dev/null || true; ip netns del "${tag}s" 2>/dev/null || true; ip netns del "${tag}r" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "${tag}s"; ip netns add "${tag}r"
ip link add s0 netns "${tag}s" type veth peer name r0 netns "${tag}r"
ip -n "${tag}s" link set s0 up; ip -n "${tag}r" link set r0 up
cfg=$(mktemp --suffix .click)
echo 'Replay(PACKETS 10000, FLOWS 1000, LENGTH 64, LIMIT 1000000000000) -> ToDevice(s0);' > "$cfg"
ip netns exec "${tag}s" "$nf" run -q "$cfg" & blaster=$!
sleep 1
# The sender's veth does most of the kernel's work, so the rates are the sender's: the receivers'
# difference shows in their own CPU time per frame.
for opt in "" "--smoltcp"; do
    ip netns exec "${tag}r" /usr/bin/time -f "  receiver CPU: user %U s, system %S s" \
        "$nf" bench rx --dev r0 --seconds "$secs" $opt
done
