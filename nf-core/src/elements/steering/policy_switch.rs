//! `PolicySwitch`: one switch of a SIMPLE deployment.

use super::{HopPlace, PolicyChain, TagCarrier, carrier};
use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::{Element, ElementClass, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::elements::ip::expr::{Expr, View};
use crate::error::ConfigError;
use crate::packet::Packet;

/// One switch of a SIMPLE deployment: forwards each packet by its traffic class and its `ProcState` tag to
/// the next middlebox of its chain (see [the package](super)), under a [`PolicyChain`] shared by all the
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
///
/// # Example
/// ```
/// // Web traffic through a firewall on port 1, then out of egress port 0; other traffic straight out.
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 10, PROTO tcp, STOP true) -> s :: PolicySwitch(HOP fw 1, CLASS web tcp CHAIN fw);
///     s[1] -> fw :: Counter -> Queue -> Unqueue -> [1]s;
///     s[0] -> out :: Counter -> Discard;").unwrap();
/// assert_eq!(r.read_handler("fw", "count").unwrap(), "10");
/// assert_eq!(r.read_handler("s", "finished").unwrap(), "10");
/// assert_eq!(r.read_handler("out", "count").unwrap(), "10");
/// ```
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
    counts: SwitchCounts,
}

/// What a `PolicySwitch` did, one field per handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwitchCounts {
    /// Packets sent to the next hop of their chain.
    pub steered: u64,
    /// Packets whose chain ended here.
    pub finished: u64,
    /// Packets of no class.
    pub unclassified: u64,
    /// Packets back from a middlebox their chain did not send them to (dropped).
    pub misrouted: u64,
    /// Packets without an IP header or whose tag does not fit (dropped).
    pub bad: u64,
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
            counts: SwitchCounts::default(),
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
            self.counts.bad += 1;
            return None;
        };
        let Some(c) = self.policy.classes.iter().position(|c| c.expr.eval(&view)) else {
            self.counts.unclassified += 1;
            return Some(self.default);
        };
        let carrier = self.policy.classes[c].carrier;
        let chain = &self.chains[c];
        let mut step = usize::from(carrier.read(p).unwrap_or(0));
        if let Some(Some(h)) = self.local_at.get(port) {
            // Back from a local middlebox: it must be the hop the tag says the packet was sent to.
            if chain.get(step) != Some(h) {
                self.counts.misrouted += 1;
                return None;
            }
            step += 1;
        }
        match chain.get(step) {
            None => {
                self.counts.finished += 1;
                if self.pop {
                    carrier.pop(p);
                } else if carrier.write(p, step as u16).is_err() {
                    self.counts.bad += 1;
                    return None;
                }
                Some(self.egress)
            }
            Some(&h) => {
                if carrier.write(p, step as u16).is_err() {
                    self.counts.bad += 1;
                    return None;
                }
                self.counts.steered += 1;
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
        Self::NAME
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
        let c = &self.counts;
        let v = match name {
            "steered" => c.steered,
            "finished" => c.finished,
            "unclassified" => c.unclassified,
            "misrouted" => c.misrouted,
            "bad" => c.bad,
            _ => return None,
        };
        Some(v.to_string())
    }
}

impl ElementClass for PolicySwitch {
    const NAME: &'static str = "PolicySwitch";
    const DOC: &'static str =
        "SIMPLE: steers packets through their class's chain of middleboxes by a ProcState tag";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        configure_switch(a)
    }
}

fn configure_switch(a: &mut Args) -> Result<PolicySwitch, ConfigError> {
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
