//! The IPClassifier expression language: parsing never panics; evaluation on any packet never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nf_core::elements::ip::expr::{Expr, View};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    if let Ok(text) = std::str::from_utf8(&data[..split]) {
        if let Ok(e) = Expr::parse(text) {
            if let Some(v) = View::parse(&data[split..], 0) {
                let _ = e.eval(&v);
            }
        }
    }
});
