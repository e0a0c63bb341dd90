// Benchmark: a NAPT (`IPRewriter`, Click's input specs) over the capture of bench-lb.click
// (`FILE=x.pcap`, from `nf pcap gen`): client packets (to port 80) leave from 192.0.2.1 with a port of
// 1024-65535 each; the capture's replies (from port 80) were not taken behind this NAT, so each is
// mapped by the second input's pattern as a flow of its own (its source rewritten) and then looked up
// like any: every packet of both directions is a table hit and a rewrite, as in bench-lb.click.
// COPYBREAK: auto, or the size (bytes) from which frames are borrowed from the mapped file, not copied.
define($COPYBREAK auto);
src :: FromPcap($FILE, BURST 64, COPYBREAK $COPYBREAK);
src -> dir :: Classifier(34/0050, -);
rw :: IPRewriter(pattern 192.0.2.1 1024-65535 - - 0 1, pattern 192.0.2.2 - - - 1 0, SEED 1);
dir[0] -> [1]rw;
dir[1] -> [0]rw;
rw[0] -> Discard;
rw[1] -> Discard;
