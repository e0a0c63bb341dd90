//! The netfilter-log and conntrack-events extractors on any message: records or a typed error, never a
//! panic; every record they emit decodes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nf_drivers::syslog::extract::{self, EXTRACTORS};
use nf_drivers::syslog::{Emitter, parse};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let line = format!("<14>{text}");
    let Ok(m) = parse(&line) else { return };
    let mut out = Emitter::new(nf_state::Codec::Bincode, "fuzz");
    for name in EXTRACTORS {
        if let Some(mut x) = extract::by_name(name, None) {
            let _ = x.extract(&m, &mut out);
        }
    }
    for r in out.take() {
        nf_state::json_line(&r).expect("an emitted record decodes");
    }
    // The bare line parsers, on the raw text.
    let _ = extract::parse_netfilter(&text);
    let _ = extract::parse_conntrack_event(&text);
});
