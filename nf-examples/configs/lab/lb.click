// nf lb: the failover lab's balancer. FRONT and BACK are set on the command line.
lb :: LoadBalancer(VIP 10.0.0.100:80, BACKENDS 10.1.0.11:8080 10.1.0.12:8080 10.1.0.13:8080 10.1.0.14:8080 10.1.0.15:8080, POLICY random, IDLE 120);
FromDevice($FRONT) -> [0]lb;
FromDevice($BACK) -> [1]lb;
lb[1] -> EtherRewrite(SRC 02:00:00:00:01:00, DST 02:00:00:00:04:01) -> ToDevice($FRONT);
lb[0] -> nh :: Classifier(30/0a01000b, 30/0a01000c, 30/0a01000d, 30/0a01000e, 30/0a01000f);
nh[0] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:01) -> ToDevice($BACK);
nh[1] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:02) -> ToDevice($BACK);
nh[2] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:03) -> ToDevice($BACK);
nh[3] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:04) -> ToDevice($BACK);
nh[4] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:05) -> ToDevice($BACK);
