//! Steering (SIMPLE, Qazi et al., SIGCOMM'13): policy chains steered through middleboxes by switches, with a
//! `ProcState` tag that tells a switch seeing a packet again which step of its chain the packet is at.
//!
//! * A *traffic class* is an IPClassifier expression; each class has an ordered chain of middlebox hops
//!   (`fw ids proxy`).
//! * A [`PolicyChain`] holds the classes and their chains; every switch is given the same one.
//! * The tag counts the hops a packet has completed. It travels in a VLAN ID (tag `t` is VLAN ID `t + 1`), an
//!   MPLS label (`16 + t`, bottom of stack) or the paint annotation (in-process chains), chosen per chain.
//! * [`PolicySwitch`] is one switch: a packet that comes back from a local middlebox (on that middlebox's
//!   port) has completed that hop, so its tag is incremented; then the packet goes to the next hop of its
//!   class's chain: out of the middlebox's port if the middlebox hangs off this switch, else out of the port
//!   towards the switch that has it. A chain may pass one switch several times (firewall and proxy on S1,
//!   the IDS on S2: S1, S2, S1); the tag tells the visits apart. After the last hop the tag is removed and
//!   the packet leaves on the egress port.
//! * [`TagPush`] and [`TagPop`] add and remove a tag where the switches do not.

mod policy_switch;
mod tag_pop;
mod tag_push;

pub use policy_switch::{PolicySwitch, SwitchCounts};
pub use tag_pop::TagPop;
pub use tag_push::TagPush;

use crate::args::Args;
use crate::elements::ip::expr::Expr;
use crate::error::ConfigError;
use crate::packet::{Packet, PacketError};
use crate::wire::{MplsLabel, VlanTag};

/// Where the `ProcState` tag travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagCarrier {
    /// An 802.1Q header after the MAC addresses; tag `t` is VLAN ID `t + 1` (at most 4093).
    Vlan,
    /// An MPLS label stack entry after the MAC addresses; tag `t` is label `16 + t`.
    Mpls,
    /// The paint annotation (`t` at most 255); for chains within one process.
    Annotation,
}

impl std::str::FromStr for TagCarrier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vlan" => Ok(TagCarrier::Vlan),
            "mpls" => Ok(TagCarrier::Mpls),
            "anno" | "annotation" | "paint" => Ok(TagCarrier::Annotation),
            o => Err(format!("a tag carrier is vlan, mpls or anno, not `{o}`")),
        }
    }
}

const ETH_VLAN: [u8; 2] = crate::wire::ethertype::VLAN.to_be_bytes();
const ETH_MPLS: [u8; 2] = crate::wire::ethertype::MPLS.to_be_bytes();

impl TagCarrier {
    /// The largest tag this carrier holds.
    pub fn max_tag(self) -> u16 {
        match self {
            TagCarrier::Vlan => 4093,
            TagCarrier::Mpls => 4096,
            TagCarrier::Annotation => 255,
        }
    }

    /// The packet's tag, if it carries one (the annotation always does).
    pub fn read(self, p: &Packet) -> Option<u16> {
        let d = p.data();
        match self {
            TagCarrier::Vlan if d.get(12..14) == Some(&ETH_VLAN) => {
                let tag = VlanTag::new_checked(d.get(14..)?).ok()?;
                tag.vid().checked_sub(1)
            }
            TagCarrier::Mpls if d.get(12..14) == Some(&ETH_MPLS) => {
                let label = MplsLabel::new_checked(d.get(14..)?).ok()?;
                (label.label() as u16).checked_sub(16)
            }
            TagCarrier::Annotation => Some(u16::from(p.anno.paint)),
            _ => None,
        }
    }

    /// Offset of the IP header in the data, after any tag of this carrier.
    pub fn l3(self, p: &Packet) -> usize {
        let d = p.data();
        match d.get(12..14) {
            Some(t) if t == ETH_VLAN => 18,
            Some(t) if t == ETH_MPLS => {
                // Labels until the bottom of the stack.
                let mut o = 14;
                while let Some(e) = d.get(o..o + 4) {
                    o += 4;
                    if MplsLabel::new_unchecked(e).bottom() {
                        break;
                    }
                }
                o
            }
            _ => 14,
        }
    }

    /// Sets the tag, adding the header if there is none.
    pub fn write(self, p: &mut Packet, tag: u16) -> Result<(), PacketError> {
        if tag > self.max_tag() {
            return Err(PacketError::Malformed(crate::packet::Malformed::Tag {
                tag,
                max: self.max_tag(),
            }));
        }
        if self.read(p).is_some() || self.present(p) {
            let d = p.data_mut();
            match self {
                TagCarrier::Vlan => {
                    let mut t = VlanTag::new_unchecked(&mut d[14..18]);
                    let (pcp, dei) = (t.pcp(), t.dei());
                    t.set_tci(pcp, dei, tag + 1);
                }
                TagCarrier::Mpls => {
                    let mut l = MplsLabel::new_unchecked(&mut d[14..18]);
                    let (tc, bottom, ttl) = (l.tc(), l.bottom(), l.ttl());
                    l.set(u32::from(tag) + 16, tc, bottom, ttl);
                }
                TagCarrier::Annotation => p.anno.paint = tag as u8,
            }
            return Ok(());
        }
        self.push(p, tag)
    }

    fn present(self, p: &Packet) -> bool {
        let t = p.data().get(12..14);
        match self {
            TagCarrier::Vlan => t == Some(&ETH_VLAN) && p.len() >= 18,
            TagCarrier::Mpls => t == Some(&ETH_MPLS) && p.len() >= 18,
            TagCarrier::Annotation => true,
        }
    }

    /// Adds a tag header in front of the packet's payload (after the MAC addresses).
    pub fn push(self, p: &mut Packet, tag: u16) -> Result<(), PacketError> {
        if tag > self.max_tag() {
            return Err(PacketError::Malformed(crate::packet::Malformed::Tag {
                tag,
                max: self.max_tag(),
            }));
        }
        if self == TagCarrier::Annotation {
            p.anno.paint = tag as u8;
            return Ok(());
        }
        if p.len() < 14 {
            return Err(PacketError::TooShort {
                need: 14,
                have: p.len(),
            });
        }
        let (ty, entry): ([u8; 2], [u8; 4]) = match self {
            TagCarrier::Vlan => {
                // 802.1Q: TPID, TCI (PCP 0, DEI 0, VID), then the original EtherType stays.
                let tci = (tag + 1).to_be_bytes();
                (ETH_VLAN, [tci[0], tci[1], 0, 0])
            }
            _ => {
                // MPLS replaces the EtherType: label, TC 0, bottom of stack, TTL 64.
                let e = (u32::from(tag) + 16) << 12 | 1 << 8 | 64;
                (ETH_MPLS, e.to_be_bytes())
            }
        };
        let original_type = [p.data()[12], p.data()[13]];
        p.push(4);
        let d = p.data_mut();
        d.copy_within(4..16, 0);
        d[12..14].copy_from_slice(&ty);
        match self {
            TagCarrier::Vlan => {
                d[14..16].copy_from_slice(&entry[..2]);
                d[16..18].copy_from_slice(&original_type);
            }
            _ => d[14..18].copy_from_slice(&entry),
        }
        Ok(())
    }

    /// Removes the tag header (the annotation is cleared); returns the tag it held.
    pub fn pop(self, p: &mut Packet) -> Option<u16> {
        let tag = self.read(p)?;
        match self {
            TagCarrier::Annotation => {
                p.anno.paint = 0;
                return Some(tag);
            }
            TagCarrier::Vlan => {
                let d = p.data_mut();
                // The original EtherType is at 16..18: MACs move 4 bytes towards it.
                d.copy_within(0..12, 4);
            }
            TagCarrier::Mpls => {
                let d = p.data_mut();
                // Only the bottom of the stack is popped to plain IP; the version nibble tells which.
                if d[16] & 1 == 0 {
                    d.copy_within(0..12, 4);
                    let _ = p.pull(4);
                    return Some(tag);
                }
                let ty = match d.get(18).map(|b| b >> 4) {
                    Some(6) => crate::wire::ethertype::IPV6,
                    _ => crate::wire::ethertype::IPV4,
                }
                .to_be_bytes();
                d.copy_within(0..12, 4);
                d[16..18].copy_from_slice(&ty);
            }
        }
        let _ = p.pull(4);
        Some(tag)
    }
}

/// Where a hop is, seen from one switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopPlace {
    /// The middlebox hangs off this switch: sent out of this port, and it comes back on the input of the
    /// same number.
    Local(usize),
    /// Elsewhere: sent out of this port towards the switch that has it.
    Via(usize),
}

/// A traffic class of a [`PolicyChain`]: which packets, their chain of middlebox hops (by name), and
/// where their tag travels.
#[derive(Clone, Debug)]
pub struct ChainClass {
    /// Its name.
    pub name: String,
    /// Which packets belong to it (an IPClassifier expression).
    pub expr: Expr,
    /// The middlebox hops, in order.
    pub hops: Vec<String>,
    /// Where the `ProcState` tag travels for this chain.
    pub carrier: TagCarrier,
}

/// SIMPLE's policy: traffic classes, first match wins, each mapped to an ordered chain of middlebox hops
/// and a tag carrier. One policy is given to every switch ([`PolicySwitch`]); each switch adds where the
/// hops are from where it stands.
///
/// ```
/// use nf_core::elements::steering::{PolicyChain, TagCarrier};
/// let p = PolicyChain::new()
///     .class("web", "tcp dst port 80", &["fw", "ids", "proxy"], TagCarrier::Vlan).unwrap()
///     .class("dns", "udp dst port 53", &["fw"], TagCarrier::Mpls).unwrap();
/// assert_eq!(p.classes().len(), 2);
/// assert_eq!(p.hop_names(), vec!["fw", "ids", "proxy"]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct PolicyChain {
    classes: Vec<ChainClass>,
}

impl PolicyChain {
    /// An empty policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a class (after the others: first match wins) with the chain `hops` and its tag in `carrier`.
    pub fn class(
        mut self,
        name: &str,
        expr: &str,
        hops: &[&str],
        carrier: TagCarrier,
    ) -> Result<Self, String> {
        let expr = Expr::parse(expr).map_err(|e| format!("class {name}: {e}"))?;
        self.add(name, expr, hops, carrier)?;
        Ok(self)
    }

    fn add(
        &mut self,
        name: &str,
        expr: Expr,
        hops: &[&str],
        carrier: TagCarrier,
    ) -> Result<(), String> {
        if hops.is_empty() {
            return Err(format!("class {name}: an empty chain"));
        }
        if hops.len() > usize::from(carrier.max_tag()) {
            return Err(format!(
                "class {name}: the chain is longer than a {carrier:?} tag can count"
            ));
        }
        self.classes.push(ChainClass {
            name: name.to_string(),
            expr,
            hops: hops.iter().map(|h| h.to_string()).collect(),
            carrier,
        });
        Ok(())
    }

    /// The classes, in order.
    pub fn classes(&self) -> &[ChainClass] {
        &self.classes
    }

    /// Every hop named by a chain, once, in order of first use.
    pub fn hop_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for h in self.classes.iter().flat_map(|c| c.hops.iter()) {
            if !v.contains(&h.as_str()) {
                v.push(h);
            }
        }
        v
    }
}

/// Reads a tag carrier (`vlan`, `mpls`, `anno`).
pub(crate) fn carrier(a: &Args, s: &str) -> Result<TagCarrier, ConfigError> {
    s.parse().map_err(|e: String| a.error(e))
}

/// Registers `PolicySwitch` (also as `PolicyChain`), `TagPush` and `TagPop`.
pub fn register(r: &mut crate::registry::Registry) {
    r.add::<PolicySwitch>();
    r.register(
        "PolicyChain",
        "SIMPLE: the same element as PolicySwitch, named after the policy it enforces",
        <PolicySwitch as crate::element::ElementClass>::configure,
    );
    r.add::<TagPush>();
    r.add::<TagPop>();
}
