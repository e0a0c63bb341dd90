// Benchmark: read a capture and drop every packet (`nf run ... FILE=x.pcap`).
src :: FromPcap($FILE, BURST 64);
src -> Discard;
