//! Packet parsing, flow keys and in-place rewrites: no panic, and a rewrite reads back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nf_core::packet::Link;
use nf_core::{FlowKey, Packet};

fuzz_target!(|data: &[u8]| {
    for link in [Link::Ethernet, Link::Ip] {
        let mut p = Packet::from_slice(data);
        if let Ok(h) = p.locate(link) {
            if let Some(k) = FlowKey::from_headers(p.buffer(), &h) {
                assert_eq!(k.rss_hash(), k.reversed().rss_hash());
                let new = k.reversed();
                if p.set_ip_src(&h, new.src).is_ok() && p.set_src_port(&h, 4242).is_ok() {
                    let k2 = FlowKey::from_headers(p.buffer(), &h).expect("still parses");
                    assert_eq!(k2.src, new.src);
                    if h.proto == 6 || h.proto == 17 {
                        assert_eq!(k2.src_port, 4242);
                    }
                }
            }
            let _ = p.dec_ttl(&h);
        }
    }
});
