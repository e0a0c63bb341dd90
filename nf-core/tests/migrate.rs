//! Every stateful element that can follow its flows to another shard (`Migrate`) exports exactly the
//! entries of the buckets asked for, and its copy imports them all.

use nf_core::Router;
use nf_core::elements::lb::{AnantaMux, LoadBalancer};
use nf_core::elements::tcpudp::ConnTrack;
use nf_core::elements::tunnel::PoPSelector;
use nf_core::indirection::{BUCKETS, BucketSet, Migrate};

fn router(text: &str) -> Router {
    let cfg = nf_core::Config::parse("t", text, &Default::default()).unwrap();
    Router::new(cfg.build(&nf_core::Registry::standard()).unwrap()).unwrap()
}

/// Runs `text` (with its stateful element `x`) twice: one copy with traffic, one without; moves the even
/// buckets from the first to the second and checks the counts either way.
fn check(text: &str, get: fn(&mut Router) -> &mut dyn Migrate) {
    let mut a = router(text);
    a.run().unwrap();
    let mut b = router(&text.replace("LIMIT 4000", "LIMIT 0"));
    b.run().unwrap();
    let even: BucketSet = (0..BUCKETS).step_by(2).collect();
    let odd: BucketSet = (1..BUCKETS).step_by(2).collect();
    let moved = get(&mut a).export_buckets(&even);
    let n = moved.entries;
    assert!(n > 20, "{text}: {n} entries exported");
    assert_eq!(get(&mut b).import_buckets(moved), n, "{text}");
    assert_eq!(
        get(&mut a).export_buckets(&even).entries,
        0,
        "{text}: left behind"
    );
    assert_eq!(
        get(&mut b).export_buckets(&odd).entries,
        0,
        "{text}: wrong buckets"
    );
    let back = get(&mut b).export_buckets(&even);
    assert_eq!(back.entries, n, "{text}");
    let rest = get(&mut a).export_buckets(&odd).entries;
    assert!(rest > 20, "{text}: {rest} entries in the other buckets");
}

#[test]
fn stateful_elements_move_their_buckets_entries() {
    check(
        "InfiniteSource(LIMIT 4000, FLOWS 200, PROTO mixed, STOP true) -> x :: ConnTrack -> Discard;",
        |r| r.element_by_name_mut::<ConnTrack>("x").unwrap(),
    );
    check(
        "InfiniteSource(LIMIT 4000, FLOWS 200, PROTO tcp, STOP true)
           -> x :: LoadBalancer(VIP 192.168.0.1:80, LOOSE_VIP true, BACKENDS 10.1.0.1:80 10.1.0.2:80)
           -> Discard; Idle -> [1]x[1] -> Discard;",
        |r| r.element_by_name_mut::<LoadBalancer>("x").unwrap(),
    );
    check(
        "InfiniteSource(LIMIT 4000, FLOWS 200, PROTO tcp, STOP true)
           -> x :: AnantaMux(VIP 192.168.0.1:80, SELF 10.9.9.9, BACKENDS 10.2.0.1 10.2.0.2, LOOSE_VIP true)
           -> Discard;",
        |r| r.element_by_name_mut::<AnantaMux>("x").unwrap(),
    );
    check(
        "InfiniteSource(LIMIT 4000, FLOWS 200, PROTO tcp, STOP true) -> x :: PoPSelector(POP east, POP west);
           x[0] -> Discard; x[1] -> Discard;",
        |r| r.element_by_name_mut::<PoPSelector>("x").unwrap(),
    );
}

/// Entries taken in by a move are neither installs (state from outside) nor lost from the balancer's
/// tally of flows per backend.
#[test]
fn a_balancers_moved_flows_keep_its_counts_true() {
    use nf_core::state::Stateful;
    let text = "InfiniteSource(LIMIT 4000, FLOWS 200, PROTO tcp, STOP true)
           -> x :: LoadBalancer(VIP 192.168.0.1:80, LOOSE_VIP true, BACKENDS 10.1.0.1:80 10.1.0.2:80)
           -> Discard; Idle -> [1]x[1] -> Discard;";
    let mut a = router(text);
    a.run().unwrap();
    let mut b = router(&text.replace("LIMIT 4000", "LIMIT 0"));
    b.run().unwrap();
    let all: BucketSet = (0..BUCKETS).collect();
    let before = a.read_handler("x", "backends").unwrap();
    let moved = a
        .element_by_name_mut::<LoadBalancer>("x")
        .unwrap()
        .export_buckets(&all);
    let n = moved.entries;
    let lb = b.element_by_name_mut::<LoadBalancer>("x").unwrap();
    assert_eq!(lb.import_buckets(moved), n);
    assert_eq!(lb.table().stats().installs, 0);
    assert_eq!(b.read_handler("x", "backends").unwrap(), before);
    assert_eq!(b.read_handler("x", "flows").unwrap(), n.to_string());
    assert!(a.read_handler("x", "backends").unwrap().contains("=0"));
}
