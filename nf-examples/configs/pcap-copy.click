// Copies the TCP packets of a capture to another file (`FILE=in.pcap OUT=out.pcap`).
src :: FromPcap($FILE);
src -> c :: Classifier(12/0800 23/06, -);
c[0] -> tcp :: Counter -> ToPcap($OUT);
c[1] -> Discard;
