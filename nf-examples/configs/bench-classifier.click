// Benchmark: check IP headers and classify TCP / UDP / the rest, counting each (`FILE=x.pcap`).
// COPYBREAK: auto, or the size (bytes) from which frames are borrowed from the mapped file, not copied.
define($COPYBREAK auto);
src :: FromPcap($FILE, BURST 64, COPYBREAK $COPYBREAK);
src -> Strip(14) -> CheckIPHeader -> c :: IPClassifier(tcp, udp, -);
c[0] -> tcp :: Counter -> Discard;
c[1] -> udp :: Counter -> Discard;
c[2] -> other :: Counter -> Discard;
