// Benchmark: the connection tracker over a capture (`FILE=x.pcap`).
src :: FromPcap($FILE, BURST 64);
src -> ct :: ConnTrack(CAPACITY 65536) -> Discard;
