//! `SetIPChecksum`: recomputes the IPv4 header checksum.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec};
use crate::error::ConfigError;
use crate::wire::Ipv4Packet;

/// Recomputes the IPv4 header checksum of each packet (at the network-header annotation, or the data
/// start). Packets without a complete IPv4 header are dropped and counted.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// None.
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
        Self::NAME
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let mut drops = 0;
        batch.map_to(out, 0, |p| {
            let l3 = p.anno.l3_offset().map_or(p.data_offset(), usize::from);
            let Some(ip) = p.buffer_mut().get_mut(l3..) else {
                drops += 1;
                return false;
            };
            // A header the view can hold (a total length shorter than the header is the next
            // element's to judge: only the header is summed).
            let fits = match Ipv4Packet::new_checked(&*ip) {
                Ok(_) | Err(crate::wire::Malformed::Field(_)) => true,
                Err(_) => false,
            };
            if !fits {
                drops += 1;
                return false;
            }
            Ipv4Packet::new_unchecked(ip).fill_checksum();
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

impl ElementClass for SetIPChecksum {
    const NAME: &'static str = "SetIPChecksum";
    const DOC: &'static str = "recomputes the IPv4 header checksum";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let _ = a;
        Ok(SetIPChecksum::new())
    }
}
