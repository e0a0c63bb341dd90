//! Tunnel decapsulation, IPComp, SIMPLE's tags and switch, Blink's detector. The body is
//! `nf_drivers::fuzzing::tunnel`, which a plain `cargo test` also runs on every corpus file
//! (nf-drivers/tests/fuzz_corpus.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nf_drivers::fuzzing::tunnel(data));
