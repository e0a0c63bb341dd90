//! `TunnelDecap`: the cloud side of a tunnel.

use super::{DecapError, TunnelMode, decapsulate, mode_from};
use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::{Element, ElementClass, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;

/// The cloud side of a tunnel: removes the tunnel's headers (see [`decapsulate`]).
///
/// # Ports
/// One push input; output 0 the inner packets, optional output 1 what is not this tunnel's (dropped if
/// not connected).
///
/// # Arguments
/// `MODE` (`ipip`, `gre`, `vxlan`), `VNI` (VXLAN: only this VNI; any if not given).
///
/// # Handlers
/// `decapsulated`, `other` (not this tunnel's), `malformed` (dropped).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 5, STOP true)
///       -> TunnelEncap(MODE vxlan, VNI 7, LOCAL 192.0.2.1, REMOTE 198.51.100.1)
///       -> d :: TunnelDecap(MODE vxlan, VNI 7) -> Discard;").unwrap();
/// assert_eq!(r.read_handler("d", "decapsulated").unwrap(), "5");
/// ```
#[derive(Debug, Clone)]
pub struct TunnelDecap {
    mode: TunnelMode,
    check_vni: bool,
    other_out: bool,
    counts: DecapCounts,
}

/// What a `TunnelDecap` did, one field per handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecapCounts {
    /// Inner packets delivered.
    pub decapsulated: u64,
    /// Packets that are not this tunnel's.
    pub other: u64,
    /// Tunnel packets that do not parse (dropped).
    pub malformed: u64,
}

const DECAP_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("decapsulated", "inner packets delivered"),
    HandlerSpec::read("other", "packets that are not this tunnel's"),
    HandlerSpec::read("malformed", "tunnel packets that do not parse (dropped)"),
];

impl TunnelDecap {
    /// Decapsulates `mode` (VXLAN: of any VNI unless `check_vni`).
    pub fn new(mode: TunnelMode, check_vni: bool) -> Self {
        TunnelDecap {
            mode,
            check_vni,
            other_out: false,
            counts: DecapCounts::default(),
        }
    }

    /// What it did so far.
    pub fn counts(&self) -> DecapCounts {
        self.counts
    }
}

impl Element for TunnelDecap {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::range(1, 2), "h/h")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        self.other_out = ctx.noutputs > 1;
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let (mode, check, other) = (self.mode, self.check_vni, self.other_out);
        let counts = &mut self.counts;
        batch.classify_to(out, |p| match decapsulate(p, mode, check) {
            Ok(()) => {
                counts.decapsulated += 1;
                Some(0)
            }
            Err(DecapError::NotTunnel) => {
                counts.other += 1;
                other.then_some(1)
            }
            Err(DecapError::Malformed(_)) => {
                counts.malformed += 1;
                None
            }
        });
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        DECAP_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        let c = &self.counts;
        let v = match name {
            "decapsulated" => c.decapsulated,
            "other" => c.other,
            "malformed" => c.malformed,
            _ => return None,
        };
        Some(v.to_string())
    }
}

impl ElementClass for TunnelDecap {
    const NAME: &'static str = "TunnelDecap";
    const DOC: &'static str = "APLOMB: removes IP-in-IP, GRE or VXLAN headers";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let (mode, check) = mode_from(a)?;
        Ok(TunnelDecap::new(mode, check))
    }
}
