//! RFC 6587 framing (octet counting and LF-terminated, mixed): any byte stream, cut anywhere, never
//! panics, never yields a message over the limit, and consumes its input.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nf_drivers::syslog::framing::Framer;

fuzz_target!(|data: &[u8]| {
    let (cut, rest) = match data.split_first() {
        Some((&c, r)) => (usize::from(c) + 1, r),
        None => return,
    };
    let mut f = Framer::new(256);
    let mut buf = BytesMut::new();
    for chunk in rest.chunks(cut) {
        buf.extend_from_slice(chunk);
        while let Some(m) = f.next_frame(&mut buf) {
            if let Ok(m) = m {
                assert!(m.len() <= 256);
            }
        }
    }
    while let Some(m) = f.finish(&mut buf) {
        if let Ok(m) = m {
            assert!(m.len() <= 256 + 10);
        }
    }
});
