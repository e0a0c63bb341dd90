//! The RFC 3164, RFC 5424 and kmsg parsers. The body is `nf_drivers::fuzzing::syslog_message`, which a plain `cargo test` also runs on every
//! corpus file (nf-drivers/tests/fuzz_corpus.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nf_drivers::fuzzing::syslog_message(data));
