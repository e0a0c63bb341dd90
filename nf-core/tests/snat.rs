//! Ananta's SNAT port allocation: ranges of 8, one outstanding request per backend, a port shared by
//! connections to distinct remote endpoints, idle ranges returned.

use nf_core::Timestamp;
use nf_core::elements::lb::{Snat, SnatAllocator};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const S: u64 = 1_000_000_000;

fn alloc() -> SnatAllocator {
    SnatAllocator::new(
        "192.0.2.1".parse().unwrap(),
        1024,
        1024 + 8 * 4 - 1,
        8,
        Duration::from_secs(60),
    )
}

fn remote(i: u16) -> SocketAddr {
    SocketAddr::new("203.0.113.9".parse().unwrap(), 443 + i)
}

#[test]
fn the_ninth_concurrent_connection_triggers_a_second_range() {
    let mut a = alloc();
    let b: IpAddr = "10.1.0.2".parse().unwrap();
    // The first connection finds no range: one request.
    assert_eq!(a.allocate(b, remote(0), Timestamp(0)), Snat::Requested);
    // While it is outstanding, another connection of the backend waits: no second request.
    assert_eq!(a.allocate(b, remote(0), Timestamp(0)), Snat::Pending);
    assert_eq!(a.stats().requests, 1);
    assert_eq!(a.grant(Timestamp(0)), 1);
    let mut ports = Vec::new();
    for _ in 0..8 {
        match a.allocate(b, remote(0), Timestamp(S)) {
            Snat::Port(p) => ports.push(p),
            o => panic!("{o:?}"),
        }
    }
    ports.sort();
    assert_eq!(
        ports,
        (1024..1032).collect::<Vec<_>>(),
        "one contiguous range"
    );
    // The 9th concurrent connection (same remote endpoint): a second range.
    assert_eq!(a.allocate(b, remote(0), Timestamp(S)), Snat::Requested);
    assert_eq!(a.grant(Timestamp(S)), 1);
    assert_eq!(a.allocate(b, remote(0), Timestamp(S)), Snat::Port(1032));
    assert_eq!(a.ranges_of(b), 2);
}

#[test]
fn connections_to_different_remote_endpoints_share_a_port() {
    let mut a = alloc();
    let b: IpAddr = "10.1.0.3".parse().unwrap();
    a.allocate(b, remote(0), Timestamp(0));
    a.grant(Timestamp(0));
    let p1 = a.allocate(b, remote(1), Timestamp(0));
    let p2 = a.allocate(b, remote(2), Timestamp(0));
    assert_eq!(p1, p2, "one (VIP, port) for two remote endpoints");
    assert_eq!(a.stats().reused, 1);
    // Two backends never share a range.
    let c: IpAddr = "10.1.0.4".parse().unwrap();
    assert_eq!(a.allocate(c, remote(1), Timestamp(0)), Snat::Requested);
    a.grant(Timestamp(0));
    let Snat::Port(q) = a.allocate(c, remote(1), Timestamp(0)) else {
        panic!()
    };
    let Snat::Port(p) = p1 else { panic!() };
    assert_ne!((q - 1024) / 8, (p - 1024) / 8, "each backend its own range");
}

#[test]
fn idle_ranges_come_back_and_the_pool_can_run_out() {
    let mut a = alloc();
    let b: IpAddr = "10.1.0.2".parse().unwrap();
    a.allocate(b, remote(0), Timestamp(0));
    a.grant(Timestamp(0));
    let Snat::Port(p) = a.allocate(b, remote(0), Timestamp(0)) else {
        panic!()
    };
    assert_eq!(a.free_ranges(), 3);
    // In use: not returned, however long.
    assert_eq!(a.expire(Timestamp(1000 * S)), 0);
    a.release(b, p, remote(0), Timestamp(1000 * S));
    assert_eq!(a.expire(Timestamp(1030 * S)), 0, "idle for 30 s only");
    assert_eq!(a.expire(Timestamp(1061 * S)), 1);
    assert_eq!((a.free_ranges(), a.ranges_of(b)), (4, 0));
    // Four backends take the four ranges; a fifth finds none.
    for i in 0..4u8 {
        let be = IpAddr::from([10, 1, 1, i]);
        assert_eq!(a.allocate(be, remote(0), Timestamp(0)), Snat::Requested);
    }
    a.grant(Timestamp(0));
    assert_eq!(
        a.allocate(IpAddr::from([10, 1, 1, 9]), remote(0), Timestamp(0)),
        Snat::Exhausted
    );
    assert_eq!(a.stats().exhausted, 1);
}

/// The allocator reports range grants and returns and every binding through the `StateSink` seam; a
/// minion that installs what it receives holds the same state, and carries on without reusing a port
/// towards a remote endpoint that already has it.
#[test]
fn a_minion_mirrors_the_allocator_through_its_sink() {
    use nf_core::elements::lb::{SnatKey, SnatValue};
    use nf_core::state::{ChangeKind, StateChange};
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    type Log = Arc<Mutex<Vec<(SnatKey, Option<SnatValue>)>>>;
    let log: Log = Arc::default();
    let mut primary = alloc();
    let l = log.clone();
    primary.set_sink(Box::new(move |c: &StateChange<'_, SnatKey, SnatValue>| {
        let v = match c.kind {
            ChangeKind::Remove(_) => None,
            _ => Some(*c.value),
        };
        l.lock().unwrap().push((*c.key, v));
    }));
    let backends: [IpAddr; 2] = ["10.1.0.2".parse().unwrap(), "10.1.0.3".parse().unwrap()];
    let mut live = Vec::new();
    for i in 0..40u16 {
        let b = backends[usize::from(i % 2)];
        let t = Timestamp(u64::from(i) * S);
        loop {
            match primary.allocate(b, remote(i % 12), t) {
                Snat::Port(p) => {
                    live.push((b, p, remote(i % 12)));
                    break;
                }
                Snat::Requested | Snat::Pending => {
                    primary.grant(t);
                }
                Snat::Exhausted => panic!("exhausted"),
            }
        }
        if i % 3 == 0 {
            let (b, p, r) = live.remove(0);
            primary.release(b, p, r, t);
        }
    }
    // The second backend's connections all end: its ranges go back after the idle time.
    let (gone, kept): (Vec<_>, Vec<_>) = live.into_iter().partition(|(b, _, _)| *b == backends[1]);
    live = kept;
    for (b, p, r) in gone {
        primary.release(b, p, r, Timestamp(100 * S));
    }
    primary.expire(Timestamp(1000 * S));
    let mut minion = alloc();
    for (k, v) in log.lock().unwrap().iter() {
        minion.install(*k, *v, Timestamp(1000 * S));
    }
    let state = |a: &SnatAllocator| {
        let mut s = HashSet::new();
        a.for_each(|k, v| {
            s.insert((k, v));
        });
        s
    };
    let (ps, ms) = (state(&primary), state(&minion));
    assert!(!ps.is_empty());
    assert_eq!(ps, ms, "the minion holds the primary's ranges and bindings");
    assert_eq!(minion.free_ranges(), primary.free_ranges());
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|(k, v)| matches!(k, SnatKey::Range { .. }) && v.is_none()),
        "a returned range was reported"
    );
    // The minion carries on: a new connection to a remote that already has bindings gets a port not in
    // use towards it.
    for (b, _, r) in live.iter().take(5) {
        if let Snat::Port(p) = minion.allocate(*b, *r, Timestamp(1001 * S)) {
            assert!(
                !live
                    .iter()
                    .any(|(b2, p2, r2)| b2 == b && *p2 == p && r2 == r)
            );
        }
    }
}
