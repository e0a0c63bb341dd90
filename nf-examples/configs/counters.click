// The demo pipeline: synthetic TCP and UDP traffic over 1,000 flows, classified and counted, with a
// connection tracker on the TCP branch. Run it with `nf run nf-examples/configs/counters.click`.
define($PACKETS 200000);

src :: Replay(PACKETS 20000, FLOWS 1000, LIMIT $PACKETS);

elementclass CountAndDrop {
    input -> c :: Counter -> Discard;
}

src -> Strip(14)
    -> ip :: CheckIPHeader
    -> cls :: IPClassifier(tcp, udp, -);

cls[0] -> Unstrip(14) -> ct :: ConnTrack(CAPACITY 4096) -> tcp :: Counter -> Discard;
cls[1] -> udp :: CountAndDrop;
cls[2] -> other :: CountAndDrop;
