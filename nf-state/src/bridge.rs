//! The seam between nf-core's stateful elements and replication: a [`StateSink`] that feeds a
//! [`ReplicatorHandle`], and the conversions between nf-core's connection tracker and the `conntrack`
//! schema (both ways, so that a minion can install what the primary reported).

use crate::replicate::ReplicatorHandle;
use crate::schema::Schema;
use crate::schemas::{ConnState, Conntrack, ConntrackValue, FiveTuple, Proto};
use nf_core::FlowKey;
use nf_core::elements::tcpudp::{Connection, ProtoState, TcpState};
use nf_core::state::{ChangeKind, StateChange, StateSink};

/// A [`StateSink`] that maps each change of a table to a record of schema `S` and hands it to a
/// replicator (never blocking the packet path: a full queue drops and counts).
pub struct ReplicatorSink<S: Schema, F> {
    handle: ReplicatorHandle<S>,
    map: F,
}

impl<S: Schema, F> std::fmt::Debug for ReplicatorSink<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatorSink")
            .field("schema", &S::NAME)
            .finish()
    }
}

impl<S: Schema, F> ReplicatorSink<S, F> {
    /// A sink that maps changes with `map` (`None`: nothing to replicate for this change).
    pub fn new(handle: ReplicatorHandle<S>, map: F) -> Self {
        ReplicatorSink { handle, map }
    }
}

impl<S, K, V, F> StateSink<K, V> for ReplicatorSink<S, F>
where
    S: Schema,
    F: FnMut(&StateChange<'_, K, V>) -> Option<(S::Key, Option<S::Value>)> + Send,
{
    fn on_change(&mut self, change: &StateChange<'_, K, V>) {
        if let Some((k, v)) = (self.map)(change) {
            match v {
                Some(v) => self.handle.upsert(k, v),
                None => self.handle.delete(k),
            };
        }
    }
}

/// The `conntrack` schema's key and value for a tracked connection (the table key is canonical; the
/// schema's key is the originator's five-tuple).
pub fn conntrack_record(key: &FlowKey, c: &Connection) -> (FiveTuple, ConntrackValue) {
    let o = c.origin(key);
    let state = match c.state {
        ProtoState::Tcp(t) => match t {
            TcpState::SynSent => ConnState::SynSent,
            TcpState::SynRecv => ConnState::SynRecv,
            TcpState::Established => ConnState::Established,
            TcpState::FinWait => ConnState::FinWait,
            TcpState::LastAck => ConnState::LastAck,
            TcpState::TimeWait => ConnState::TimeWait,
            TcpState::Close => ConnState::Close,
        },
        ProtoState::Udp { assured } | ProtoState::Other { replied: assured } => {
            if assured {
                ConnState::Assured
            } else {
                ConnState::Unreplied
            }
        }
    };
    (
        FiveTuple {
            proto: Proto::from_number(o.proto()),
            src_ip: o.src(),
            src_port: o.src_port(),
            dst_ip: o.dst(),
            dst_port: o.dst_port(),
        },
        ConntrackValue {
            state,
            timeout_secs: c.timeout_secs,
            packets: c.packets,
            bytes: c.bytes,
        },
    )
}

/// The inverse of [`conntrack_record`]: the canonical table key and the connection to install.
pub fn conntrack_install(k: &FiveTuple, v: &ConntrackValue) -> (FlowKey, Connection) {
    let proto = match k.proto {
        Proto::Icmp if k.src_ip.is_ipv6() => 58,
        p => p.number(),
    };
    let origin = FlowKey::new(proto, k.src_ip, k.src_port, k.dst_ip, k.dst_port);
    let (canon, reversed) = origin.canonical();
    let state = match (proto, v.state) {
        (6, ConnState::SynSent) => ProtoState::Tcp(TcpState::SynSent),
        (6, ConnState::SynRecv) => ProtoState::Tcp(TcpState::SynRecv),
        (6, ConnState::FinWait) => ProtoState::Tcp(TcpState::FinWait),
        (6, ConnState::LastAck) => ProtoState::Tcp(TcpState::LastAck),
        (6, ConnState::TimeWait) => ProtoState::Tcp(TcpState::TimeWait),
        (6, ConnState::Close) => ProtoState::Tcp(TcpState::Close),
        (6, _) => ProtoState::Tcp(TcpState::Established),
        (17, s) => ProtoState::Udp {
            assured: s == ConnState::Assured,
        },
        (_, s) => ProtoState::Other {
            replied: s == ConnState::Assured,
        },
    };
    let conn = Connection {
        origin_reversed: reversed,
        state,
        packets: v.packets,
        bytes: v.bytes,
        first_seen: nf_core::Timestamp(0),
        last_seen: nf_core::Timestamp(0),
        timeout_secs: v.timeout_secs,
    };
    (canon, conn)
}

/// A sink for a connection tracker's table that replicates the `conntrack` schema: inserts and
/// state transitions as upserts, removals (closed, expired, evicted) as deletes. The tracker reports state
/// transitions, not every packet, so a minion's packet and byte counters are those of the last transition.
pub fn conntrack_sink(
    handle: ReplicatorHandle<Conntrack>,
) -> Box<dyn StateSink<FlowKey, Connection>> {
    Box::new(ReplicatorSink::new(
        handle,
        |ch: &StateChange<'_, FlowKey, Connection>| {
            let (k, v) = conntrack_record(ch.key, ch.value);
            match ch.kind {
                ChangeKind::Insert | ChangeKind::Update => Some((k, Some(v))),
                ChangeKind::Remove(_) => Some((k, None)),
            }
        },
    ))
}
