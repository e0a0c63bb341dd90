// Benchmark: the connection tracker over a capture (`FILE=x.pcap`).
// Frames shorter than COPYBREAK bytes are copied, longer ones borrowed from the mapped file.
define($COPYBREAK 256);
src :: FromPcap($FILE, BURST 64, COPYBREAK $COPYBREAK);
src -> ct :: ConnTrack(CAPACITY 65536) -> Discard;
