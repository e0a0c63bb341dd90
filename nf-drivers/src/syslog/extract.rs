//! Extractors: from a parsed syslog [`Message`] to state records. Two come built in, chosen by name
//! ([`by_name`]): `netfilter-log` (the kernel LOG target's key=value lines) and `conntrack-events` (lines
//! of `conntrack -E -o timestamp,extended`). A user adds one with one impl of [`Extractor`]:
//!
//! ```
//! use nf_drivers::syslog::{Emitter, ExtractError, Extractor, Message};
//! use nf_state::schemas::{FlowMapping, FlowMappingKey, FlowMappingValue, Proto};
//!
//! /// `lb: client 10.0.0.5:40808 -> backend 10.1.0.3:80` messages of a home-made balancer (tag `lb`).
//! struct MyBalancer;
//!
//! impl Extractor for MyBalancer {
//!     fn name(&self) -> &str { "my-balancer" }
//!     fn extract(&mut self, m: &Message<'_>, out: &mut Emitter) -> Result<(), ExtractError> {
//!         if m.app_name != Some("lb") { return Ok(()) } // not ours
//!         let Some(rest) = m.msg.strip_prefix("client ") else { return Ok(()) };
//!         let (client, backend) = rest.split_once(" -> backend ").ok_or(ExtractError::Missing("backend"))?;
//!         let bad = |_| ExtractError::Malformed { field: "address", value: rest.into() };
//!         let (c, b): (std::net::SocketAddr, std::net::SocketAddr) =
//!             (client.parse().map_err(bad)?, backend.parse().map_err(bad)?);
//!         out.upsert::<FlowMapping>(
//!             &FlowMappingKey { proto: Proto::Tcp, client_ip: c.ip(), client_port: c.port() },
//!             &FlowMappingValue { backend_ip: b.ip(), backend_port: b.port() },
//!         )
//!     }
//! }
//! ```

use super::message::Message;
use nf_state::schema::Schema;
use nf_state::schemas::{
    ConnState, Conntrack, ConntrackValue, FiveTuple, FlowMapping, FlowMappingKey, FlowMappingValue,
    NatBinding, NatBindingKey, NatBindingValue, Proto,
};
use nf_state::{Codec, Record};
use std::net::IpAddr;

/// Why a message an extractor recognised could not be turned into state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// A field the record needs is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field does not hold what it should.
    #[error("malformed {field}: `{value}`")]
    Malformed {
        /// The field.
        field: &'static str,
        /// What it held (at most 64 bytes of it).
        value: String,
    },
    /// The record could not be encoded.
    #[error("encoding: {0}")]
    Encode(#[from] nf_state::Error),
}

fn malformed(field: &'static str, value: &str) -> ExtractError {
    let mut end = value.len().min(64);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    ExtractError::Malformed {
        field,
        value: value[..end].to_string(),
    }
}

/// Where an extractor puts its records.
#[derive(Debug)]
pub struct Emitter {
    codec: Codec,
    origin: String,
    records: Vec<Record>,
}

impl Emitter {
    /// An emitter writing keys and values with `codec`, records from `origin`.
    pub fn new(codec: Codec, origin: impl Into<String>) -> Emitter {
        Emitter {
            codec,
            origin: origin.into(),
            records: Vec::new(),
        }
    }
    /// Emits an upsert.
    pub fn upsert<S: Schema>(
        &mut self,
        key: &S::Key,
        value: &S::Value,
    ) -> Result<(), ExtractError> {
        self.records
            .push(Record::upsert::<S>(self.codec, &self.origin, key, value)?);
        Ok(())
    }
    /// Emits a delete.
    pub fn delete<S: Schema>(&mut self, key: &S::Key) -> Result<(), ExtractError> {
        self.records
            .push(Record::delete::<S>(self.codec, &self.origin, key)?);
        Ok(())
    }
    /// Dates the records emitted from index `from` on back by `by` (their change happened that long
    /// before they were made: a kernel record's delay on its way to the driver).
    pub(crate) fn backdate(&mut self, from: usize, by: std::time::Duration) {
        let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        for r in self.records.iter_mut().skip(from) {
            r.time = r.time.saturating_sub(ns);
        }
    }
    /// Records emitted so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }
    /// True if nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    /// Takes the records emitted so far.
    pub fn take(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
    }
    /// Forgets the records emitted so far (keeping the allocation).
    pub fn clear(&mut self) {
        self.records.clear();
    }
}

/// Turns messages into records. Returning `Ok` without emitting means "not mine" (counted as ignored).
pub trait Extractor: Send {
    /// The name it is chosen by.
    fn name(&self) -> &str;
    /// Emits the records that `msg` implies.
    fn extract(&mut self, msg: &Message<'_>, out: &mut Emitter) -> Result<(), ExtractError>;
}

/// The built-in extractors' names.
pub const EXTRACTORS: [&str; 2] = ["netfilter-log", "conntrack-events"];

/// A built-in extractor by name; `prefix` filters `netfilter-log` lines by their LOG prefix.
pub fn by_name(name: &str, prefix: Option<&str>) -> Option<Box<dyn Extractor>> {
    match name {
        "netfilter-log" => Some(Box::new(NetfilterLog::new(prefix.map(str::to_string)))),
        "conntrack-events" => Some(Box::new(ConntrackEvents)),
        _ => None,
    }
}

/// TCP flags and IP flags a LOG line may carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogFlags {
    /// `SYN`.
    pub syn: bool,
    /// `ACK`.
    pub ack: bool,
    /// `FIN`.
    pub fin: bool,
    /// `RST`.
    pub rst: bool,
    /// `PSH`.
    pub psh: bool,
    /// `URG`.
    pub urg: bool,
    /// `DF` (don't fragment).
    pub df: bool,
}

/// One netfilter LOG line, parsed: `PREFIX IN= OUT= MAC= SRC= DST= LEN= ... PROTO= SPT= DPT= ... FLAGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetfilterLine<'a> {
    /// The LOG prefix (trimmed; a kernel timestamp `[ 12.345]` removed).
    pub prefix: &'a str,
    /// Input interface (empty for locally generated packets).
    pub in_if: &'a str,
    /// Output interface (empty for packets delivered locally).
    pub out_if: &'a str,
    /// `MAC=` (empty when absent).
    pub mac: &'a str,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// `PROTO=` as written (`TCP`, `UDP`, `ICMP`, `ICMPv6`, a number).
    pub proto: &'a str,
    /// Source port (TCP, UDP, SCTP...).
    pub spt: Option<u16>,
    /// Destination port.
    pub dpt: Option<u16>,
    /// ICMP type.
    pub icmp_type: Option<u8>,
    /// ICMP code.
    pub icmp_code: Option<u8>,
    /// `MARK=` (hex).
    pub mark: Option<u32>,
    /// Flags.
    pub flags: LogFlags,
}

impl NetfilterLine<'_> {
    /// The protocol as the schemas write it.
    pub fn protocol(&self) -> Proto {
        match self.proto {
            "TCP" => Proto::Tcp,
            "UDP" | "UDPLITE" => Proto::Udp,
            "ICMP" | "ICMPv6" => Proto::Icmp,
            n => n.parse().map(Proto::from_number).unwrap_or(Proto::Other(0)),
        }
    }
}

/// Parses a LOG line. `Ok(None)`: not a LOG line (no `IN=`).
pub fn parse_netfilter(msg: &str) -> Result<Option<NetfilterLine<'_>>, ExtractError> {
    let Some(at) = msg.find("IN=") else {
        return Ok(None);
    };
    let mut prefix = msg[..at].trim();
    // A kernel timestamp ahead of the prefix (`[ 1234.567890] `), as dmesg and some relays write it.
    if let Some(r) = prefix.strip_prefix('[')
        && let Some(close) = r.find(']')
        && r[..close]
            .trim()
            .bytes()
            .all(|c| c.is_ascii_digit() || c == b'.')
    {
        prefix = r[close + 1..].trim_start();
    }
    let mut line = NetfilterLine {
        prefix,
        in_if: "",
        out_if: "",
        mac: "",
        src: IpAddr::from([0, 0, 0, 0]),
        dst: IpAddr::from([0, 0, 0, 0]),
        proto: "",
        spt: None,
        dpt: None,
        icmp_type: None,
        icmp_code: None,
        mark: None,
        flags: LogFlags::default(),
    };
    let (mut src, mut dst) = (None, None);
    let mut depth = 0usize;
    for tok in msg[at..].split(' ') {
        if tok.is_empty() {
            continue;
        }
        // The packet quoted inside an ICMP error: `[SRC=... DST=... ]`, skipped.
        if depth > 0 || tok.starts_with('[') {
            depth += tok.bytes().filter(|&c| c == b'[').count();
            depth = depth.saturating_sub(tok.bytes().filter(|&c| c == b']').count());
            continue;
        }
        let Some((k, v)) = tok.split_once('=') else {
            match tok {
                "SYN" => line.flags.syn = true,
                "ACK" => line.flags.ack = true,
                "FIN" => line.flags.fin = true,
                "RST" => line.flags.rst = true,
                "PSH" => line.flags.psh = true,
                "URG" => line.flags.urg = true,
                "DF" => line.flags.df = true,
                _ => {}
            }
            continue;
        };
        match k {
            "IN" => line.in_if = v,
            "OUT" => line.out_if = v,
            "MAC" => line.mac = v,
            "SRC" => src = Some(v.parse().map_err(|_| malformed("SRC", v))?),
            "DST" => dst = Some(v.parse().map_err(|_| malformed("DST", v))?),
            "PROTO" => line.proto = v,
            "SPT" => line.spt = Some(v.parse().map_err(|_| malformed("SPT", v))?),
            "DPT" => line.dpt = Some(v.parse().map_err(|_| malformed("DPT", v))?),
            "TYPE" => line.icmp_type = Some(v.parse().map_err(|_| malformed("TYPE", v))?),
            "CODE" => line.icmp_code = Some(v.parse().map_err(|_| malformed("CODE", v))?),
            "MARK" => {
                let h = v.trim_start_matches("0x");
                line.mark = Some(u32::from_str_radix(h, 16).map_err(|_| malformed("MARK", v))?);
            }
            _ => {}
        }
    }
    line.src = src.ok_or(ExtractError::Missing("SRC"))?;
    line.dst = dst.ok_or(ExtractError::Missing("DST"))?;
    if line.proto.is_empty() {
        return Err(ExtractError::Missing("PROTO"));
    }
    Ok(Some(line))
}

/// `netfilter-log`: LOG lines of a DNAT load balancer's FORWARD chain (`--ctstate NEW`) become
/// `flow-mapping` records: the packet has already been translated, so `SRC:SPT` is the client and
/// `DST:DPT` the backend it was sent to. Lines whose prefix does not start with the filter are ignored, as
/// are lines without ports (ICMP).
#[derive(Debug, Clone, Default)]
pub struct NetfilterLog {
    prefix: Option<String>,
}

impl NetfilterLog {
    /// An extractor keeping lines whose LOG prefix starts with `prefix` (all lines: `None`).
    pub fn new(prefix: Option<String>) -> NetfilterLog {
        NetfilterLog { prefix }
    }
}

impl Extractor for NetfilterLog {
    fn name(&self) -> &str {
        "netfilter-log"
    }
    fn extract(&mut self, msg: &Message<'_>, out: &mut Emitter) -> Result<(), ExtractError> {
        let Some(l) = parse_netfilter(msg.msg)? else {
            return Ok(());
        };
        if let Some(p) = &self.prefix
            && !l.prefix.starts_with(p.as_str())
        {
            return Ok(());
        }
        let (Some(spt), Some(dpt)) = (l.spt, l.dpt) else {
            return Ok(());
        };
        out.upsert::<FlowMapping>(
            &FlowMappingKey {
                proto: l.protocol(),
                client_ip: l.src,
                client_port: spt,
            },
            &FlowMappingValue {
                backend_ip: l.dst,
                backend_port: dpt,
            },
        )
    }
}

/// The kind of a conntrack event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `[NEW]`.
    New,
    /// `[UPDATE]`.
    Update,
    /// `[DESTROY]`.
    Destroy,
}

/// One side of a conntrack entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (ICMP: the id).
    pub sport: u16,
    /// Destination port (ICMP: 0).
    pub dport: u16,
    /// Packets (with accounting on).
    pub packets: u64,
    /// Bytes (with accounting on).
    pub bytes: u64,
}

/// One line of `conntrack -E [-o timestamp,extended]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackEvent<'a> {
    /// NEW, UPDATE or DESTROY.
    pub kind: EventKind,
    /// The protocol.
    pub proto: Proto,
    /// Timeout in seconds (absent on DESTROY).
    pub timeout: Option<u32>,
    /// TCP state (`ESTABLISHED`), if any.
    pub state: Option<&'a str>,
    /// The original direction.
    pub original: Tuple,
    /// The reply direction.
    pub reply: Tuple,
    /// `[ASSURED]` seen.
    pub assured: bool,
    /// `[UNREPLIED]` seen.
    pub unreplied: bool,
}

/// Parses a conntrack event line. `Ok(None)`: not an event line.
pub fn parse_conntrack_event(line: &str) -> Result<Option<ConntrackEvent<'_>>, ExtractError> {
    let mut toks = line.split_ascii_whitespace().peekable();
    // `[1700000000.123456]` (with `-o timestamp`).
    if toks
        .peek()
        .is_some_and(|t| t.starts_with('[') && t.as_bytes().get(1).is_some_and(u8::is_ascii_digit))
    {
        toks.next();
    }
    let kind = match toks.next() {
        Some("[NEW]") => EventKind::New,
        Some("[UPDATE]") => EventKind::Update,
        Some("[DESTROY]") => EventKind::Destroy,
        _ => return Ok(None),
    };
    // `ipv4 2` (with `-o extended`).
    if toks.peek().is_some_and(|t| *t == "ipv4" || *t == "ipv6") {
        toks.next();
        toks.next();
    }
    toks.next().ok_or(ExtractError::Missing("protocol"))?;
    let num = toks
        .next()
        .ok_or(ExtractError::Missing("protocol number"))?;
    let proto = Proto::from_number(num.parse().map_err(|_| malformed("protocol number", num))?);
    let mut timeout = None;
    let mut state = None;
    let mut tuples: [[Option<&str>; 6]; 2] = [[None; 6]; 2];
    let mut side = 0usize;
    let (mut assured, mut unreplied) = (false, false);
    for t in toks {
        if let Some((k, v)) = t.split_once('=') {
            let slot = match k {
                "src" => 0,
                "dst" => 1,
                "sport" | "id" => 2,
                "dport" => 3,
                "packets" => 4,
                "bytes" => 5,
                _ => continue,
            };
            // A second `src=` starts the reply tuple.
            if slot == 0 && tuples[side][0].is_some() {
                side += 1;
                if side > 1 {
                    return Err(malformed("tuple", t));
                }
            }
            if tuples[side][slot].is_none() {
                tuples[side][slot] = Some(v);
            }
        } else if t == "[ASSURED]" {
            assured = true;
        } else if t == "[UNREPLIED]" {
            unreplied = true;
        } else if tuples[0][0].is_none() {
            if let Ok(n) = t.parse() {
                timeout = Some(n);
            } else if t.bytes().all(|c| c.is_ascii_uppercase() || c == b'_') {
                state = Some(t);
            }
        }
    }
    let tuple = |t: &[Option<&str>; 6], which: &'static str| -> Result<Tuple, ExtractError> {
        let ip = |i: usize, f: &'static str| -> Result<IpAddr, ExtractError> {
            let v = t[i].ok_or(ExtractError::Missing(f))?;
            v.parse().map_err(|_| malformed(f, v))
        };
        let num = |i: usize, f: &'static str| -> Result<u64, ExtractError> {
            t[i].map_or(Ok(0), |v| v.parse().map_err(|_| malformed(f, v)))
        };
        let port = |i: usize, f: &'static str| -> Result<u16, ExtractError> {
            t[i].map_or(Ok(0), |v| v.parse().map_err(|_| malformed(f, v)))
        };
        let _ = which;
        Ok(Tuple {
            src: ip(0, "src")?,
            dst: ip(1, "dst")?,
            sport: port(2, "sport")?,
            dport: port(3, "dport")?,
            packets: num(4, "packets")?,
            bytes: num(5, "bytes")?,
        })
    };
    let original = tuple(&tuples[0], "original")?;
    if tuples[1][0].is_none() {
        return Err(ExtractError::Missing("reply tuple"));
    }
    let reply = tuple(&tuples[1], "reply")?;
    Ok(Some(ConntrackEvent {
        kind,
        proto,
        timeout,
        state,
        original,
        reply,
        assured,
        unreplied,
    }))
}

/// `conntrack-events`: each event becomes a `conntrack` record (original five-tuple -> state, timeout,
/// counters); a destination rewritten (DNAT) adds a `flow-mapping` (client -> the reply's source), a
/// source rewritten (SNAT/NAPT) a `nat-binding` (original five-tuple -> the reply's destination).
/// `[DESTROY]` deletes all three.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConntrackEvents;

impl Extractor for ConntrackEvents {
    fn name(&self) -> &str {
        "conntrack-events"
    }
    fn extract(&mut self, msg: &Message<'_>, out: &mut Emitter) -> Result<(), ExtractError> {
        let Some(e) = parse_conntrack_event(msg.msg)? else {
            return Ok(());
        };
        let (o, r) = (e.original, e.reply);
        let key = FiveTuple {
            proto: e.proto,
            src_ip: o.src,
            src_port: o.sport,
            dst_ip: o.dst,
            dst_port: o.dport,
        };
        let dnat = r.src != o.dst || r.sport != o.dport;
        let snat = r.dst != o.src || r.dport != o.sport;
        let fm_key = FlowMappingKey {
            proto: e.proto,
            client_ip: o.src,
            client_port: o.sport,
        };
        let nat_key = NatBindingKey {
            proto: e.proto,
            client_ip: o.src,
            client_port: o.sport,
            server_ip: o.dst,
            server_port: o.dport,
        };
        if e.kind == EventKind::Destroy {
            out.delete::<Conntrack>(&key)?;
            if dnat {
                out.delete::<FlowMapping>(&fm_key)?;
            }
            if snat {
                out.delete::<NatBinding>(&nat_key)?;
            }
            return Ok(());
        }
        let state = match e.state {
            Some("SYN_SENT") | Some("SYN_SENT2") => ConnState::SynSent,
            Some("SYN_RECV") => ConnState::SynRecv,
            Some("ESTABLISHED") => ConnState::Established,
            Some("FIN_WAIT") | Some("CLOSE_WAIT") => ConnState::FinWait,
            Some("LAST_ACK") => ConnState::LastAck,
            Some("TIME_WAIT") => ConnState::TimeWait,
            Some("CLOSE") => ConnState::Close,
            _ if e.assured || !e.unreplied && e.proto != Proto::Tcp => ConnState::Assured,
            _ => ConnState::Unreplied,
        };
        out.upsert::<Conntrack>(
            &key,
            &ConntrackValue {
                state,
                timeout_secs: e.timeout.unwrap_or(0),
                packets: [o.packets, r.packets],
                bytes: [o.bytes, r.bytes],
            },
        )?;
        if dnat {
            out.upsert::<FlowMapping>(
                &fm_key,
                &FlowMappingValue {
                    backend_ip: r.src,
                    backend_port: r.sport,
                },
            )?;
        }
        if snat {
            out.upsert::<NatBinding>(
                &nat_key,
                &NatBindingValue {
                    nat_ip: r.dst,
                    nat_port: r.dport,
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::message::parse;

    #[test]
    fn netfilter_variants() {
        let l = parse_netfilter("[ 5.1] lb-new: IN=veth0 OUT=veth1 MAC=aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:08:00 SRC=10.0.0.5 DST=10.1.0.3 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=54321 DF PROTO=TCP SPT=40808 DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0 MARK=0x1f")
            .unwrap()
            .unwrap();
        assert_eq!(l.prefix, "lb-new:");
        assert_eq!((l.in_if, l.out_if), ("veth0", "veth1"));
        assert_eq!((l.spt, l.dpt), (Some(40808), Some(80)));
        assert!(l.flags.syn && l.flags.df && !l.flags.ack);
        assert_eq!(l.mark, Some(0x1f));
        // A prefix glued to IN=, an empty MAC=, UDP with its own LEN=.
        let l = parse_netfilter("lbnewIN=eth0 OUT= MAC= SRC=10.0.0.5 DST=10.0.0.1 LEN=33 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=UDP SPT=5353 DPT=53 LEN=13")
            .unwrap()
            .unwrap();
        assert_eq!(l.prefix, "lbnew");
        assert_eq!((l.out_if, l.mac), ("", ""));
        assert_eq!(l.protocol(), Proto::Udp);
        // ICMP with the quoted packet: its SRC/DST must not override the outer ones.
        let l = parse_netfilter("IN=eth0 OUT= SRC=192.0.2.1 DST=10.0.0.5 LEN=88 TOS=0x00 PREC=0xC0 TTL=64 ID=7 PROTO=ICMP TYPE=3 CODE=3 [SRC=10.0.0.5 DST=192.0.2.1 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=1 PROTO=UDP SPT=1 DPT=2 LEN=40 ] ")
            .unwrap()
            .unwrap();
        assert_eq!(l.src, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!((l.icmp_type, l.icmp_code, l.spt), (Some(3), Some(3), None));
        // IPv6.
        let l = parse_netfilter("v6: IN=eth0 OUT=eth1 SRC=2001:db8::5 DST=2001:db8:1::3 LEN=80 TC=0 HOPLIMIT=63 FLOWLBL=1 PROTO=TCP SPT=40000 DPT=443 WINDOW=1 RES=0x00 SYN URGP=0")
            .unwrap()
            .unwrap();
        assert!(l.dst.is_ipv6());
        assert!(parse_netfilter("no log line here").unwrap().is_none());
        assert!(matches!(
            parse_netfilter("IN=eth0 SRC=10.0.0.300 DST=1.1.1.1 PROTO=TCP"),
            Err(ExtractError::Malformed { field: "SRC", .. })
        ));
        assert!(matches!(
            parse_netfilter("IN=eth0 SRC=10.0.0.3 PROTO=TCP"),
            Err(ExtractError::Missing("DST"))
        ));
    }

    #[test]
    fn netfilter_log_yields_flow_mappings_with_a_prefix_filter() {
        let mut x = NetfilterLog::new(Some("lb-new".into()));
        let mut out = Emitter::new(Codec::Json, "t");
        let m = parse("<4>Nov 22 01:50:29 fw kernel: [ 5.1] lb-new: IN=veth0 OUT=veth1 SRC=10.0.0.5 DST=10.1.0.3 LEN=60 PROTO=TCP SPT=40808 DPT=80 SYN URGP=0").unwrap();
        x.extract(&m, &mut out).unwrap();
        let m = parse("<4>Nov 22 01:50:29 fw kernel: other: IN=veth0 OUT=veth1 SRC=10.0.0.5 DST=10.1.0.3 LEN=60 PROTO=TCP SPT=1 DPT=80").unwrap();
        x.extract(&m, &mut out).unwrap();
        let recs = out.take();
        assert_eq!(recs.len(), 1);
        assert_eq!(
            nf_state::json_line(&recs[0]).unwrap(),
            r#"{"key":{"proto":"tcp","client_ip":"10.0.0.5","client_port":40808},"value":{"backend_ip":"10.1.0.3","backend_port":80}}"#
        );
    }

    #[test]
    fn conntrack_events_yield_three_schemas_and_deletes() {
        let mut x = ConntrackEvents;
        let mut out = Emitter::new(Codec::Json, "t");
        for line in [
            "[1700000000.123456]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=10.0.0.5 dst=10.0.0.100 sport=40808 dport=80 [UNREPLIED] src=10.1.0.3 dst=10.0.0.5 sport=8080 dport=40808",
            " [UPDATE] ipv4     2 tcp      6 432000 ESTABLISHED src=10.0.0.5 dst=203.0.113.9 sport=5000 dport=443 src=203.0.113.9 dst=192.0.2.1 sport=443 dport=15715 [ASSURED] mark=0 use=1",
            "[DESTROY] udp      17 src=10.0.0.5 dst=10.0.0.53 sport=5353 dport=53 packets=1 bytes=60 src=10.0.0.53 dst=10.0.0.5 sport=53 dport=5353 packets=1 bytes=90",
        ] {
            let m = Message {
                msg: line,
                ..parse("<13>x").unwrap()
            };
            x.extract(&m, &mut out).unwrap();
        }
        let lines: Vec<String> = out
            .take()
            .iter()
            .map(|r| {
                format!(
                    "{} {:?} {}",
                    r.schema,
                    r.op,
                    nf_state::json_line(r).unwrap()
                )
            })
            .collect();
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(
            lines[0].starts_with("conntrack Upsert") && lines[0].contains(r#""state":"syn_sent""#),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains(r#"{"key":{"proto":"tcp","client_ip":"10.0.0.5","client_port":40808},"value":{"backend_ip":"10.1.0.3","backend_port":8080}}"#), "{}", lines[1]);
        assert!(
            lines[2].starts_with("conntrack Upsert")
                && lines[2].contains(r#""state":"established""#),
            "{}",
            lines[2]
        );
        assert!(lines[3].contains(r#"{"key":{"proto":"tcp","client_ip":"10.0.0.5","client_port":5000,"server_ip":"203.0.113.9","server_port":443},"value":{"nat_ip":"192.0.2.1","nat_port":15715}}"#), "{}", lines[3]);
        assert!(lines[4].starts_with("conntrack Delete"), "{}", lines[4]);
        assert!(parse_conntrack_event("hello").unwrap().is_none());
        assert!(matches!(
            parse_conntrack_event(
                "[NEW] tcp 6 120 SYN_SENT src=1.2.3.4 dst=1.2.3.5 sport=1 dport=2"
            ),
            Err(ExtractError::Missing("reply tuple"))
        ));
    }
}
