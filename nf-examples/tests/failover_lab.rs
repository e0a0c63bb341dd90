//! The failover lab, short version (needs root): `nf_examples::lab` (what `nf lab` runs) with the
//! white-box primary, the LONG workload (twenty rate-limited 2 MB downloads across the failure), one run
//! of Fail and one of Failover. Real TCP through `nf lb` in network namespaces, Redis in a management
//! namespace. Failover must lose far fewer connections than Fail, and the minion must forward within
//! milliseconds of the switch.

use nf_examples::lab::{FailoverLab, LabConfig, Primary, RunResult, Scenario, Workload};

/// Runs the white-box primary's LONG workload, Fail then Failover, once each, with `failures` failures
/// `fail_after` apart; returns (Fail, Failover) after checking both attempted every download.
fn fail_and_failover(
    tag: &str,
    failures: usize,
    fail_after: std::time::Duration,
) -> (RunResult, RunResult) {
    fail_and_failover_of(tag, &[Primary::WhiteBox], failures, fail_after)
        .pop()
        .expect("one primary")
}

/// [`fail_and_failover`] for each of `primaries` in one lab: (Fail, Failover) of each, in order.
fn fail_and_failover_of(
    tag: &str,
    primaries: &[Primary],
    failures: usize,
    fail_after: std::time::Duration,
) -> Vec<(RunResult, RunResult)> {
    let cfg = LabConfig {
        nf: env!("CARGO_BIN_EXE_nf").into(),
        primaries: primaries.to_vec(),
        workloads: vec![Workload::Long],
        scenarios: vec![Scenario::Fail, Scenario::Failover],
        runs: 1,
        failures,
        fail_after,
        tag: format!("{tag}{}", std::process::id() % 100_000),
        ..Default::default()
    };
    let downloads = cfg.downloads as u64;
    let mut lab = FailoverLab::build(cfg).unwrap();
    let rs = lab
        .run_all(|r| {
            eprintln!(
                "{failures} failure(s): {} {} {}: {} of {} failed, switch -> first packet {:?} us",
                r.primary.name(),
                r.workload.name(),
                r.scenario.name(),
                r.failed,
                r.attempted,
                r.switch_to_first_us
            )
        })
        .unwrap();
    drop(lab);
    rs.chunks(2)
        .map(|pair| {
            let (fail, failover) = (pair[0].clone(), pair[1].clone());
            assert_eq!((fail.attempted, failover.attempted), (downloads, downloads));
            assert!(
                fail.failed >= downloads / 2,
                "without state most downloads break: {fail:?}"
            );
            (fail, failover)
        })
        .collect()
}

/// The white-box primary under a short LOAD (300 sessions a second and 10 long flows for 5 s, the
/// failure 2.5 s in), one run, namespaces tagged `tag`.
fn short_load(tag: &str) -> LabConfig {
    LabConfig {
        nf: env!("CARGO_BIN_EXE_nf").into(),
        primaries: vec![Primary::WhiteBox],
        workloads: vec![Workload::Load],
        runs: 1,
        load_rate: 300.0,
        load_long: 10,
        load_duration: std::time::Duration::from_secs(5),
        fail_after: std::time::Duration::from_millis(2500),
        tag: format!("{tag}{}", std::process::id() % 100_000),
        ..Default::default()
    }
}

#[test]
fn failover_keeps_the_connections_that_fail_loses() {
    let (_, failover) = fail_and_failover("nff", 1, LabConfig::default().fail_after);
    assert!(
        failover.failed <= 1,
        "with state nearly none break: {failover:?}"
    );
    let first = failover.switch_to_first_us.expect("the minion forwarded");
    assert!(first < 1_000_000, "{first} us");
}

/// The NAT and firewall minions against real iptables boxes: a NAPT box (`MASQUERADE --random`) whose
/// bindings reach `nf nat` through its conntrack events (syslog driver) or its traffic (observation
/// driver), and a strict stateful firewall whose connections reach `nf fw` through its conntrack
/// events. Without state every download breaks (the NAT minion picks other ports; the firewall drops
/// every mid-stream packet); with it every download survives, so the NAT minion used the box's address
/// and the very ports it chose.
#[test]
fn the_nat_and_firewall_minions_keep_what_fail_loses() {
    let rs = fail_and_failover_of(
        "nfm",
        &[Primary::NatSyslog, Primary::NatObserve, Primary::FwSyslog],
        1,
        LabConfig::default().fail_after,
    );
    for (fail, failover) in &rs {
        // A strict firewall without state drops them all; a NAT without its bindings breaks them all.
        assert_eq!(fail.failed, fail.attempted, "{fail:?}");
        // Twenty downloads: one lost would already be under the goal's 99 %, but the runner may be
        // slower than the machines the goal was measured on; EXPERIMENTS.md has the figures.
        let most = if failover.primary == Primary::FwSyslog {
            0
        } else {
            1
        };
        assert!(failover.failed <= most, "with state: {failover:?}");
        assert!(
            failover.switch_to_first_us.is_some(),
            "the minion forwarded"
        );
    }
}

/// Repeated failures: every 2.5 s the serving node dies and traffic flips to the other, which came back
/// as a minion replicating what it creates (primary -> minion -> recovered primary -> minion). With
/// state, the downloads survive all three flips; without, they break at the first.
#[test]
fn three_flips_back_and_forth_keep_the_connections() {
    let (_, failover) = fail_and_failover("nfr", 3, std::time::Duration::from_millis(2500));
    assert!(
        failover.failed <= 1,
        "three flips, nearly nothing lost: {failover:?}"
    );
}

/// LOAD (`nf load`: 300 new sessions a second and 10 long flows) across one failure of the white-box
/// primary: without state the sessions open across the failure break; with it nearly none do, and
/// each failure's sessions at risk (opened in the 100 ms before it) are counted.
#[test]
fn under_load_failover_keeps_the_sessions_open_across_the_failure() {
    let cfg = LabConfig {
        scenarios: vec![Scenario::Fail, Scenario::Failover],
        ..short_load("nfg")
    };
    let mut lab = FailoverLab::build(cfg).unwrap();
    let rs = lab.run_all(|r| eprintln!("{r:?}")).unwrap();
    drop(lab);
    let (fail, failover) = (&rs[0], &rs[1]);
    assert!(fail.attempted > 1000 && failover.attempted > 1000, "{rs:?}");
    let (f, o) = (&fail.risk[0], &failover.risk[0]);
    assert!(f.open_across >= 10 && o.open_across >= 10, "{rs:?}");
    assert!(
        f.failed_across * 2 >= f.open_across,
        "without state most sessions open across the failure break: {f:?}"
    );
    assert!(
        o.failed_across * 5 <= f.failed_across.max(10),
        "with state at most 1/5 of Fail's (EXPERIMENTS.md has the full-size figures): {o:?} against {f:?}"
    );
    assert!(
        failover.failed * 100 <= failover.attempted,
        "Failover loses at most 1 % of the sessions: {failover:?}"
    );
    let md = nf_examples::lab::markdown(&rs);
    assert!(md.contains("the sessions at risk at each failure"), "{md}");
}

/// The store fails too: the lab's Redis Cluster (three masters, a replica each) loses the master that
/// holds the flow mappings one second before the balancer fails. The replica takes over after the
/// node timeout; meanwhile the primary's replicator retries, so the changes it made in that second
/// are not in the store when it dies: counted, and the sessions they belonged to are the ones at risk.
/// The long flows, whose state was stored before, survive; the lab brings the killed node back.
#[test]
fn a_cluster_master_killed_before_the_failure_is_counted_and_the_older_flows_survive() {
    let cfg = LabConfig {
        scenarios: vec![Scenario::Failover],
        runs: 2,
        store_cluster: true,
        kill_store_master: Some(std::time::Duration::from_millis(1500)),
        ..short_load("nfk")
    };
    let mut lab = FailoverLab::build(cfg).unwrap();
    assert!(lab.store_url().starts_with("redis+cluster://"));
    // Two runs: the second one starts from the cluster the first one left (a node down, brought back).
    let rs = lab.run_all(|r| eprintln!("{r:?}")).unwrap();
    drop(lab);
    for r in &rs {
        let k = r.store_kill.as_ref().expect("the master was killed");
        assert!(
            k.promoted_after_us.is_some_and(|us| us < 10_000_000),
            "the replica took over: {k:?}"
        );
        let at = &r.risk[0];
        assert!(
            at.at_us > k.at_us && at.unstored.is_some_and(|n| n > 0),
            "the balancer failed while its changes waited for the store: {at:?}"
        );
        assert!(r.attempted > 1000, "{r:?}");
        assert!(
            r.failed * 100 <= r.attempted,
            "the sessions whose state was stored survive: {r:?}"
        );
    }
    let md = nf_examples::lab::markdown(&rs);
    assert!(md.contains("The store fails too"), "{md}");
}
