//! SIMPLE (Qazi et al., SIGCOMM'13): policy chains steered through middleboxes by switches, with a
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

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::{Element, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::elements::ip::expr::{Expr, View};
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

/// Adds the `ProcState` tag (a VLAN or MPLS header, or the annotation) with a fixed value.
///
/// # Arguments
/// `CARRIER` (`vlan`, `mpls` or `anno`), `TAG` (default 0).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 3, STOP true) -> TagPush(vlan, 5) -> c :: Classifier(12/8100 14/0006, -);
///     c[0] -> t :: Counter -> TagPop(vlan) -> Classifier(12/0800) -> u :: Counter -> Discard;
///     c[1] -> Discard;").unwrap();
/// assert_eq!(r.read_handler("t", "count").unwrap(), "3");
/// assert_eq!(r.read_handler("u", "count").unwrap(), "3");
/// ```
#[derive(Debug, Clone)]
pub struct TagPush {
    carrier: TagCarrier,
    tag: u16,
    dropped: u64,
}

impl TagPush {
    /// Pushes `tag` with `carrier`.
    pub fn new(carrier: TagCarrier, tag: u16) -> Self {
        TagPush {
            carrier,
            tag,
            dropped: 0,
        }
    }
}

const TAG_HANDLERS: &[HandlerSpec] = &[HandlerSpec::read("dropped", "packets too short for a tag")];

impl Element for TagPush {
    fn class_name(&self) -> &'static str {
        "TagPush"
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(1), "h/h")
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let (c, t) = (self.carrier, self.tag);
        let mut dropped = 0;
        batch.classify_to(out, |p| match c.push(p, t) {
            Ok(()) => Some(0),
            Err(_) => {
                dropped += 1;
                None
            }
        });
        self.dropped += dropped;
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        TAG_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        (name == "dropped").then(|| self.dropped.to_string())
    }
}

/// Removes the `ProcState` tag; packets without one pass unchanged.
///
/// # Arguments
/// `CARRIER` (`vlan`, `mpls` or `anno`).
#[derive(Debug, Clone)]
pub struct TagPop {
    carrier: TagCarrier,
}

impl TagPop {
    /// Pops tags of `carrier`.
    pub fn new(carrier: TagCarrier) -> Self {
        TagPop { carrier }
    }
}

impl Element for TagPop {
    fn class_name(&self) -> &'static str {
        "TagPop"
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(1), "h/h")
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let c = self.carrier;
        batch.map_to(out, 0, |p| {
            c.pop(p);
            true
        });
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
/// use nf_core::elements::simple::{PolicyChain, TagCarrier};
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

/// One switch of a SIMPLE deployment: forwards each packet by its traffic class and its `ProcState` tag to
/// the next middlebox of its chain (see [the module](self)), under a [`PolicyChain`] shared by all the
/// switches.
///
/// # Ports
/// Push inputs and outputs paired by number: a local middlebox is reached on output `k` and comes back on
/// input `k`; other inputs bring traffic from hosts and other switches. At least one of each.
///
/// # Arguments
/// `TAG` (the chains' default carrier: `vlan`, `mpls` or `anno`; default vlan); `HOP` (repeated: `HOP fw 1`
/// a local middlebox on port 1, `HOP ids VIA 3` one reached through port 3; every hop of the policy needs a
/// place); `CLASS` (repeated: `CLASS web tcp dst port 80 CHAIN fw ids proxy`, optionally ending
/// `TAG mpls` for this chain's carrier; first match wins); `EGRESS` (output after the chain, default 0);
/// `DEFAULT` (output of packets of no class, default EGRESS); `POP` (remove the tag at the end, default
/// true).
///
/// # Handlers
/// `steered` (packets sent to a hop), `finished` (chains completed here), `unclassified`, `misrouted`
/// (a packet back from a middlebox its chain did not send it to, dropped), `bad` (no IP header, a tag that
/// does not fit; dropped).
#[derive(Debug, Clone)]
pub struct PolicySwitch {
    policy: PolicyChain,
    /// Hop places, indexed like `policy.hop_names()`.
    places: Vec<HopPlace>,
    /// Each class's chain as indexes into `places`.
    chains: Vec<Vec<usize>>,
    /// Input port -> the local hop on it.
    local_at: Vec<Option<usize>>,
    egress: usize,
    default: usize,
    pop: bool,
    counts: [u64; 5],
}

impl PolicySwitch {
    /// A switch under `policy`, with the place of each hop seen from it, and egress output `egress`. Every
    /// hop the policy names needs a place.
    pub fn new(
        policy: PolicyChain,
        places: &[(&str, HopPlace)],
        egress: usize,
    ) -> Result<Self, String> {
        let names: Vec<String> = policy.hop_names().iter().map(|s| s.to_string()).collect();
        let mut at = Vec::with_capacity(names.len());
        for n in &names {
            let p = places
                .iter()
                .find(|(h, _)| h == n)
                .map(|(_, p)| *p)
                .ok_or_else(|| format!("no HOP for `{n}`: where is it from this switch?"))?;
            at.push(p);
        }
        if let Some((h, _)) = places.iter().find(|(h, _)| !names.iter().any(|n| n == h)) {
            return Err(format!("HOP `{h}` is in no chain"));
        }
        let chains = policy
            .classes
            .iter()
            .map(|c| {
                c.hops
                    .iter()
                    .map(|h| names.iter().position(|n| n == h).unwrap_or(0))
                    .collect()
            })
            .collect();
        let mut local_at = Vec::new();
        for (i, p) in at.iter().enumerate() {
            if let HopPlace::Local(port) = *p {
                if local_at.len() <= port {
                    local_at.resize(port + 1, None);
                }
                local_at[port] = Some(i);
            }
        }
        Ok(PolicySwitch {
            policy,
            places: at,
            chains,
            local_at,
            egress,
            default: egress,
            pop: true,
            counts: [0; 5],
        })
    }

    /// Where packets of no class go.
    pub fn default_port(mut self, port: usize) -> Self {
        self.default = port;
        self
    }

    /// Whether the tag is removed after the chain.
    pub fn pop_at_end(mut self, pop: bool) -> Self {
        self.pop = pop;
        self
    }

    fn max_port(&self) -> usize {
        let hop_max = self
            .places
            .iter()
            .map(|h| match h {
                HopPlace::Local(p) | HopPlace::Via(p) => *p,
            })
            .max()
            .unwrap_or(0);
        hop_max.max(self.egress).max(self.default)
    }

    fn steer(&mut self, port: usize, p: &mut Packet) -> Option<usize> {
        // Any tag header is skipped to classify; the class then says which carrier holds the tag.
        let l3 = p.data_offset() + TagCarrier::Vlan.l3(p);
        let Some(view) = View::parse(p.buffer(), l3) else {
            self.counts[4] += 1;
            return None;
        };
        let Some(c) = self.policy.classes.iter().position(|c| c.expr.eval(&view)) else {
            self.counts[2] += 1;
            return Some(self.default);
        };
        let carrier = self.policy.classes[c].carrier;
        let chain = &self.chains[c];
        let mut step = usize::from(carrier.read(p).unwrap_or(0));
        if let Some(Some(h)) = self.local_at.get(port) {
            // Back from a local middlebox: it must be the hop the tag says the packet was sent to.
            if chain.get(step) != Some(h) {
                self.counts[3] += 1;
                return None;
            }
            step += 1;
        }
        match chain.get(step) {
            None => {
                self.counts[1] += 1;
                if self.pop {
                    carrier.pop(p);
                } else if carrier.write(p, step as u16).is_err() {
                    self.counts[4] += 1;
                    return None;
                }
                Some(self.egress)
            }
            Some(&h) => {
                if carrier.write(p, step as u16).is_err() {
                    self.counts[4] += 1;
                    return None;
                }
                self.counts[0] += 1;
                Some(match self.places[h] {
                    HopPlace::Local(o) | HopPlace::Via(o) => o,
                })
            }
        }
    }
}

const SWITCH_HANDLERS: &[HandlerSpec] = &[
    HandlerSpec::read("steered", "packets sent to the next hop of their chain"),
    HandlerSpec::read("finished", "packets whose chain ended here"),
    HandlerSpec::read("unclassified", "packets of no class"),
    HandlerSpec::read(
        "misrouted",
        "packets back from a middlebox their chain did not send them to",
    ),
    HandlerSpec::read(
        "bad",
        "packets without an IP header or whose tag does not fit (dropped)",
    ),
];

impl Element for PolicySwitch {
    fn class_name(&self) -> &'static str {
        "PolicySwitch"
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::at_least(1), PortCount::at_least(1), "h/h")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        if self.max_port() >= ctx.noutputs {
            return Err(format!(
                "output {} is named but only {} are connected",
                self.max_port(),
                ctx.noutputs
            ));
        }
        Ok(())
    }
    fn push(&mut self, port: usize, batch: &mut Batch, out: &mut Outputs) {
        batch.classify_to(out, |p| self.steer(port, p));
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        SWITCH_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        let i = SWITCH_HANDLERS.iter().position(|h| h.name == name)?;
        Some(self.counts[i].to_string())
    }
}

fn carrier(a: &Args, s: &str) -> Result<TagCarrier, ConfigError> {
    s.parse().map_err(|e: String| a.error(e))
}

fn switch_from_args(a: &mut Args) -> Result<PolicySwitch, ConfigError> {
    let tag: String = a.read_or("TAG", "vlan".to_string())?;
    let default_carrier = carrier(a, &tag)?;
    let egress: usize = a.read_or("EGRESS", 0)?;
    let default: Option<usize> = a.read("DEFAULT")?;
    let pop: bool = a.read_or("POP", true)?;
    let mut places: Vec<(String, HopPlace)> = Vec::new();
    while let Some(h) = a.read::<String>("HOP")? {
        let w: Vec<&str> = h.split_whitespace().collect();
        let bad = || {
            a.error(format!(
                "HOP `{h}`: expected HOP NAME PORT or HOP NAME VIA PORT"
            ))
        };
        let (name, place) = match w.as_slice() {
            [n, p] => (*n, HopPlace::Local(p.parse().map_err(|_| bad())?)),
            [n, "VIA", p] => (*n, HopPlace::Via(p.parse().map_err(|_| bad())?)),
            _ => return Err(bad()),
        };
        if let HopPlace::Local(p) | HopPlace::Via(p) = place
            && p >= crate::element::MAX_PORTS
        {
            return Err(a.error(format!("HOP `{h}`: port {p} is out of range")));
        }
        places.push((name.to_string(), place));
    }
    let mut policy = PolicyChain::new();
    while let Some(c) = a.read::<String>("CLASS")? {
        let Some((head, chain)) = c.rsplit_once(" CHAIN ") else {
            return Err(a.error(format!(
                "CLASS `{c}`: expected CLASS NAME EXPRESSION CHAIN HOP... [TAG CARRIER]"
            )));
        };
        let (name, expr) = head
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| a.error(format!("CLASS `{c}`: a name and an expression")))?;
        let expr = Expr::parse(expr.trim()).map_err(|e| a.error(format!("CLASS {name}: {e}")))?;
        let (hops, class_carrier) = match chain.rsplit_once(" TAG ") {
            Some((h, t)) => (h, carrier(a, t.trim())?),
            None => (chain, default_carrier),
        };
        let hops: Vec<&str> = hops.split_whitespace().collect();
        policy
            .add(name, expr, &hops, class_carrier)
            .map_err(|e| a.error(e))?;
    }
    if policy.classes.is_empty() {
        return Err(a.error("at least one CLASS is needed"));
    }
    let refs: Vec<(&str, HopPlace)> = places.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    let mut sw = PolicySwitch::new(policy, &refs, egress)
        .map_err(|e| a.error(e))?
        .pop_at_end(pop);
    if let Some(d) = default {
        sw = sw.default_port(d);
    }
    Ok(sw)
}

/// Registers `PolicySwitch` (also as `PolicyChain`), `TagPush` and `TagPop`.
pub fn register(r: &mut crate::registry::Registry) {
    r.register(
        "PolicySwitch",
        "SIMPLE: steers packets through their class's chain of middleboxes by a ProcState tag",
        switch_from_args,
    );
    r.register(
        "PolicyChain",
        "SIMPLE: the same element as PolicySwitch, named after the policy it enforces",
        switch_from_args,
    );
    r.register(
        "TagPush",
        "adds a ProcState tag (VLAN, MPLS or annotation)",
        |a| {
            let c: String = a.read_mp("CARRIER")?;
            let c = carrier(a, &c)?;
            let tag: u16 = a.read_p_or("TAG", 0)?;
            if tag > c.max_tag() {
                return Err(a.error(format!(
                    "TAG {tag} does not fit in {c:?} (at most {})",
                    c.max_tag()
                )));
            }
            Ok(TagPush::new(c, tag))
        },
    );
    r.register("TagPop", "removes a ProcState tag", |a| {
        let c: String = a.read_mp("CARRIER")?;
        Ok(TagPop::new(carrier(a, &c)?))
    });
}
