// Benchmark: check IP headers and classify TCP / UDP / the rest, counting each (`FILE=x.pcap`).
// Frames shorter than COPYBREAK bytes are copied, longer ones borrowed from the mapped file.
define($COPYBREAK 256);
src :: FromPcap($FILE, BURST 64, COPYBREAK $COPYBREAK);
src -> Strip(14) -> CheckIPHeader -> c :: IPClassifier(tcp, udp, -);
c[0] -> tcp :: Counter -> Discard;
c[1] -> udp :: Counter -> Discard;
c[2] -> other :: Counter -> Discard;
