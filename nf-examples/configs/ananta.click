// Ananta end to end, in one process: a Mux spreads the TCP flows of a VIP over two hosts by Maglev
// hashing (IP-in-IP, outer destination the host); on each host a Host Agent decapsulates, DNATs to its
// backend and clamps the MSS of SYNs. Replies would leave the Host Agents' second output straight to the
// clients (direct server return). nf run nf-examples/configs/ananta.click
src :: InfiniteSource(LIMIT 20000, FLOWS 1000, PROTO tcp, STOP true);
src -> dir :: Classifier(36/0050, -);
dir[1] -> Discard;
dir[0] -> mux :: AnantaMux(VIP 192.168.0.1:80, LOOSE_VIP true, SELF 10.9.9.9, BACKENDS 10.2.0.1 10.2.0.2);
mux -> host :: Classifier(30/0a020001, 30/0a020002);
host[0] -> ha1 :: HostAgent(VIP 192.168.0.1:80, BACKEND 10.1.0.1:8080, MSS 1400) -> vm1 :: Counter -> Discard;
host[1] -> ha2 :: HostAgent(VIP 192.168.0.1:80, BACKEND 10.1.0.2:8080, MSS 1400) -> vm2 :: Counter -> Discard;
Idle -> [1]ha1[1] -> Discard;
Idle -> [1]ha2[1] -> Discard;
