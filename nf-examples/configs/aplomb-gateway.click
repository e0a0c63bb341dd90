// APLOMB's gateway and the cloud's end, in one graph over a capture (`FILE=x.pcap`): each connection is
// sent through the PoP chosen for it (PoPSelector), compressed (LZ4 in IPComp), tunnelled (GRE to one PoP,
// VXLAN to the other), then, at the PoP, decapsulated and decompressed; the counters at the end must add up
// to what came in.
src :: FromPcap($FILE);
src -> Compress -> pop :: PoPSelector(POP ams, POP fra);
pop[0] -> gre :: TunnelEncap(MODE gre, LOCAL 192.0.2.1, REMOTE 198.51.100.1, MTU 1500)
       -> TunnelDecap(MODE gre) -> Decompress -> ams :: Counter -> Discard;
pop[1] -> vx :: TunnelEncap(MODE vxlan, VNI 7, LOCAL 192.0.2.1, REMOTE 203.0.113.1, MTU 1500)
       -> TunnelDecap(MODE vxlan, VNI 7) -> Decompress -> fra :: Counter -> Discard;
gre[1] -> Discard;   // ICMP "fragmentation needed" for oversized DF packets
vx[1] -> Discard;
