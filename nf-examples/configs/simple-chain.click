// SIMPLE's policy chains over a capture (`FILE=x.pcap`): two switches; the firewall and the proxy hang off
// S1, the IDS off S2, so a web packet goes S1 -> fw -> S1 -> S2 -> ids -> S2 -> S1 -> proxy -> S1 -> out
// (S1 three times; the VLAN tag tells the visits apart). DNS goes through the firewall only; the rest of
// the traffic straight out. The middleboxes here are counters (queues break the loops, as in Click).
src :: FromPcap($FILE) -> s1 :: PolicySwitch(TAG vlan, HOP fw 1, HOP proxy 2, HOP ids VIA 3,
                                             CLASS web tcp dst port 80 CHAIN fw ids proxy,
                                             CLASS dns udp dst port 53 CHAIN fw);
s2 :: PolicySwitch(TAG vlan, HOP ids 1, HOP fw VIA 0, HOP proxy VIA 0,
                   CLASS web tcp dst port 80 CHAIN fw ids proxy, CLASS dns udp dst port 53 CHAIN fw);
s1[0] -> out :: Counter -> Discard;
s1[1] -> fw :: Counter -> Queue -> Unqueue -> [1]s1;
s1[2] -> proxy :: Counter -> Queue -> Unqueue -> [2]s1;
s1[3] -> Queue -> Unqueue -> s2;
s2[1] -> ids :: Counter -> Queue -> Unqueue -> [1]s2;
s2[0] -> Queue -> Unqueue -> [3]s1;
