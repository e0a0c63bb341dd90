//! The configuration language: parse, build and check never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let reg = nf_core::Registry::standard();
        let _ = nf_core::testing::check_config(&reg, "fuzz", text);
    }
});
