//! pcap and pcapng reading: any bytes give records or a typed error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = nf_drivers::io::pcap::CaptureFile::from_vec("fuzz", data.to_vec()) {
        for r in f.records().take(10_000) {
            if r.is_err() {
                break;
            }
        }
    }
});
