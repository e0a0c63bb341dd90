//! The expression language of `IPClassifier` and `IPFilter` (tcpdump-like, as Click's).
//!
//! ```text
//! tcp                      udp dst port 53           src net 10.0.0.0/8
//! ip proto 47              icmp type 8               tcp dst port 80 and not src host 10.0.0.1
//! tcp syn                  tcp opt ack               (udp or icmp) && ip ttl < 5
//! dst port 1000-2000       ip6                       ip frag        true / false / -
//! ```
//! Juxtaposed terms are joined by `and`: `tcp src port 22 dst net 10.0.0.0/8`.

use crate::args::{FromArg, IpPrefix};
use crate::packet::proto;
use crate::wire::{Ipv4Packet, Ipv6Packet, TcpSegment, UdpDatagram};
use std::net::IpAddr;

/// Which address or port a test looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Source.
    Src,
    /// Destination.
    Dst,
    /// Either (the default).
    Either,
    /// Both.
    Both,
}

/// A comparison in `ip ttl > 5`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
}

impl Cmp {
    fn test(self, a: u32, b: u32) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Gt => a > b,
            Cmp::Le => a <= b,
            Cmp::Ge => a >= b,
        }
    }
}

/// A compiled expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// Always.
    True,
    /// Never.
    False,
    /// IP version 4 or 6.
    Version(u8),
    /// Transport protocol number.
    Proto(u8),
    /// Address in a prefix (a host is a full-length prefix).
    Net(Dir, IpPrefix),
    /// Port in a range; with a protocol, only for that protocol (else TCP or UDP).
    Port(Dir, Option<u8>, u16, u16),
    /// All the given TCP flag bits set.
    TcpFlags(u8),
    /// ICMP (or ICMPv6) type.
    IcmpType(u8),
    /// A fragment (`true`) or not.
    Frag(bool),
    /// TTL / hop limit comparison.
    Ttl(Cmp, u8),
    /// TOS / traffic class comparison.
    Tos(Cmp, u8),
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Not.
    Not(Box<Expr>),
}

/// The fields of one IP packet that expressions test, read once per packet.
#[derive(Clone, Copy, Debug, Default)]
pub struct View {
    /// 4 or 6.
    pub version: u8,
    /// Transport protocol.
    pub proto: u8,
    /// Source address (IPv4 in the low 32 bits).
    pub src: u128,
    /// Destination address (IPv4 in the low 32 bits).
    pub dst: u128,
    /// Ports, when the packet has a transport header with ports.
    pub ports: Option<(u16, u16)>,
    /// TCP flags byte.
    pub tcp_flags: u8,
    /// ICMP type.
    pub icmp_type: Option<u8>,
    /// A fragment.
    pub frag: bool,
    /// TTL or hop limit.
    pub ttl: u8,
    /// TOS or traffic class.
    pub tos: u8,
}

impl View {
    /// Reads what `needs` asks of the IP packet at `buf[l3..]`: for IPv4 without a need for the transport
    /// header, only fixed header fields are read. `None` if it is not an IP header.
    #[inline]
    pub fn parse_for(buf: &[u8], l3: usize, needs: Needs) -> Option<View> {
        if !needs.transport
            && let Some(ip) = buf.get(l3..l3 + 20)
            && ip[0] >> 4 == 4
        {
            // 20 bytes are there: the fixed header's accessors stay within them.
            let ip = Ipv4Packet::new_unchecked(ip);
            let mut v = View {
                version: 4,
                proto: ip.protocol(),
                ..View::default()
            };
            if needs.addresses {
                v.src = u128::from(u32::from(ip.src_addr()));
                v.dst = u128::from(u32::from(ip.dst_addr()));
            }
            if needs.ip_fields {
                v.ttl = ip.ttl();
                v.tos = ip.tos();
                v.frag = ip.is_fragment();
            }
            return Some(v);
        }
        Self::parse(buf, l3)
    }

    /// Reads the view of the IP packet at `buf[l3..]` (`None` if it is not a valid IP header).
    pub fn parse(buf: &[u8], l3: usize) -> Option<View> {
        let ip = buf.get(l3..)?;
        let v = *ip.first()? >> 4;
        let mut view = View::default();
        let (l4, proto, frag) = match v {
            4 => {
                let ip = match Ipv4Packet::new_checked(ip) {
                    Ok(ip) => ip,
                    // A total length under the header's is read as far as the header goes.
                    Err(crate::wire::Malformed::Field(_)) => Ipv4Packet::new_unchecked(ip),
                    Err(_) => return None,
                };
                view.src = u128::from(u32::from(ip.src_addr()));
                view.dst = u128::from(u32::from(ip.dst_addr()));
                view.ttl = ip.ttl();
                view.tos = ip.tos();
                let first = ip.frag_offset() == 0;
                (
                    first.then_some(ip.header_len()),
                    ip.protocol(),
                    ip.is_fragment(),
                )
            }
            6 => {
                let h = crate::packet::locate_ip(buf, l3).ok()?;
                let ip6 = Ipv6Packet::new_checked(ip).ok()?;
                view.src = u128::from(ip6.src_addr());
                view.dst = u128::from(ip6.dst_addr());
                view.ttl = ip6.hop_limit();
                view.tos = ip6.traffic_class();
                (h.l4.map(|o| o - l3), h.proto, h.fragment)
            }
            _ => return None,
        };
        view.version = v;
        view.proto = proto;
        view.frag = frag;
        if let Some(o) = l4 {
            let t = &ip[o.min(ip.len())..];
            match proto {
                proto::TCP if t.len() >= 14 => {
                    let tcp = TcpSegment::new_unchecked(t);
                    view.ports = Some((tcp.src_port(), tcp.dst_port()));
                    view.tcp_flags = tcp.flags();
                }
                proto::UDP if t.len() >= 4 => {
                    let udp = UdpDatagram::new_unchecked(t);
                    view.ports = Some((udp.src_port(), udp.dst_port()));
                }
                proto::ICMP | proto::ICMPV6 if !t.is_empty() => view.icmp_type = Some(t[0]),
                _ => {}
            }
        }
        Some(view)
    }
}

/// Which parts of a [`View`] an expression reads (so that packets are parsed no further than needed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Addresses.
    pub addresses: bool,
    /// Ports, TCP flags, ICMP type (the transport header).
    pub transport: bool,
    /// TTL, TOS, fragment bits.
    pub ip_fields: bool,
}

impl Needs {
    fn union(self, o: Needs) -> Needs {
        Needs {
            addresses: self.addresses || o.addresses,
            transport: self.transport || o.transport,
            ip_fields: self.ip_fields || o.ip_fields,
        }
    }
}

impl Expr {
    /// What the expression reads.
    pub fn needs(&self) -> Needs {
        match self {
            Expr::True | Expr::False | Expr::Version(_) | Expr::Proto(_) => Needs::default(),
            Expr::Net(..) => Needs {
                addresses: true,
                ..Needs::default()
            },
            Expr::Port(..) | Expr::TcpFlags(_) | Expr::IcmpType(_) => Needs {
                transport: true,
                ..Needs::default()
            },
            Expr::Frag(_) | Expr::Ttl(..) | Expr::Tos(..) => Needs {
                ip_fields: true,
                ..Needs::default()
            },
            Expr::And(a, b) | Expr::Or(a, b) => a.needs().union(b.needs()),
            Expr::Not(a) => a.needs(),
        }
    }

    /// Evaluates on a packet's view.
    #[inline]
    pub fn eval(&self, v: &View) -> bool {
        match self {
            Expr::True => true,
            Expr::False => false,
            Expr::Version(n) => v.version == *n,
            Expr::Proto(p) => v.proto == *p,
            Expr::Net(d, m) => {
                let v4 = v.version == 4;
                dir_test(*d, m.contains_bits(v4, v.src), m.contains_bits(v4, v.dst))
            }
            Expr::Port(d, p, lo, hi) => {
                let proto_ok = match p {
                    Some(p) => v.proto == *p,
                    None => v.proto == proto::TCP || v.proto == proto::UDP,
                };
                match v.ports {
                    Some((s, t)) if proto_ok => {
                        dir_test(*d, (*lo..=*hi).contains(&s), (*lo..=*hi).contains(&t))
                    }
                    _ => false,
                }
            }
            Expr::TcpFlags(m) => {
                v.proto == proto::TCP && v.ports.is_some() && v.tcp_flags & m == *m
            }
            Expr::IcmpType(t) => v.icmp_type == Some(*t),
            Expr::Frag(f) => v.frag == *f,
            Expr::Ttl(c, n) => c.test(u32::from(v.ttl), u32::from(*n)),
            Expr::Tos(c, n) => c.test(u32::from(v.tos), u32::from(*n)),
            Expr::And(a, b) => a.eval(v) && b.eval(v),
            Expr::Or(a, b) => a.eval(v) || b.eval(v),
            Expr::Not(a) => !a.eval(v),
        }
    }

    /// Parses an expression (`-` alone means "everything").
    pub fn parse(text: &str) -> Result<Expr, String> {
        let toks = tokenize(text)?;
        if toks.is_empty() {
            return Err("empty expression".into());
        }
        if toks.len() == 1 && toks[0] == "-" {
            return Ok(Expr::True);
        }
        let mut p = P {
            t: toks,
            i: 0,
            depth: 0,
            terms: 0,
        };
        let e = p.or()?;
        if p.i < p.t.len() {
            return Err(format!("unexpected `{}`", p.t[p.i]));
        }
        Ok(e)
    }
}

fn dir_test(d: Dir, s: bool, t: bool) -> bool {
    match d {
        Dir::Src => s,
        Dir::Dst => t,
        Dir::Either => s || t,
        Dir::Both => s && t,
    }
}

fn tokenize(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'(' || c == b')' {
            out.push((c as char).to_string());
            i += 1;
        } else if s[i..].starts_with("&&")
            || s[i..].starts_with("||")
            || s[i..].starts_with("!=")
            || s[i..].starts_with("<=")
            || s[i..].starts_with(">=")
        {
            out.push(s[i..i + 2].to_string());
            i += 2;
        } else if matches!(c, b'!' | b'<' | b'>' | b'=') {
            out.push((c as char).to_string());
            i += 1;
        } else {
            let st = i;
            while i < b.len()
                && !b[i].is_ascii_whitespace()
                && !matches!(b[i], b'(' | b')' | b'!' | b'<' | b'>' | b'=' | b'&' | b'|')
            {
                i += 1;
            }
            if i == st {
                return Err(format!("unexpected `{}`", &s[i..i + 1]));
            }
            out.push(s[st..i].to_string());
        }
    }
    Ok(out)
}

struct P {
    t: Vec<String>,
    i: usize,
    /// Parentheses and `not`s open now.
    depth: usize,
    /// Primitives read so far.
    terms: usize,
}

/// The deepest nesting of parentheses and `not`s an expression may have: the parser, evaluation and
/// dropping all recurse that deep.
pub const MAX_DEPTH: usize = 64;
/// The most primitives in one expression (`and`/`or` chains nest the tree that deep).
pub const MAX_TERMS: usize = 256;

fn proto_number(w: &str) -> Option<u8> {
    crate::wire::ip_proto::parse(w)
}

fn and(a: Expr, b: Expr) -> Expr {
    Expr::And(Box::new(a), Box::new(b))
}

impl P {
    fn peek(&self) -> Option<&str> {
        self.t.get(self.i).map(String::as_str)
    }
    fn next(&mut self) -> Option<String> {
        let t = self.t.get(self.i).cloned();
        self.i += 1;
        t
    }
    fn want(&mut self, what: &str) -> Result<String, String> {
        self.next()
            .ok_or_else(|| format!("expected {what} at the end of the expression"))
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while matches!(self.peek(), Some("or" | "||")) {
            self.i += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.not()?;
        loop {
            match self.peek() {
                Some("and" | "&&") => {
                    self.i += 1;
                    e = and(e, self.not()?);
                }
                Some("or" | "||" | ")") | None => return Ok(e),
                Some(_) => e = and(e, self.not()?),
            }
        }
    }

    fn not(&mut self) -> Result<Expr, String> {
        if matches!(self.peek(), Some("not" | "!" | "(")) {
            if self.depth >= MAX_DEPTH {
                return Err(format!(
                    "the expression nests more than {MAX_DEPTH} parentheses and `not`s"
                ));
            }
            self.depth += 1;
            let e = self.nested();
            self.depth -= 1;
            return e;
        }
        if self.terms >= MAX_TERMS {
            return Err(format!("the expression has more than {MAX_TERMS} terms"));
        }
        self.terms += 1;
        self.primitive()
    }

    fn nested(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some("not" | "!") => {
                self.i += 1;
                Ok(Expr::Not(Box::new(self.not()?)))
            }
            Some("(") => {
                self.i += 1;
                let e = self.or()?;
                match self.next().as_deref() {
                    Some(")") => Ok(e),
                    _ => Err("missing `)`".into()),
                }
            }
            _ => self.primitive(),
        }
    }

    fn cmp(&mut self) -> Result<(Cmp, u8), String> {
        let mut c = Cmp::Eq;
        if let Some(op) = self.peek() {
            let k = match op {
                "=" => Some(Cmp::Eq),
                "!=" => Some(Cmp::Ne),
                "<" => Some(Cmp::Lt),
                ">" => Some(Cmp::Gt),
                "<=" => Some(Cmp::Le),
                ">=" => Some(Cmp::Ge),
                _ => None,
            };
            if let Some(k) = k {
                c = k;
                self.i += 1;
            }
        }
        let v = self.want("a number")?;
        let n = u8::from_arg(&v).map_err(|_| format!("`{v}` is not a number from 0 to 255"))?;
        Ok((c, n))
    }

    fn dir(&mut self) -> Dir {
        let d = match self.peek() {
            Some("src") => Dir::Src,
            Some("dst") => Dir::Dst,
            _ => return Dir::Either,
        };
        self.i += 1;
        // `src or dst`, `src and dst`
        if matches!(self.peek(), Some("or" | "and"))
            && matches!(
                self.t.get(self.i + 1).map(String::as_str),
                Some("src" | "dst")
            )
        {
            let both = self.peek() == Some("and");
            self.i += 2;
            return if both { Dir::Both } else { Dir::Either };
        }
        d
    }

    fn port_range(&mut self) -> Result<(u16, u16), String> {
        let v = self.want("a port")?;
        let named = |w: &str| -> Option<u16> {
            Some(match w {
                "http" | "www" => 80,
                "https" => 443,
                "ssh" => 22,
                "dns" | "domain" => 53,
                "ntp" => 123,
                "telnet" => 23,
                "smtp" => 25,
                "ftp" => 21,
                n => n.parse().ok()?,
            })
        };
        match v.split_once('-') {
            Some((a, b)) => {
                let lo = named(a).ok_or_else(|| format!("`{a}` is not a port"))?;
                let hi = named(b).ok_or_else(|| format!("`{b}` is not a port"))?;
                if lo > hi {
                    return Err(format!("port range `{v}` is empty"));
                }
                Ok((lo, hi))
            }
            None => named(&v)
                .map(|p| (p, p))
                .ok_or_else(|| format!("`{v}` is not a port")),
        }
    }

    fn after_dir(&mut self, d: Dir, proto: Option<u8>) -> Result<Expr, String> {
        let kind = self.want("`host`, `net` or `port`")?;
        match kind.as_str() {
            "host" => {
                let v = self.want("an address")?;
                let a: IpAddr = v
                    .parse()
                    .map_err(|_| format!("`{v}` is not an IP address"))?;
                Ok(Expr::Net(d, IpPrefix::host(a)))
            }
            "net" => {
                let v = self.want("a prefix")?;
                let mut text = v.clone();
                if self.peek() == Some("mask") {
                    self.i += 1;
                    text = format!("{v}/{}", self.want("a netmask")?);
                }
                Ok(Expr::Net(d, IpPrefix::from_arg(&text)?))
            }
            "port" => {
                let (lo, hi) = self.port_range()?;
                Ok(Expr::Port(d, proto, lo, hi))
            }
            o => Err(format!("expected `host`, `net` or `port`, found `{o}`")),
        }
    }

    fn primitive(&mut self) -> Result<Expr, String> {
        let w = self.want("an expression")?;
        match w.as_str() {
            "true" | "any" | "all" | "-" => Ok(Expr::True),
            "false" | "none" => Ok(Expr::False),
            "ip6" => Ok(Expr::Version(6)),
            "ip" => match self.peek() {
                Some("proto") => {
                    self.i += 1;
                    let v = self.want("a protocol")?;
                    proto_number(&v)
                        .map(Expr::Proto)
                        .ok_or_else(|| format!("`{v}` is not a protocol"))
                }
                Some("vers") => {
                    self.i += 1;
                    let v = self.want("a version")?;
                    match v.as_str() {
                        "4" => Ok(Expr::Version(4)),
                        "6" => Ok(Expr::Version(6)),
                        _ => Err(format!("`{v}` is not an IP version")),
                    }
                }
                Some("ttl") | Some("hlim") => {
                    self.i += 1;
                    let (c, n) = self.cmp()?;
                    Ok(Expr::Ttl(c, n))
                }
                Some("tos") | Some("dscp") => {
                    self.i += 1;
                    let (c, n) = self.cmp()?;
                    Ok(Expr::Tos(c, n))
                }
                Some("frag") => {
                    self.i += 1;
                    Ok(Expr::Frag(true))
                }
                Some("unfrag") => {
                    self.i += 1;
                    Ok(Expr::Frag(false))
                }
                Some("src" | "dst" | "host" | "net") => {
                    let d = self.dir();
                    self.after_dir(d, None)
                }
                _ => Ok(Expr::Version(4)),
            },
            "src" | "dst" => {
                self.i -= 1;
                let d = self.dir();
                self.after_dir(d, None)
            }
            "host" | "net" | "port" => {
                self.i -= 1;
                self.after_dir(Dir::Either, None)
            }
            "proto" => {
                let v = self.want("a protocol")?;
                proto_number(&v)
                    .map(Expr::Proto)
                    .ok_or_else(|| format!("`{v}` is not a protocol"))
            }
            "tcp" | "udp" | "icmp" | "icmp6" | "icmpv6" | "gre" | "esp" | "ah" | "sctp" => {
                let p = proto_number(&w).ok_or("bad protocol")?;
                let base = Expr::Proto(p);
                match self.peek() {
                    Some("src" | "dst" | "port") if p == proto::TCP || p == proto::UDP => {
                        let d = self.dir();
                        Ok(and(base, self.after_dir(d, Some(p))?))
                    }
                    Some("opt") if p == proto::TCP => {
                        self.i += 1;
                        let f = self.want("a TCP flag")?;
                        Ok(and(base, Expr::TcpFlags(tcp_flag(&f)?)))
                    }
                    Some(f) if p == proto::TCP && tcp_flag(f).is_ok() => {
                        let m = tcp_flag(f)?;
                        self.i += 1;
                        Ok(and(base, Expr::TcpFlags(m)))
                    }
                    Some("type") if p == proto::ICMP || p == proto::ICMPV6 => {
                        self.i += 1;
                        let v = self.want("an ICMP type")?;
                        let t = match v.as_str() {
                            "echo" | "echo-request" => {
                                if p == proto::ICMP {
                                    8
                                } else {
                                    128
                                }
                            }
                            "echo-reply" => {
                                if p == proto::ICMP {
                                    0
                                } else {
                                    129
                                }
                            }
                            "unreachable" => {
                                if p == proto::ICMP {
                                    3
                                } else {
                                    1
                                }
                            }
                            "time-exceeded" => {
                                if p == proto::ICMP {
                                    11
                                } else {
                                    3
                                }
                            }
                            n => n
                                .parse()
                                .map_err(|_| format!("`{n}` is not an ICMP type"))?,
                        };
                        Ok(and(base, Expr::IcmpType(t)))
                    }
                    _ => Ok(base),
                }
            }
            o => Err(format!("unknown term `{o}`")),
        }
    }
}

fn tcp_flag(f: &str) -> Result<u8, String> {
    crate::wire::tcp_flags::parse(f).ok_or_else(|| format!("`{f}` is not a TCP flag"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(proto: u8, src: &str, sp: u16, dst: &str, dp: u16) -> View {
        let a = |s: &str| u128::from(u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()));
        View {
            version: 4,
            proto,
            src: a(src),
            dst: a(dst),
            ports: Some((sp, dp)),
            tcp_flags: 0x02,
            icmp_type: None,
            frag: false,
            ttl: 64,
            tos: 0,
        }
    }

    #[test]
    fn expressions() {
        let v = view(6, "10.1.2.3", 40000, "192.168.0.1", 80);
        let t = |s: &str| Expr::parse(s).unwrap().eval(&v);
        assert!(t("tcp"));
        assert!(!t("udp"));
        assert!(t("tcp dst port 80"));
        assert!(!t("tcp src port 80"));
        assert!(t("src net 10.0.0.0/8"));
        assert!(!t("dst net 10.0.0.0/8"));
        assert!(t("ip proto 6"));
        assert!(t("ip proto tcp and not udp"));
        assert!(t("udp or tcp syn"));
        assert!(!t("tcp ack"));
        assert!(t("tcp opt syn"));
        assert!(t("-"));
        assert!(t("src host 10.1.2.3 dst port 80"));
        assert!(t("port 80"));
        assert!(t("dst port 1-1024"));
        assert!(t("ip ttl > 5 && !(ip ttl = 3)"));
        assert!(t("(udp || tcp) && src or dst host 192.168.0.1"));
        assert!(!t("ip6"));
        for bad in [
            "",
            "tcp dst port",
            "src foo 1",
            "ip proto xyz",
            "(tcp",
            "tcp )",
            "dst port 9-1",
            "ip ttl > 300",
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad} should not parse");
        }
    }
}
