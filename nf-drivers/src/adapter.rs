//! The one place where the SDK's stateful elements meet the state schemas: the conversions between an
//! element's table entries and a schema's records, both ways (a primary's changes become records; a
//! minion's follower turns records back into entries to install). The state layer (`nf-state`) knows
//! schemas and stores, not elements; the elements (`nf-core`) know their tables, not schemas.
//!
//! | element | table entry | schema | to records | back to entries |
//! |---|---|---|---|---|
//! | `ConnTrack` | `FlowKey` -> `Connection` | `conntrack` | [`conntrack_record`], [`conntrack_change`] | [`conntrack_install`] |
//! | `LoadBalancer` | `ClientKey` -> `LbEntry` | `flow-mapping` | [`flow_mapping_key`], [`lb_change`] | [`lb_install`], [`lb_installer`] |
//! | `LoadBalancer` | its backends' `BackendStatus` | `backend-state` | [`backend_state_record`] | [`backend_state_installer`] |
//! | `IPRewriter` | `FlowId` -> `Mapping` (source NAT) | `nat-binding` | [`nat_change`] | [`nat_install`], [`nat_installer`] |
//! | `ConnTrack` (a minion firewall) | `FlowKey` -> `Connection` | `conntrack` | [`conntrack_change`] | [`conntrack_installer`] |

use nf_core::FlowKey;
use nf_core::elements::lb::{ClientKey, LbEntry, LbInstall};
use nf_core::elements::nat::{FlowId, Mapping, RwInstall};
use nf_core::elements::tcpudp::{Connection, CtInstall, ProtoState, TcpState};
use nf_core::state::{ChangeKind, StateChange};
use nf_state::replicate::Install;
use nf_state::schemas::{
    ConnState, Conntrack, ConntrackValue, FiveTuple, FlowMapping, FlowMappingKey, FlowMappingValue,
    NatBinding, NatBindingKey, NatBindingValue, Proto,
};

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

/// A `conntrack` key's table key: the canonical five-tuple, and whether the originator sent its reverse.
pub fn conntrack_key(k: &FiveTuple) -> (FlowKey, bool) {
    let proto = match k.proto {
        Proto::Icmp if k.src_ip.is_ipv6() => 58,
        p => p.number(),
    };
    FlowKey::new(proto, k.src_ip, k.src_port, k.dst_ip, k.dst_port).canonical()
}

/// The inverse of [`conntrack_record`]: the canonical table key and the connection to install.
pub fn conntrack_install(k: &FiveTuple, v: &ConntrackValue) -> (FlowKey, Connection) {
    let (canon, reversed) = conntrack_key(k);
    let proto = canon.proto();
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

/// What a change of a connection tracker's table replicates: inserts and state transitions as upserts of
/// the `conntrack` schema, removals (closed, expired, evicted) as deletes. The tracker reports state
/// transitions, not every packet, so a minion's packet and byte counters are those of the last
/// transition.
pub fn conntrack_change(
    ch: &StateChange<'_, FlowKey, Connection>,
) -> Option<(FiveTuple, Option<ConntrackValue>)> {
    let (k, v) = conntrack_record(ch.key, ch.value);
    match ch.kind {
        ChangeKind::Insert | ChangeKind::Update => Some((k, Some(v))),
        ChangeKind::Remove(_) => Some((k, None)),
    }
}

/// What a change of a `LoadBalancer`'s table replicates: a flow's backend as a `flow-mapping` upsert when
/// the flow is assigned, a delete when it ends (closing flags change nothing a minion needs).
pub fn lb_change(
    ch: &StateChange<'_, ClientKey, LbEntry>,
) -> Option<(FlowMappingKey, Option<FlowMappingValue>)> {
    let k = flow_mapping_key(ch.key);
    match ch.kind {
        ChangeKind::Insert => Some((
            k,
            Some(FlowMappingValue {
                backend_ip: ch.value.backend.ip(),
                backend_port: ch.value.backend.port(),
            }),
        )),
        ChangeKind::Update => None,
        ChangeKind::Remove(_) => Some((k, None)),
    }
}

/// The `flow-mapping` key of a balanced flow.
pub fn flow_mapping_key(k: &ClientKey) -> FlowMappingKey {
    FlowMappingKey {
        proto: Proto::from_number(k.proto),
        client_ip: k.ip,
        client_port: k.port,
    }
}

/// What a minion's follower hands its `LoadBalancer` (through `LoadBalancer::installer`) for a
/// `flow-mapping` install.
pub fn lb_install(i: Install<FlowMapping>) -> LbInstall {
    let ck = |k: &FlowMappingKey| ClientKey {
        proto: k.proto.number(),
        ip: k.client_ip,
        port: k.client_port,
    };
    match i {
        Install::Reset => LbInstall::Clear,
        Install::Upsert(k, v) => LbInstall::Set(
            ck(&k),
            std::net::SocketAddr::new(v.backend_ip, v.backend_port),
        ),
        Install::Delete(k) => LbInstall::Remove(ck(&k)),
    }
}

/// A follower's install callback into a balancer's bounded install queue, for
/// [`follow_with_backpressure`](nf_state::replicate::follow_with_backpressure): a full queue hands the
/// install back (the follower waits and offers it again); a balancer that is gone takes nothing more.
pub fn lb_installer(
    tx: nf_core::state::Installer<LbInstall>,
) -> impl FnMut(Install<FlowMapping>) -> Result<(), Install<FlowMapping>> + Send {
    into_queue(tx, |i| Some(lb_install(i.clone())))
}

/// A follower's install callback into an element's bounded install queue: `map` makes each install
/// the element's (`None`: nothing to install, skipped); a full queue hands the install back (the
/// follower waits and offers it again); an element that is gone takes nothing more.
fn into_queue<S: nf_state::Schema, T>(
    tx: nf_core::state::Installer<T>,
    map: impl Fn(&Install<S>) -> Option<T> + Send,
) -> impl FnMut(Install<S>) -> Result<(), Install<S>> + Send
where
    T: Send,
{
    move |i| {
        let Some(t) = map(&i) else {
            return Ok(());
        };
        match tx.try_install(t) {
            Err(nf_core::state::InstallError::Full(_)) => Err(i),
            Ok(()) | Err(nf_core::state::InstallError::Closed(_)) => Ok(()),
        }
    }
}

/// What a change of an `IPRewriter`'s table replicates: a source-NAT flow's translated address and port
/// as a `nat-binding` upsert when it is mapped, a delete when it ends. Reply mappings (the partner of
/// each flow's), closing-state updates and mappings that change the destination (destination NAT,
/// which `nat-binding` does not describe) replicate nothing.
pub fn nat_change(
    ch: &StateChange<'_, FlowId, Mapping>,
) -> Option<(NatBindingKey, Option<NatBindingValue>)> {
    let (k, m) = (ch.key, ch.value);
    if m.is_reply() || m.dst != k.dst || m.dport != k.dport {
        return None;
    }
    let key = NatBindingKey {
        proto: Proto::from_number(k.proto),
        client_ip: k.src.into(),
        client_port: k.sport,
        server_ip: k.dst.into(),
        server_port: k.dport,
    };
    match ch.kind {
        ChangeKind::Insert => Some((
            key,
            Some(NatBindingValue {
                nat_ip: m.src.into(),
                nat_port: m.sport,
            }),
        )),
        ChangeKind::Update => None,
        ChangeKind::Remove(_) => Some((key, None)),
    }
}

/// The flow of a `nat-binding` key as an `IPRewriter` sees it come in (`None` for IPv6: the rewriter
/// is IPv4's, as Click's).
fn nat_flow(k: &NatBindingKey) -> Option<FlowId> {
    let (std::net::IpAddr::V4(c), std::net::IpAddr::V4(s)) = (k.client_ip, k.server_ip) else {
        return None;
    };
    Some(FlowId {
        proto: k.proto.number(),
        src: c,
        sport: k.client_port,
        dst: s,
        dport: k.server_port,
    })
}

/// What a minion's follower hands its `IPRewriter` for a `nat-binding` install: the flow, and the very
/// address and port the box chose for it (`None`: IPv6, not installed).
pub fn nat_install(i: &Install<NatBinding>) -> Option<RwInstall> {
    Some(match i {
        Install::Reset => RwInstall::Clear,
        Install::Upsert(k, v) => {
            let flow = nat_flow(k)?;
            let std::net::IpAddr::V4(nat) = v.nat_ip else {
                return None;
            };
            RwInstall::Set(
                flow,
                FlowId {
                    src: nat,
                    sport: v.nat_port,
                    ..flow
                },
            )
        }
        Install::Delete(k) => RwInstall::Remove(nat_flow(k)?),
    })
}

/// A follower's install callback for `nat-binding` into an `IPRewriter`'s install queue (as
/// [`lb_installer`]).
pub fn nat_installer(
    tx: nf_core::state::Installer<RwInstall>,
) -> impl FnMut(Install<NatBinding>) -> Result<(), Install<NatBinding>> + Send {
    into_queue(tx, nat_install)
}

/// A follower's install callback for `conntrack` into a `ConnTrack`'s install queue (a minion
/// firewall): each record becomes the connection, with its state, counters and timeout.
pub fn conntrack_installer(
    tx: nf_core::state::Installer<CtInstall>,
) -> impl FnMut(Install<Conntrack>) -> Result<(), Install<Conntrack>> + Send {
    into_queue(tx, |i: &Install<Conntrack>| {
        Some(match i {
            Install::Reset => CtInstall::Clear,
            Install::Upsert(k, v) => {
                let (key, c) = conntrack_install(k, v);
                CtInstall::Set(key, c)
            }
            Install::Delete(k) => CtInstall::Remove(conntrack_key(k).0),
        })
    })
}

/// The `backend-state` schema's key and value for a balancer's backend status.
pub fn backend_state_record(
    s: &nf_core::elements::lb::BackendStatus,
) -> (
    nf_state::schemas::BackendKey,
    nf_state::schemas::BackendStateValue,
) {
    use nf_core::elements::lb::BackendState as S;
    use nf_state::schemas::AdminState as A;
    (
        nf_state::schemas::BackendKey {
            backend_ip: s.backend.ip(),
            backend_port: s.backend.port(),
        },
        nf_state::schemas::BackendStateValue {
            state: match s.state {
                S::Up => A::Up,
                S::Drain => A::Drain,
                S::Down => A::Down,
            },
            weight: s.weight,
            healthy: s.healthy,
            drain_deadline_ns: s.deadline.map(|d| d.0),
            time_ns: nf_core::Timestamp::now().0,
        },
    )
}

/// A follower's install callback for `backend-state` into a balancer's install queue (as
/// [`lb_installer`]): each record becomes the backend's status; deletions and snapshots' resets
/// change nothing (a backend keeps its last known state).
pub fn backend_state_installer(
    tx: nf_core::state::Installer<LbInstall>,
) -> impl FnMut(
    Install<nf_state::schemas::BackendState>,
) -> Result<(), Install<nf_state::schemas::BackendState>>
+ Send {
    use nf_core::elements::lb::{BackendState as S, BackendStatus};
    use nf_state::schemas::AdminState as A;
    move |i| {
        let Install::Upsert(k, v) = &i else {
            return Ok(());
        };
        let st = BackendStatus {
            backend: std::net::SocketAddr::new(k.backend_ip, k.backend_port),
            state: match v.state {
                A::Up => S::Up,
                A::Drain => S::Drain,
                A::Down => S::Down,
            },
            weight: v.weight,
            healthy: v.healthy,
            deadline: v.drain_deadline_ns.map(nf_core::Timestamp),
        };
        match tx.try_install(LbInstall::Backend(st)) {
            Err(nf_core::state::InstallError::Full(_)) => Err(i),
            Ok(()) | Err(nf_core::state::InstallError::Closed(_)) => Ok(()),
        }
    }
}
