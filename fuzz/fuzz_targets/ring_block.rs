//! Receive-ring blocks (TPACKET_V3) as the kernel hands them over. The body is
//! `nf_drivers::fuzzing::ring_block`, which a plain `cargo test` also runs on every corpus file
//! (nf-drivers/tests/fuzz_corpus.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nf_drivers::fuzzing::ring_block(data));
