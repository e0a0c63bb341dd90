// nf fw: the failover lab's firewall minion. INSIDE and OUTSIDE are set on the command line.
ct :: ConnTrack(LOOSE false, TCP_ESTABLISHED 7200);
FromDevice($INSIDE) -> ct;
FromDevice($OUTSIDE) -> ct;
ct[1] -> Discard;
ct[0] -> side :: Classifier(30/0a0000, 30/0a0100);
side[0] -> EtherRewrite(SRC 02:00:00:00:01:00, DST 02:00:00:00:04:01) -> ToDevice($INSIDE);
side[1] -> nh :: Classifier(30/0a01000b, 30/0a01000c, 30/0a01000d, 30/0a01000e, 30/0a01000f);
nh[0] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:01) -> ToDevice($OUTSIDE);
nh[1] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:02) -> ToDevice($OUTSIDE);
nh[2] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:03) -> ToDevice($OUTSIDE);
nh[3] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:04) -> ToDevice($OUTSIDE);
nh[4] -> EtherRewrite(SRC 02:00:00:00:02:00, DST 02:00:00:00:03:05) -> ToDevice($OUTSIDE);
