//! `CheckIPHeader`: validates IPv4 headers.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;
use crate::packet::Packet;
use crate::wire::Ipv4Packet;

/// Why a header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadReason {
    /// Shorter than a header, or than the header length says.
    TooShort,
    /// Not version 4, or a header length under 20 bytes.
    BadVersionOrLength,
    /// The total length field is inconsistent with the header or the packet.
    BadTotalLength,
    /// The header checksum is wrong.
    BadChecksum,
    /// The source address is a broadcast or multicast address.
    BadSource,
}

/// Checks that each packet holds a valid IPv4 header at `OFFSET` bytes into its data: version, header
/// length, total length (the packet is trimmed to it, removing Ethernet padding), header checksum, and a
/// unicast source address. Good packets get their network- and transport-header annotations set and leave
/// on output 0. Bad ones leave on output 1 if it is connected (Click's optional second output), else are
/// dropped; both are counted by reason.
///
/// # Ports
/// One agnostic input; one or two agnostic outputs.
///
/// # Arguments
/// `OFFSET` (default 0); `CHECKSUM` (default true): verify the header checksum.
///
/// # Handlers
/// `drops` (read): bad packets; `drop_details` (read): the count per reason.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LIMIT 3, STOP true) -> Strip(14) -> c :: CheckIPHeader -> Discard;").unwrap();
/// assert_eq!(r.read_handler("c", "drops").unwrap(), "0");
/// ```
#[derive(Debug, Clone)]
pub struct CheckIPHeader {
    offset: usize,
    verify_checksum: bool,
    has_bad_output: bool,
    drops: [u64; 5],
}

impl CheckIPHeader {
    /// Checks headers `offset` bytes into the data.
    pub fn new(offset: usize, verify_checksum: bool) -> Self {
        CheckIPHeader {
            offset,
            verify_checksum,
            has_bad_output: false,
            drops: [0; 5],
        }
    }

    /// Checks one packet; on success sets its header annotations and trims padding.
    #[inline(always)]
    pub fn check(&self, p: &mut Packet) -> Result<(), BadReason> {
        let l3 = p.data_offset() + self.offset;
        let data = p.data();
        let bytes = data.get(self.offset..).ok_or(BadReason::TooShort)?;
        if bytes.len() < Ipv4Packet::<&[u8]>::MIN_HEADER_LEN {
            return Err(BadReason::TooShort);
        }
        let ip = Ipv4Packet::new_unchecked(bytes);
        let ihl = ip.header_len();
        if ip.version() != 4 || ihl < Ipv4Packet::<&[u8]>::MIN_HEADER_LEN {
            return Err(BadReason::BadVersionOrLength);
        }
        if bytes.len() < ihl {
            return Err(BadReason::TooShort);
        }
        let total = usize::from(ip.total_len());
        if total < ihl || total > bytes.len() {
            return Err(BadReason::BadTotalLength);
        }
        // Summed whether or not it is checked: ahead of the branch the sum costs fewer instructions than
        // behind it (BENCHMARKS.md, "The wire layer").
        let sum_ok = Ipv4Packet::new_unchecked(&bytes[..ihl]).verify_checksum();
        if self.verify_checksum && !sum_ok {
            return Err(BadReason::BadChecksum);
        }
        // Multicast first: one test of the first octet for nearly every packet, in place.
        let src = ip.src_octets();
        if src[0] & 0xf0 == 0xe0 || *src == [255; 4] {
            return Err(BadReason::BadSource);
        }
        let first_fragment = ip.is_first_fragment();
        p.truncate(self.offset + total);
        p.anno.set_l3_offset(u16::try_from(l3).ok());
        p.anno.set_l4_offset(if first_fragment {
            u16::try_from(l3 + ihl).ok()
        } else {
            None
        });
        Ok(())
    }
}

const HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("drops", "packets with a bad IPv4 header"),
    HandlerSpec::read("drop_details", "bad packets by reason"),
];

impl Element for CheckIPHeader {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::range(1, 2), "a/ah")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        self.has_bad_output = ctx.noutputs > 1;
        Ok(())
    }
    #[inline]
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let bad_out = self.has_bad_output;
        let mut drops = [0u64; 5];
        let this = &*self;
        batch.classify_to(
            out,
            #[inline(always)]
            |p| match this.check(p) {
                Ok(()) => Some(0),
                Err(r) => {
                    drops[r as usize] += 1;
                    bad_out.then_some(1)
                }
            },
        );
        for (d, n) in self.drops.iter_mut().zip(drops) {
            *d += n;
        }
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        match name {
            "drops" => Some(self.drops.iter().sum::<u64>().to_string()),
            "drop_details" => Some(format!(
                "too_short={} bad_version_or_length={} bad_total_length={} bad_checksum={} bad_source={}",
                self.drops[0], self.drops[1], self.drops[2], self.drops[3], self.drops[4]
            )),
            _ => None,
        }
    }
}

impl ElementClass for CheckIPHeader {
    const NAME: &'static str = "CheckIPHeader";
    const DOC: &'static str = "validates IPv4 headers; bad packets to output 1 or dropped";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let off = a.read_p_or("OFFSET", 0usize)?;
        let ck = a.read_or("CHECKSUM", true)?;
        Ok(CheckIPHeader::new(off, ck))
    }
}
