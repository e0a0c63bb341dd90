//! RFC 6587 framing of syslog over TCP. The body is `nf_drivers::fuzzing::syslog_framing`, which a plain `cargo test` also runs on every
//! corpus file (nf-drivers/tests/fuzz_corpus.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nf_drivers::fuzzing::syslog_framing(data));
