// Benchmark: the connection tracker over a capture (`FILE=x.pcap`).
// COPYBREAK: auto, or the size (bytes) from which frames are borrowed from the mapped file, not copied.
define($COPYBREAK auto);
src :: FromPcap($FILE, BURST 64, COPYBREAK $COPYBREAK);
src -> ct :: ConnTrack(CAPACITY 65536) -> Discard;
