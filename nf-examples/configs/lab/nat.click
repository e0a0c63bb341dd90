// nf nat: the failover lab's NAT minion. INSIDE, OUTSIDE and EXTERNAL are set on the command line.
rw :: IPRewriter(pattern $EXTERNAL 1024-65535 - - 0 1, drop, TCP_TIMEOUT 7200);
FromDevice($INSIDE) -> [0]rw;
FromDevice($OUTSIDE) -> [1]rw;
rw[1] -> EtherRewrite(SRC 02:00:00:00:01:00, DST 02:00:00:00:04:01) -> ToDevice($INSIDE);
rw[0] -> nh :: Classifier(30/0a01000b, 30/0a01000c, 30/0a01000d, 30/0a01000e, 30/0a01000f);
nh[0] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:01) -> ToDevice($OUTSIDE);
nh[1] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:02) -> ToDevice($OUTSIDE);
nh[2] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:03) -> ToDevice($OUTSIDE);
nh[3] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:04) -> ToDevice($OUTSIDE);
nh[4] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:05) -> ToDevice($OUTSIDE);
