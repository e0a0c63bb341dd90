//! The netfilter-log and conntrack-events extractors. The body is `nf_drivers::fuzzing::syslog_extract`, which a plain `cargo test` also runs on every
//! corpus file (nf-drivers/tests/fuzz_corpus.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nf_drivers::fuzzing::syslog_extract(data));
