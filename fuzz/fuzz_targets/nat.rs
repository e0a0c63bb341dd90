//! Frame sequences through a NAPT (`IPRewriter`), its invariants checked after every packet. The body is
//! `nf_drivers::fuzzing::nat`, which a plain `cargo test` also runs on every corpus file
//! (nf-drivers/tests/fuzz_corpus.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nf_drivers::fuzzing::nat(data));
