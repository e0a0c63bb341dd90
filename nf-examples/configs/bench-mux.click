// Benchmark: Ananta's Mux over a capture (`FILE=x.pcap`): Maglev hashing, the trusted/untrusted flow
// tables, IP-in-IP encapsulation of every packet to port 80 (replies and other traffic are dropped).
// COPYBREAK: auto, or the size (bytes) from which frames are borrowed from the mapped file, not copied.
define($COPYBREAK auto);
src :: FromPcap($FILE, BURST 64, COPYBREAK $COPYBREAK);
src -> mux :: AnantaMux(VIP 192.168.0.1:80, LOOSE_VIP true, SELF 10.9.9.9, TRUSTED 262144, UNTRUSTED 131072,
                        BACKENDS 10.2.0.1 10.2.0.2 10.2.0.3 10.2.0.4 10.2.0.5 10.2.0.6 10.2.0.7 10.2.0.8);
mux -> Discard;
