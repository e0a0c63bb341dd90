// Benchmark: read a capture and drop every packet (`nf run ... FILE=x.pcap`).
// Frames shorter than COPYBREAK bytes are copied, longer ones borrowed from the mapped file.
define($COPYBREAK 256);
src :: FromPcap($FILE, BURST 64, COPYBREAK $COPYBREAK);
src -> Discard;
