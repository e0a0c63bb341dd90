//! Every checked-in fuzz corpus file (`fuzz/corpus/TARGET/seed*`) and every reproducer of a fixed crash
//! (`fuzz/regressions/TARGET/*`) through its target's body, on stable, in the ordinary test run: what the
//! fuzzer once broke stays fixed without the fuzzer. (Corpus entries the fuzzer grew locally, named by
//! their hash, are not checked in and are run too when present.)

use std::path::Path;

#[test]
fn every_corpus_file_runs_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut ran = 0;
    for (name, f) in nf_drivers::fuzzing::TARGETS {
        let mut seeds = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if !p.is_file() {
                    continue;
                }
                let data = std::fs::read(&p).unwrap();
                let r = std::panic::catch_unwind(|| f(&data));
                assert!(r.is_ok(), "{name}: {} panicked", p.display());
                ran += 1;
                seeds += 1;
            }
        }
        assert!(seeds > 0, "no corpus for {name}");
    }
    assert!(ran >= 40, "{ran}");
}
