// Push to pull and back: a rated source feeds a queue that an Unqueue drains.
src :: RatedSource(200000, LIMIT 2000, FLOWS 16, STOP true);
q :: Queue(256);
src -> q -> Unqueue(BURST 16) -> Paint(1) -> sw :: PaintSwitch;
sw[0] -> Discard;
sw[1] -> painted :: Counter -> Discard;
