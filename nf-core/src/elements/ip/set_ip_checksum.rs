//! `SetIPChecksum`: recomputes the IPv4 header checksum.

use crate::batch::{Batch, Outputs};
use crate::checksum;
use crate::element::{Element, HandlerSpec};

/// Recomputes the IPv4 header checksum of each packet (at the network-header annotation, or the data
/// start). Packets without a complete IPv4 header are dropped and counted.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Handlers
/// `drops` (read).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LIMIT 3, STOP true) -> Strip(14) -> SetIPChecksum -> c :: CheckIPHeader -> Discard;").unwrap();
/// assert_eq!(r.read_handler("c", "drops").unwrap(), "0");
/// ```
#[derive(Debug, Clone, Default)]
pub struct SetIPChecksum {
    drops: u64,
}

impl SetIPChecksum {
    /// A `SetIPChecksum`.
    pub fn new() -> Self {
        Self::default()
    }
}

const HANDLERS: &[HandlerSpec] = &[HandlerSpec::read(
    "drops",
    "packets without a complete IPv4 header",
)];

impl Element for SetIPChecksum {
    fn class_name(&self) -> &'static str {
        "SetIPChecksum"
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let mut drops = 0;
        batch.map_to(out, 0, |p| {
            let l3 = p.anno.l3_offset().map_or(p.data_offset(), usize::from);
            let buf = p.buffer_mut();
            let Some(&first) = buf.get(l3) else {
                drops += 1;
                return false;
            };
            let ihl = usize::from(first & 0xf) * 4;
            if first >> 4 != 4 || ihl < 20 || buf.len() < l3 + ihl {
                drops += 1;
                return false;
            }
            buf[l3 + 10] = 0;
            buf[l3 + 11] = 0;
            let c = checksum::checksum(&buf[l3..l3 + ihl]);
            buf[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            true
        });
        self.drops += drops;
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        (name == "drops").then(|| self.drops.to_string())
    }
}
