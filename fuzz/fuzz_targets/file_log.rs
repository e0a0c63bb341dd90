//! The file store's recovery from a snapshot and a log (torn tails cut, corruption refused, acknowledged
//! records kept). The body is `nf_drivers::fuzzing::file_log`, which a plain `cargo test` also runs on
//! every corpus file (nf-drivers/tests/fuzz_corpus.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nf_drivers::fuzzing::file_log(data));
