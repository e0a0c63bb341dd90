//! `IPMirror`: swaps a packet's source and destination (Click's `IPMirror`).

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::packet::Link;
use std::net::SocketAddr;

/// Swaps the source and destination addresses and ports of TCP and UDP packets (IPv4 or IPv6), as
/// Click's `IPMirror`: a packet becomes its own reply. Through the SDK's one endpoint rewrite, so the
/// checksums stay valid (a swap leaves their sums unchanged). Other packets pass unchanged, counted.
/// Test harnesses and benchmarks use it to answer a stateful element's output with its own replies
/// (`nf bench pipeline lb-mirror`, `nat-mirror`).
///
/// # Ports
/// One push input; one push output.
///
/// # Arguments
/// `LINK` (`ether` or `ip`, default ether).
///
/// # Handlers
/// `mirrored`, `passed` (read).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LIMIT 10, PROTO udp, STOP true) -> m :: IPMirror -> Discard;").unwrap();
/// assert_eq!(r.read_handler("m", "mirrored").unwrap(), "10");
/// ```
#[derive(Debug, Clone, Default)]
pub struct IPMirror {
    link: Link,
    mirrored: u64,
    passed: u64,
}

impl IPMirror {
    /// An `IPMirror` of Ethernet frames.
    pub fn new() -> Self {
        Self::default()
    }
    /// The link layer of the packets.
    pub fn link(mut self, l: Link) -> Self {
        self.link = l;
        self
    }
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read(
        "mirrored",
        "packets whose source and destination were swapped",
    ),
    HandlerSpec::read(
        "passed",
        "packets passed unchanged (not TCP or UDP over IP)",
    ),
];

impl Element for IPMirror {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(1), "h/h")
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let link = self.link;
        let (mut mirrored, mut passed) = (0, 0);
        for p in batch.iter_mut() {
            let swapped = p.locate_key(link).ok().and_then(|(h, k)| {
                let k = k?;
                let (src, dst) = (
                    SocketAddr::new(k.src(), k.src_port()),
                    SocketAddr::new(k.dst(), k.dst_port()),
                );
                p.set_src_endpoint(&h, dst).ok()?;
                p.set_dst_endpoint(&h, src).ok()
            });
            match swapped {
                Some(()) => mirrored += 1,
                None => passed += 1,
            }
        }
        self.mirrored += mirrored;
        self.passed += passed;
        out.port(0).append(batch);
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        Some(match name {
            "mirrored" => self.mirrored.to_string(),
            "passed" => self.passed.to_string(),
            _ => return None,
        })
    }
}

impl ElementClass for IPMirror {
    const NAME: &'static str = "IPMirror";
    const DOC: &'static str =
        "swaps the source and destination addresses and ports (a packet becomes its reply)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let link: String = a.read_or("LINK", "ether".to_string())?;
        let link = match link.as_str() {
            "ether" | "ethernet" => Link::Ethernet,
            "ip" => Link::Ip,
            o => return Err(a.error(format!("LINK must be ether or ip, not `{o}`"))),
        };
        Ok(IPMirror::new().link(link))
    }
}
