//! The RFC 3164, RFC 5424 and kmsg parsers: any text parses or is a typed error; a parsed message's
//! fields are slices of the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nf_drivers::syslog::parse;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(m) = parse(&text) {
        assert!(m.msg.len() <= text.len());
        assert!(m.severity <= 7);
        for e in &m.structured_data {
            assert!(!e.id.is_empty());
        }
    }
});
