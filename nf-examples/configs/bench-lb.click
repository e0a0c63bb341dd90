// Benchmark: nf lb's graph over a capture (`FILE=x.pcap`, from `nf pcap gen`): client packets (to port
// 80) through the balancer's DNAT towards five backends, replies (from port 80) back through it with the
// VIP restored. The capture was not taken behind this balancer, so replies are matched by client only.
// COPYBREAK: auto, or the size (bytes) from which frames are borrowed from the mapped file, not copied.
define($COPYBREAK auto);
src :: FromPcap($FILE, BURST 64, COPYBREAK $COPYBREAK);
src -> dir :: Classifier(34/0050, -);
lb :: LoadBalancer(VIP 192.168.0.1:80, LOOSE_VIP true, STRICT_REPLIES false, SEED 1,
                   BACKENDS 10.1.0.1:8080 10.1.0.2:8080 10.1.0.3:8080 10.1.0.4:8080 10.1.0.5:8080);
dir[0] -> [1]lb;
dir[1] -> [0]lb;
lb[0] -> Discard;
lb[1] -> Discard;
