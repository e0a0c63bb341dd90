// Benchmark: read a capture and drop every packet (`nf run ... FILE=x.pcap`).
// COPYBREAK: auto, or the size (bytes) from which frames are borrowed from the mapped file, not copied.
define($COPYBREAK auto);
src :: FromPcap($FILE, BURST 64, COPYBREAK $COPYBREAK);
src -> Discard;
