//! Maglev tables: balance, agreement between instances, disruption on a backend change, weights; and
//! the `maglev` policy of the `LoadBalancer`.

use nf_core::elements::lb::{MaglevBackend, MaglevError, MaglevTable};

fn backends(n: usize) -> Vec<MaglevBackend> {
    (0..n)
        .map(|i| MaglevBackend {
            name: format!("10.{}.{}.{}:8080", i / 65536, i / 256 % 256, i % 256),
            weight: 1,
        })
        .collect()
}

#[test]
fn a_thousand_backends_hold_65_or_66_entries_each() {
    let t = MaglevTable::build(&backends(1000), 65_537).unwrap();
    let c = t.counts();
    assert!(
        c.iter().all(|&n| n == 65 || n == 66),
        "{:?}",
        (c.iter().min(), c.iter().max())
    );
    assert_eq!(c.iter().sum::<usize>(), 65_537);
}

#[test]
fn two_instances_build_the_same_table() {
    let a = MaglevTable::build(&backends(1000), 65_537).unwrap();
    let b = MaglevTable::build(&backends(1000), 65_537).unwrap();
    assert_eq!(a.entries(), b.entries());
}

#[test]
fn removing_one_of_a_thousand_backends_moves_under_one_percent_of_the_others() {
    let all = backends(1000);
    let before = MaglevTable::build(&all, 65_537).unwrap();
    let mut fewer = all.clone();
    let gone = fewer.remove(500);
    let after = MaglevTable::build(&fewer, 65_537).unwrap();
    let name = |t: &MaglevTable, e: u32| t.backends()[e as usize].name.clone();
    let (mut others, mut moved) = (0, 0);
    for (x, y) in before.entries().iter().zip(after.entries()) {
        let was = name(&before, *x);
        if was == gone.name {
            continue;
        }
        others += 1;
        if name(&after, *y) != was {
            moved += 1;
        }
    }
    let frac = moved as f64 / others as f64;
    println!(
        "removing 1 of 1000 backends moved {moved} of {others} other entries ({:.3} %)",
        frac * 100.0
    );
    assert!(frac <= 0.01, "{frac}");
}

#[test]
fn weights_are_respected_within_one_percent() {
    let b: Vec<MaglevBackend> = (1..=4)
        .map(|w| MaglevBackend {
            name: format!("backend-{w}"),
            weight: w,
        })
        .collect();
    let t = MaglevTable::build(&b, 65_537).unwrap();
    let c = t.counts();
    for (i, n) in c.iter().enumerate() {
        let share = *n as f64 / 65_537.0;
        let want = (i + 1) as f64 / 10.0;
        assert!(
            (share - want).abs() < 0.01,
            "backend {i}: {share} vs {want}"
        );
    }
    // A weight of 0 takes no entry.
    let mut z = b.clone();
    z[0].weight = 0;
    let t = MaglevTable::build(&z, 65_537).unwrap();
    assert_eq!(t.counts()[0], 0);
}

#[test]
fn bad_tables_are_errors() {
    assert_eq!(
        MaglevTable::build(&[], 65_537).unwrap_err(),
        MaglevError::NoBackends
    );
    assert_eq!(
        MaglevTable::build(&backends(3), 65_536).unwrap_err(),
        MaglevError::BadSize(65_536)
    );
    assert_eq!(
        MaglevTable::build(&backends(10), 7).unwrap_err(),
        MaglevError::BadSize(7)
    );
}

#[test]
fn the_maglev_policy_agrees_across_balancers() {
    // Two balancers (a primary and a minion without state) pick the same backend for every flow.
    let text = |name: &str| {
        format!(
            "InfiniteSource(LIMIT 2000, FLOWS 500, PROTO tcp, STOP true) -> {name} :: LoadBalancer(VIP 10.0.0.2:80, LOOSE_VIP true, POLICY maglev, BACKENDS 10.1.0.1:8080 10.1.0.2:8080 10.1.0.3:8080*2) -> Discard; Idle -> [1]{name}[1] -> Discard;"
        )
    };
    let a = nf_core::testing::run_config(&text("a")).unwrap();
    let b = nf_core::testing::run_config(&text("b")).unwrap();
    assert_eq!(a.read_handler("a", "new_flows").unwrap(), "500");
    let ta = a.read_handler("a", "backends").unwrap();
    assert_eq!(ta, b.read_handler("b", "backends").unwrap());
    // Weight 2 takes about half.
    let counts: Vec<u64> = ta
        .split_whitespace()
        .map(|kv| kv.split('=').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(counts[2] > counts[0] && counts[2] > counts[1], "{ta}");
}
