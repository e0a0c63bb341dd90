// Benchmark: nf lb's balancer answered by its own replies. Requests only (`--memory --one-way`, or a
// capture of requests): each client packet is balanced (its destination rewritten to a backend), mirrored
// into the backend's reply, and the reply sent back through the balancer (its source restored to the
// VIP): two table hits and two rewrites a request, replies from the flow's backend (strict). A
// Queue and an Unqueue close the loop (a push graph may not).
// COPYBREAK: auto, or the size (bytes) from which frames are borrowed from the mapped file, not copied.
define($COPYBREAK auto);
src :: FromPcap($FILE, BURST 64, COPYBREAK $COPYBREAK);
lb :: LoadBalancer(VIP 192.168.0.1:80, LOOSE_VIP true, SEED 1,
                   BACKENDS 10.1.0.1:8080 10.1.0.2:8080 10.1.0.3:8080 10.1.0.4:8080 10.1.0.5:8080);
src -> [0]lb[0] -> IPMirror -> Queue(CAPACITY 4096) -> Unqueue(BURST 64) -> [1]lb[1] -> Discard;
