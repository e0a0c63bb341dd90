// Benchmark: a NAPT answered by its own replies, as bench-lb-mirror.click. Requests only (`--memory
// --one-way`): each client packet leaves from 192.0.2.1 with a port of its own (its source rewritten),
// is mirrored into the server's reply to that address and port, and the reply goes back through the
// NAT (its destination restored to the client): two table hits and two rewrites a request, two mappings
// a flow, as a NAT box has them.
// COPYBREAK: auto, or the size (bytes) from which frames are borrowed from the mapped file, not copied.
define($COPYBREAK auto);
src :: FromPcap($FILE, BURST 64, COPYBREAK $COPYBREAK);
rw :: IPRewriter(pattern 192.0.2.1 1024-65535 - - 0 1, drop, SEED 1);
src -> [0]rw[0] -> IPMirror -> Queue(CAPACITY 4096) -> Unqueue(BURST 64) -> [1]rw[1] -> Discard;
