// Benchmark: APLOMB's tunnel encapsulation alone over a capture (`FILE=x.pcap`, `MODE=ipip|gre|vxlan`).
// COPYBREAK: auto, or the size (bytes) from which frames are borrowed from the mapped file, not copied.
define($COPYBREAK auto);
define($MODE gre);
src :: FromPcap($FILE, BURST 64, COPYBREAK $COPYBREAK);
src -> TunnelEncap(MODE $MODE, LOCAL 192.0.2.1, REMOTE 198.51.100.1, MTU 1600) -> Discard;
