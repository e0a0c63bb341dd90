//! `IPClassifier` and `IPFilter`: tcpdump-like expressions over IP headers.

use super::expr::{Expr, Needs, View};
use crate::args::Args;
use crate::args::RawArg;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, PortCount, PortSpec};
use crate::error::ConfigError;

/// Sends each packet to the output of the first expression it matches (see [`expr`](super::expr) for the
/// language: `tcp dst port 80`, `src net 10.0.0.0/8`, `udp`, `icmp`, `ip proto 47`, `and`/`or`/`not`, and
/// `-` for everything). Packets that match none, or are not IP, are dropped and counted.
///
/// The IP header is found at the network-header annotation (set by `CheckIPHeader`), or at the data start.
///
/// # Ports
/// One push input; one push output per expression.
///
/// # Arguments
/// The expressions, one per output, in order (positional). As `IPFilter`: rules `allow EXPR`,
/// `deny EXPR` (or `drop EXPR`) or `N EXPR` (to output `N`), first match wins.
///
/// # Handlers
/// `dropped` (read).
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 10, FLOWS 10, PROTO mixed, STOP true) -> Strip(14) -> CheckIPHeader
///       -> c :: IPClassifier(tcp, udp, -);
///     c[0] -> t :: Counter -> Discard; c[1] -> u :: Counter -> Discard; c[2] -> Discard;").unwrap();
/// assert_eq!(r.read_handler("t", "count").unwrap(), "5");
/// assert_eq!(r.read_handler("u", "count").unwrap(), "5");
/// ```
#[derive(Debug, Clone)]
pub struct IPClassifier {
    exprs: Vec<Expr>,
    needs: Needs,
    outputs: Vec<Option<usize>>,
    filter: bool,
    dropped: u64,
    /// When every expression reads only the IP version and protocol (`tcp`, `udp`, `icmp`, `-` and their
    /// combinations): the output for each IPv4 protocol number, worked out once ([`NO_OUTPUT`]: drop), so
    /// that an IPv4 packet costs one load (Click compiles its classifiers likewise).
    by_proto_v4: Option<Box<[u16; 256]>>,
}

/// The drop entry of `IPClassifier`'s per-protocol table.
const NO_OUTPUT: u16 = u16::MAX;

impl IPClassifier {
    /// A classifier from expressions (output `i` for expression `i`).
    pub fn new(exprs: &[&str]) -> Result<Self, String> {
        let exprs: Vec<Expr> = exprs
            .iter()
            .map(|e| Expr::parse(e))
            .collect::<Result<_, _>>()?;
        let outputs = (0..exprs.len()).map(Some).collect();
        Ok(IPClassifier::build(exprs, outputs, false))
    }

    pub(crate) fn from_raw(args: &Args, raw: Vec<RawArg>) -> Result<Self, ConfigError> {
        if raw.is_empty() {
            return Err(args.error("needs at least one expression"));
        }
        let mut exprs = Vec::new();
        for r in raw {
            exprs.push(
                Expr::parse(&r.text)
                    .map_err(|e| args.error_at(r.span, format!("bad expression: {e}")))?,
            );
        }
        let outputs = (0..exprs.len()).map(Some).collect();
        Ok(IPClassifier::build(exprs, outputs, false))
    }

    /// An `IPFilter` from its rules (`allow EXPR`, `deny EXPR`, `drop EXPR`, `N EXPR`).
    pub(crate) fn filter_from_raw(args: &Args, raw: Vec<RawArg>) -> Result<Self, ConfigError> {
        if raw.is_empty() {
            return Err(args.error("needs at least one rule"));
        }
        let mut exprs = Vec::new();
        let mut outputs = Vec::new();
        for r in raw {
            let t = r.text.trim();
            let (action, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
            let out = match action.to_ascii_lowercase().as_str() {
                "allow" | "accept" => Some(0),
                "deny" | "drop" | "reject" => None,
                n => Some(n.parse::<usize>().map_err(|_| {
                    args.error_at(
                        r.span,
                        format!("rule `{t}` must start with allow, deny, drop or an output number"),
                    )
                })?),
            };
            let e = Expr::parse(rest)
                .map_err(|e| args.error_at(r.span, format!("bad expression: {e}")))?;
            exprs.push(e);
            outputs.push(out);
        }
        Ok(IPClassifier::build(exprs, outputs, true))
    }

    fn build(exprs: Vec<Expr>, outputs: Vec<Option<usize>>, filter: bool) -> Self {
        let needs = exprs.iter().fold(Needs::default(), |n, e| {
            let m = e.needs();
            Needs {
                addresses: n.addresses || m.addresses,
                transport: n.transport || m.transport,
                ip_fields: n.ip_fields || m.ip_fields,
            }
        });
        let mut c = IPClassifier {
            exprs,
            needs,
            outputs,
            filter,
            dropped: 0,
            by_proto_v4: None,
        };
        if needs == Needs::default()
            && c.outputs
                .iter()
                .flatten()
                .all(|&o| o < usize::from(NO_OUTPUT))
        {
            let mut t = Box::new([NO_OUTPUT; 256]);
            for (proto, out) in t.iter_mut().enumerate() {
                let v = View {
                    version: 4,
                    proto: proto as u8,
                    ..View::default()
                };
                if let Some(o) = c.classify(&v) {
                    *out = o as u16;
                }
            }
            c.by_proto_v4 = Some(t);
        }
        c
    }

    /// The output for a packet's view (`None`: drop).
    #[inline]
    pub fn classify(&self, v: &View) -> Option<usize> {
        // The commonest leaves (`tcp`, `udp`, `-`) are tested here without the general evaluator's call.
        let i = self.exprs.iter().position(|e| match e {
            Expr::Proto(p) => v.proto == *p,
            Expr::True => true,
            e => e.eval(v),
        })?;
        self.outputs.get(i).copied().flatten()
    }
}

const HANDLERS: &[HandlerSpec] = &[HandlerSpec::read(
    "dropped",
    "packets that matched nothing (or were denied)",
)];

impl Element for IPClassifier {
    fn class_name(&self) -> &'static str {
        if self.filter {
            "IPFilter"
        } else {
            "IPClassifier"
        }
    }
    fn ports(&self) -> PortSpec {
        let n = if self.filter {
            self.outputs.iter().flatten().max().map_or(1, |m| m + 1)
        } else {
            self.exprs.len()
        };
        let outs = if self.filter {
            PortCount::range(1, n)
        } else {
            PortCount::exactly(n)
        };
        PortSpec::new(PortCount::exactly(1), outs, "h/h")
    }
    #[inline]
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let mut dropped = 0;
        let this = &*self;
        if let Some(t) = &self.by_proto_v4 {
            batch.classify_to(
                out,
                #[inline(always)]
                |p| {
                    let l3 = p.anno.l3_offset().map_or(p.data_offset(), usize::from);
                    let b = p.buffer();
                    // The same test as `View::parse_for`'s IPv4 path: a whole header, version 4.
                    let r = match b.get(l3..l3 + 20) {
                        Some(ip) if ip[0] >> 4 == 4 => match t[usize::from(ip[9])] {
                            NO_OUTPUT => None,
                            o => Some(usize::from(o)),
                        },
                        _ => View::parse_for(b, l3, this.needs).and_then(|v| this.classify(&v)),
                    };
                    dropped += u64::from(r.is_none());
                    r
                },
            );
            self.dropped += dropped;
            return;
        }
        batch.classify_to(out, |p| {
            let l3 = p.anno.l3_offset().map_or(p.data_offset(), usize::from);
            let r = View::parse_for(p.buffer(), l3, this.needs).and_then(|v| this.classify(&v));
            dropped += u64::from(r.is_none());
            r
        });
        self.dropped += dropped;
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        (name == "dropped").then(|| self.dropped.to_string())
    }
}

impl ElementClass for IPClassifier {
    const NAME: &'static str = "IPClassifier";
    const DOC: &'static str = "classifies IP packets by tcpdump-like expressions";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let raw = a.rest_raw();
        IPClassifier::from_raw(a, raw)
    }
}

/// Makes an `IPFilter` (an `IPClassifier` whose rules say `allow`, `deny` or `N` and an expression).
pub fn configure_filter(a: &mut Args) -> Result<IPClassifier, ConfigError> {
    let raw = a.rest_raw();
    IPClassifier::filter_from_raw(a, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-protocol table gives what the evaluator gives, for every protocol number.
    #[test]
    fn the_protocol_table_agrees_with_the_evaluator() {
        let sets: &[&[&str]] = &[
            &["tcp", "udp", "-"],
            &["not tcp", "-"],
            &["icmp or udp", "ip6", "tcp and not udp"],
            &["ip", "-"],
            &["false", "proto 47"],
        ];
        for exprs in sets {
            let c = IPClassifier::new(exprs).unwrap();
            let t = c
                .by_proto_v4
                .as_ref()
                .expect("a protocol-only classifier has a table");
            for proto in 0..=255u8 {
                let v = View {
                    version: 4,
                    proto,
                    ..View::default()
                };
                let want = c.classify(&v).map_or(NO_OUTPUT, |o| o as u16);
                assert_eq!(t[usize::from(proto)], want, "{exprs:?} proto {proto}");
            }
        }
        // Expressions that read more than the protocol keep the general evaluator.
        assert!(
            IPClassifier::new(&["tcp port 80", "-"])
                .unwrap()
                .by_proto_v4
                .is_none()
        );
        assert!(
            IPClassifier::new(&["src net 10.0.0.0/8", "-"])
                .unwrap()
                .by_proto_v4
                .is_none()
        );
    }
}
