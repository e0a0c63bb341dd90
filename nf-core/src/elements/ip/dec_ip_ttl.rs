//! `DecIPTTL`: decrements the TTL.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::packet::{HeaderInfo, IpVersion, Link};

/// Decrements the IPv4 TTL (updating the header checksum incrementally) or the IPv6 hop limit. Packets
/// whose TTL is 1 or 0 on arrival are not forwarded: they leave on output 1 if it is connected (to build an
/// ICMP time-exceeded), else are dropped; both are counted.
///
/// Uses the network-header annotation (set by `CheckIPHeader`), or the data start if it is unset.
///
/// # Ports
/// One agnostic input; one or two agnostic outputs.
///
/// # Arguments
/// None.
///
/// # Handlers
/// `drops` (read): expired packets.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LIMIT 3, STOP true) -> Strip(14) -> CheckIPHeader -> t :: DecIPTTL -> CheckIPHeader -> Discard;").unwrap();
/// assert_eq!(r.read_handler("t", "drops").unwrap(), "0");
/// ```
#[derive(Debug, Clone, Default)]
pub struct DecIPTTL {
    has_expired_output: bool,
    drops: u64,
}

impl DecIPTTL {
    /// A `DecIPTTL`.
    pub fn new() -> Self {
        Self::default()
    }
}

const HANDLERS: &[HandlerSpec] = &[HandlerSpec::read("drops", "packets whose TTL expired")];

impl Element for DecIPTTL {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::range(1, 2), "a/ah")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        self.has_expired_output = ctx.noutputs > 1;
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let exp_out = self.has_expired_output;
        let mut drops = 0;
        batch.classify_to(out, |p| {
            let l3 = p.anno.l3_offset().map_or(p.data_offset(), usize::from);
            let Some(&first) = p.buffer().get(l3) else {
                drops += 1;
                return None;
            };
            let version = if first >> 4 == 6 {
                IpVersion::V6
            } else {
                IpVersion::V4
            };
            let h = HeaderInfo {
                version,
                l3,
                l4: None,
                proto: 0,
                fragment: false,
            };
            let ttl_at = if version == IpVersion::V4 {
                l3 + 8
            } else {
                l3 + 7
            };
            match p.buffer().get(ttl_at) {
                Some(&t) if t > 1 => match p.dec_ttl(&h) {
                    Ok(_) => Some(0),
                    Err(_) => {
                        drops += 1;
                        None
                    }
                },
                _ => {
                    drops += 1;
                    exp_out.then_some(1)
                }
            }
        });
        let _ = Link::Ip;
        self.drops += drops;
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        (name == "drops").then(|| self.drops.to_string())
    }
}

impl ElementClass for DecIPTTL {
    const NAME: &'static str = "DecIPTTL";
    const DOC: &'static str = "decrements the IPv4 TTL / IPv6 hop limit; expired to output 1";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let _ = a;
        Ok(DecIPTTL::new())
    }
}
