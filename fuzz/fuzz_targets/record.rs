//! State records: any bytes decode to a record or a typed error, never a panic; a record that decodes
//! re-encodes to the same bytes; typed decoding of any record never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nf_state::Record;

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        match Record::decode_frame(&data[at..]) {
            Ok((r, n)) => {
                let mut again = Vec::new();
                r.encode_frame(&mut again).expect("a decoded record encodes");
                assert_eq!(&again[..], &data[at..at + n]);
                let _ = nf_state::json_line(&r);
                at += n;
            }
            Err(_) => break,
        }
    }
    let _ = Record::decode_payload(data);
});
