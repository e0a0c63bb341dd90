//! Configuration errors name the line and column and point at the text. This test renders the errors of
//! every case in `golden/errors.click` and compares them with `golden/errors.txt`
//! (`UPDATE_GOLDEN=1 cargo test -p nf-core --test golden_errors` rewrites it after a deliberate change).

use nf_core::Registry;
use nf_core::testing::check_config;

#[test]
fn config_errors_match_the_golden_file() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let cases = std::fs::read_to_string(dir.join("errors.click")).unwrap();
    let reg = Registry::standard();
    let mut out = String::new();
    for case in cases.split("//// ").filter(|c| !c.trim().is_empty()) {
        let (title, text) = case.split_once('\n').unwrap();
        let rendered = check_config(&reg, "case.click", text)
            .unwrap_or_else(|| panic!("case `{title}` has no error"));
        out.push_str(&format!("==== {title}\n{rendered}\n\n"));
    }
    let golden = dir.join("errors.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &out).unwrap();
    }
    let want = std::fs::read_to_string(&golden)
        .expect("golden file (run with UPDATE_GOLDEN=1 to create it)");
    if want != out {
        for (i, (a, b)) in want.lines().zip(out.lines()).enumerate() {
            if a != b {
                panic!("golden mismatch at line {}:\n want: {a}\n  got: {b}", i + 1);
            }
        }
        panic!(
            "golden mismatch: {} lines expected, {} rendered",
            want.lines().count(),
            out.lines().count()
        );
    }
}
