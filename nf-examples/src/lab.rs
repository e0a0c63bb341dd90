//! The failover lab behind `nf lab` (needs root): real TCP through a primary load balancer that fails, and
//! a minion that takes over, in Linux network namespaces.
//!
//! The topology: clients (one namespace, several addresses) reach the VIP `10.0.0.100:80` through the
//! front bridge of a switch namespace; the balancer reaches the backends (`nf serve`)
//! through its back bridge. The primary and the minion hang off both bridges with the same MAC
//! addresses; the minion's switch ports are disabled. The failover switch disables the primary's ports
//! and enables the minion's in one `ip -batch`. A management namespace holds Redis (the state store) and,
//! for the syslog primary, the syslog driver; the balancers reach it over management interfaces.
//!
//! Primaries: `whitebox` (`nf lb --role primary`, its white-box driver replicating `flow-mapping`),
//! `syslog` (an iptables DNAT balancer with random backend choice whose kernel LOG lines reach
//! `nf syslogd --extract netfilter-log` through `nf kmsg-forward`), `observe` (the same iptables balancer,
//! watched on its two interfaces by `nf observe`). The minion is `nf lb --role minion` (or
//! `standalone`, without state, for the Fail scenario).
//!
//! Between the clients and the servers instead of in front of a VIP (the clients' route to 10.1.0.0/24
//! goes through the box's 10.0.0.1): `nat-syslog` and `nat-observe` (an iptables NAPT box,
//! `MASQUERADE --random`, its bindings from its `conntrack -E` lines through `logger` to `nf syslogd
//! --extract conntrack-events`, or from its traffic through `nf observe`), `fw-syslog` (a strict iptables
//! firewall, its connections from its conntrack events); their minions are `nf nat` and `nf fw`.
//!
//! Workloads: `web` (concurrent loops of short HTTP requests) and `long` (rate-limited 2 MB downloads
//! that stay open across the failure). Scenarios, as in MiMi's table: Clean (no failure, no
//! replication), Copied (replication, no failure), Fail (failure, no state on the minion), Failover
//! (failure, state replicated).

use crate::netns::{Lab, sh, sh_out, wait_until};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LB_FRONT: &str = "02:00:00:00:01:00";
const LB_BACK: &str = "02:00:00:00:02:00";
const CLIENT_MAC: &str = "02:00:00:00:04:01";
/// The balancers' virtual address.
pub const VIP: &str = "10.0.0.100";
/// The state store the balancers reach (Redis in the management namespace).
pub const STORE: &str = "redis://10.9.0.1:6379/0";
const LOG_PREFIX: &str = "nflab-new";
/// The NAT and firewall boxes' inside address (the clients' gateway to the servers).
const BOX_INSIDE: &str = "10.0.0.1";
/// The NAT box's outside address: the address its clients' flows leave from (the minion's too).
pub const NAT_EXTERNAL: &str = "10.1.0.1";

/// What keeps the primary's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primary {
    /// `nf lb --role primary` with the white-box driver.
    WhiteBox,
    /// An iptables DNAT balancer, state from its LOG lines (syslog driver).
    Syslog,
    /// An iptables DNAT balancer, state inferred from its traffic (observation driver).
    Observe,
    /// An iptables NAPT box (`MASQUERADE --random`, the clients behind it), its bindings from its
    /// `conntrack -E` lines (syslog driver); the minion is `nf nat`.
    NatSyslog,
    /// The same NAPT box, its bindings inferred from its traffic (observation driver); the minion is
    /// `nf nat`.
    NatObserve,
    /// An iptables stateful firewall (established and related accepted, new connections only with a
    /// SYN, everything else dropped), its connections from its `conntrack -E` lines (syslog driver);
    /// the minion is `nf fw`.
    FwSyslog,
}

/// What kind of box a primary is (and so which minion takes over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxKind {
    /// A load balancer of the VIP (`nf lb`).
    Lb,
    /// A NAPT box between the clients and the servers (`nf nat`).
    Nat,
    /// A stateful firewall between the clients and the servers (`nf fw`).
    Fw,
}

/// The traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Many short HTTP requests (a 100 KB page each, back to back from concurrent loops).
    Web,
    /// Long, rate-limited downloads open across the failure.
    Long,
    /// `nf load`: new sessions at `load_rate` a second (Poisson arrivals, 1 kB or 10 kB: the
    /// backends' 8 Mbit/s carry a thousand a second) and
    /// `load_long` DASH-like flows, each outcome with its timestamps.
    Load,
    /// The paper's WEB at a given size: `nf load` opening this many browsing sessions over the run's
    /// `load_duration` (a rate of sessions / duration, Poisson arrivals), each `web_requests` requests
    /// over one kept-alive connection `web_think` apart, no long flows. `web-30k`.
    WebSessions(u32),
    /// The paper's DASH-like sessions: this many concurrent long flows (`load_long_bitrate` each, a
    /// segment every half second) and no short sessions. `dash-1000`.
    Dash(u32),
}

/// MiMi's scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// No failure, no replication.
    Clean,
    /// Replication, no failure.
    Copied,
    /// A failure, no state on the minion.
    Fail,
    /// A failure, state replicated to the minion.
    Failover,
}

impl Primary {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Primary::WhiteBox => "whitebox",
            Primary::Syslog => "syslog",
            Primary::Observe => "observe",
            Primary::NatSyslog => "nat-syslog",
            Primary::NatObserve => "nat-observe",
            Primary::FwSyslog => "fw-syslog",
        }
    }
    /// The kind of box.
    pub fn kind(self) -> BoxKind {
        match self {
            Primary::WhiteBox | Primary::Syslog | Primary::Observe => BoxKind::Lb,
            Primary::NatSyslog | Primary::NatObserve => BoxKind::Nat,
            Primary::FwSyslog => BoxKind::Fw,
        }
    }
    /// True if its state comes from the syslog driver (in the management namespace).
    fn by_syslog(self) -> bool {
        matches!(
            self,
            Primary::Syslog | Primary::NatSyslog | Primary::FwSyslog
        )
    }
    /// From its name.
    pub fn parse(s: &str) -> Option<Primary> {
        match s {
            "whitebox" => Some(Primary::WhiteBox),
            "syslog" => Some(Primary::Syslog),
            "observe" => Some(Primary::Observe),
            "nat-syslog" => Some(Primary::NatSyslog),
            "nat-observe" => Some(Primary::NatObserve),
            "fw-syslog" => Some(Primary::FwSyslog),
            _ => None,
        }
    }
}

impl Workload {
    /// Its name in reports: `WEB`, `LONG`, `LOAD`, `WEB-30k`, `DASH-1000`.
    pub fn name(self) -> String {
        match self {
            Workload::Web => "WEB".into(),
            Workload::Long => "LONG".into(),
            Workload::Load => "LOAD".into(),
            Workload::WebSessions(n) => format!("WEB-{}", count_name(n)),
            Workload::Dash(n) => format!("DASH-{}", count_name(n)),
        }
    }
    /// From its name (case-insensitive): `web`, `long`, `load`, `web-N` (N sessions, `1k`, `30k`,
    /// `100k` or a plain number), `dash-N` (N long flows).
    pub fn parse(s: &str) -> Option<Workload> {
        let s = s.to_ascii_lowercase();
        let count = |n: &str| -> Option<u32> {
            let (digits, scale) = match n.strip_suffix('k') {
                Some(d) => (d, 1000),
                None => (n, 1),
            };
            digits
                .parse::<u32>()
                .ok()
                .and_then(|d| d.checked_mul(scale))
                .filter(|&v| v > 0)
        };
        match s.as_str() {
            "web" => Some(Workload::Web),
            "long" => Some(Workload::Long),
            "load" => Some(Workload::Load),
            _ => {
                if let Some(n) = s.strip_prefix("web-") {
                    count(n).map(Workload::WebSessions)
                } else if let Some(n) = s.strip_prefix("dash-") {
                    count(n).map(Workload::Dash)
                } else {
                    None
                }
            }
        }
    }
}

/// `1000` -> `1k`, `1500` -> `1500`.
fn count_name(n: u32) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

impl Scenario {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Clean => "Clean",
            Scenario::Copied => "Copied",
            Scenario::Fail => "Fail",
            Scenario::Failover => "Failover",
        }
    }
    /// From its name (case-insensitive).
    pub fn parse(s: &str) -> Option<Scenario> {
        match s.to_ascii_lowercase().as_str() {
            "clean" => Some(Scenario::Clean),
            "copied" => Some(Scenario::Copied),
            "fail" => Some(Scenario::Fail),
            "failover" => Some(Scenario::Failover),
            _ => None,
        }
    }
    fn replicates(self) -> bool {
        matches!(self, Scenario::Copied | Scenario::Failover)
    }
    fn fails(self) -> bool {
        matches!(self, Scenario::Fail | Scenario::Failover)
    }
}

/// Settings of a lab run.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// The `nf` binary.
    pub nf: PathBuf,
    /// Primaries to test.
    pub primaries: Vec<Primary>,
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// Scenarios.
    pub scenarios: Vec<Scenario>,
    /// Runs of each combination.
    pub runs: usize,
    /// Length of a WEB run.
    pub web_duration: Duration,
    /// When the failure comes, from the start of the traffic (and, with several, the time between them).
    pub fail_after: Duration,
    /// Failures per run: traffic flips to the minion, then back to the recovered primary (restarted as a
    /// minion that replicates what it creates), and so on. More than one: the white-box primary only.
    pub failures: usize,
    /// Concurrent WEB request loops.
    pub web_loops: usize,
    /// Concurrent LONG downloads.
    pub downloads: usize,
    /// Client addresses.
    pub clients: usize,
    /// Backends.
    pub backends: usize,
    /// Each backend's sending rate, Mbit/s (8: LONG downloads stay open for seconds; LOAD at a
    /// thousand sessions a second with long flows needs more).
    pub backend_mbit: u32,
    /// LOAD: new sessions a second.
    pub load_rate: f64,
    /// LOAD: concurrent long flows (`load_long_kbit` each, a segment every half second).
    pub load_long: usize,
    /// LOAD and DASH: each long flow's bitrate, kbit/s (500).
    pub load_long_kbit: u32,
    /// WEB-N: requests per browsing session (5), over one kept-alive connection.
    pub web_requests: u32,
    /// WEB-N: the think time between two requests of a session (1 s): a session lasts about
    /// `(web_requests - 1) x web_think`, so that sessions are open when a failure comes.
    pub web_think: Duration,
    /// LOAD: how long the sessions keep coming.
    pub load_duration: Duration,
    /// The window before a failure in which new sessions count as "at risk": their state may not
    /// have reached the minion when the failure came.
    pub risk_window: Duration,
    /// The state store: one Redis (`false`) or a Redis Cluster of three masters with a replica each.
    pub store_cluster: bool,
    /// With the cluster: the master that holds `flow-mapping` is killed (SIGKILL) this long into the
    /// traffic; its replica takes over after `cluster-node-timeout` (1 s), and the killed node comes
    /// back as a replica before the next run.
    pub kill_store_master: Option<Duration>,
    /// Namespace prefix.
    pub tag: String,
    /// Set to stop between runs (Ctrl-C): the lab is torn down and what ran is reported.
    pub stop: Arc<AtomicBool>,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            nf: PathBuf::from("nf"),
            primaries: vec![Primary::WhiteBox, Primary::Syslog, Primary::Observe],
            workloads: vec![Workload::Web, Workload::Long],
            scenarios: vec![
                Scenario::Clean,
                Scenario::Copied,
                Scenario::Fail,
                Scenario::Failover,
            ],
            runs: 3,
            web_duration: Duration::from_secs(8),
            fail_after: Duration::from_secs(3),
            failures: 1,
            web_loops: 10,
            downloads: 20,
            clients: 5,
            backends: 5,
            backend_mbit: 8,
            load_rate: 200.0,
            load_long: 20,
            load_long_kbit: 500,
            web_requests: 5,
            web_think: Duration::from_secs(1),
            load_duration: Duration::from_secs(8),
            risk_window: Duration::from_millis(100),
            store_cluster: false,
            kill_store_master: None,
            tag: "nflab".into(),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// One run's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// Primary type.
    pub primary: Primary,
    /// Workload.
    pub workload: Workload,
    /// Scenario.
    pub scenario: Scenario,
    /// Which run (from 1).
    pub run: usize,
    /// Connections attempted.
    pub attempted: u64,
    /// Connections that failed (error, reset, short download).
    pub failed: u64,
    /// Bytes received by the clients.
    pub bytes: u64,
    /// Length of the traffic, seconds.
    pub secs: f64,
    /// Time from the failover switch to the minion's first forwarded packet, microseconds.
    pub switch_to_first_us: Option<u64>,
    /// LOAD: for each failure, what was at risk and what was lost.
    pub risk: Vec<FailureRisk>,
    /// The store's own failure, when the run had one.
    pub store_kill: Option<StoreKill>,
}

/// What the processes reported just before a failure (see [`FailureRisk`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LagsAt {
    driver: Option<u64>,
    follower: Option<u64>,
    driver_p50: Option<u64>,
    follower_p50: Option<u64>,
    unstored: Option<u64>,
}

/// A Redis Cluster master killed during a run (see [`LabConfig::kill_store_master`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKill {
    /// When (µs since the epoch).
    pub at_us: u64,
    /// The killed master's port.
    pub port: u16,
    /// Until its replica served the slot as master, µs after the kill (`None`: not within 15 s).
    pub promoted_after_us: Option<u64>,
    /// `flow-mapping`'s last sequence number on the master, read just before the kill.
    pub master_seq: u64,
    /// The same on its replica just after the kill: what the promoted replica starts from.
    pub replica_seq: u64,
}

impl StoreKill {
    /// Records the master had acknowledged that its replica never got (at least: the master may have
    /// acknowledged more between the read and the kill).
    pub fn lost(&self) -> u64 {
        self.master_seq.saturating_sub(self.replica_seq)
    }
}

/// One failure of a LOAD run, against `nf load`'s per-session outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRisk {
    /// When it came (µs since the epoch).
    pub at_us: u64,
    /// Sessions opened within the risk window before it.
    pub opened_recently: u64,
    /// Of those, the ones that failed.
    pub failed_recently: u64,
    /// Sessions open across it (opened before, ended after).
    pub open_across: u64,
    /// Of those, the ones that failed.
    pub failed_across: u64,
    /// White-box: the active node's replication lag (change to store acknowledged), p99 over the
    /// run until this failure, µs.
    pub driver_lag_p99_us: Option<u64>,
    /// White-box: the standby's follower (record created to installed), p99 until this failure, µs.
    pub follower_lag_p99_us: Option<u64>,
    /// The same two lags' medians (p50), µs.
    pub driver_lag_p50_us: Option<u64>,
    /// See [`FailureRisk::driver_lag_p50_us`].
    pub follower_lag_p50_us: Option<u64>,
    /// White-box: the state changes the failed node had made that the store had not acknowledged when
    /// it failed (read just before: changes seen, less those written, folded or dropped), lost with it.
    pub unstored: Option<u64>,
    /// The sessions open across it by their age at the failure ([`AGE_BINS_MS`]): (open, failed).
    pub by_age: Vec<(u64, u64)>,
}

/// Upper bounds of the age bins of [`FailureRisk::by_age`], milliseconds: a session opened less than
/// 1 ms before the failure, 1-10 ms, 10-100 ms, 100 ms-1 s, longer.
pub const AGE_BINS_MS: [u64; 5] = [1, 10, 100, 1000, u64::MAX];

/// One line of `nf load --events`: (start, end, ok).
fn load_events(path: &Path) -> Result<Vec<(u64, u64, bool)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).map_err(|e| e.to_string())?;
            let n = |k: &str| v[k].as_u64().ok_or_else(|| format!("{k} missing in `{l}`"));
            Ok((n("start_us")?, n("end_us")?, v["outcome"] == "ok"))
        })
        .collect()
}

/// Each failure's sessions at risk: opened within `window` µs before it, and open across it (until
/// the next failure), with the failures among them.
fn risk_of(events: &[(u64, u64, bool)], failures: &[u64], window: u64) -> Vec<FailureRisk> {
    failures
        .iter()
        .map(|&at| {
            let recent = events.iter().filter(|e| e.0 < at && e.0 + window >= at);
            let across = events.iter().filter(|e| e.0 < at && e.1 >= at);
            FailureRisk {
                at_us: at,
                opened_recently: recent.clone().count() as u64,
                failed_recently: recent.filter(|e| !e.2).count() as u64,
                open_across: across.clone().count() as u64,
                failed_across: across.filter(|e| !e.2).count() as u64,
                driver_lag_p99_us: None,
                follower_lag_p99_us: None,
                driver_lag_p50_us: None,
                follower_lag_p50_us: None,
                unstored: None,
                by_age: AGE_BINS_MS
                    .iter()
                    .enumerate()
                    .map(|(i, &hi)| {
                        let lo = if i == 0 { 0 } else { AGE_BINS_MS[i - 1] };
                        let bin = events.iter().filter(|e| {
                            e.0 < at && e.1 >= at && {
                                let age_ms = (at - e.0) / 1000;
                                age_ms >= lo && age_ms < hi
                            }
                        });
                        (
                            bin.clone().count() as u64,
                            bin.filter(|e| !e.2).count() as u64,
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The lab: its namespaces (torn down when dropped).
pub struct FailoverLab {
    lab: Lab,
    cfg: LabConfig,
    lb_config: PathBuf,
    /// The NAT and firewall minions' configurations (`nf nat`, `nf fw`).
    nat_config: PathBuf,
    fw_config: PathBuf,
    /// Each backend's HTTP server (`nf serve`), by process id.
    backend_pids: Vec<u32>,
    /// The cluster node killed in the last run, to bring back before the next.
    store_down: Option<u16>,
}

/// The Redis Cluster's nodes (three masters, then their replicas), on the management bridge.
const CLUSTER_PORTS: [u16; 6] = [7000, 7001, 7002, 7003, 7004, 7005];

/// `flow-mapping`'s sequence counter (its hash tag decides the cluster slot of the whole schema).
const FLOW_MAPPING_SEQ: &str = "nf:{flow-mapping}:seq";

/// Where the lab's cluster nodes keep their files.
fn cluster_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{tag}-redis-cluster"))
}

/// Every node answers, the cluster serves every slot, and every replica is in step with its master
/// (a replica whose link never came up could not take over).
fn cluster_ok(lab: &Lab) -> bool {
    CLUSTER_PORTS.iter().all(|p| {
        let out = |cmd: &str| {
            lab.exec_out("mg", &format!("redis-cli -h 10.9.0.1 -p {p} {cmd}"))
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let repl = out("info replication");
        out("cluster info").contains("cluster_state:ok")
            && (repl.contains("role:master") || repl.contains("master_link_status:up"))
    })
}

/// Starts one Redis Cluster node on 10.9.0.1:`port` in the management namespace, its files in
/// `dir/PORT` (a node that comes back finds its `nodes.conf` there and rejoins as a replica).
fn spawn_cluster_node(lab: &mut Lab, dir: &Path, port: u16) -> Result<(), String> {
    let d = dir.join(port.to_string());
    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    let (p, d) = (port.to_string(), d.to_string_lossy().into_owned());
    lab.spawn(
        "mg",
        &[
            "redis-server",
            "--port",
            &p,
            "--bind",
            "10.9.0.1",
            "--dir",
            &d,
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            "1000",
            "--repl-diskless-sync-delay",
            "0",
        ]
        .iter()
        .chain(REDIS_IN_MEMORY)
        .copied()
        .collect::<Vec<_>>(),
    )?;
    Ok(())
}

/// The lab's Redis servers keep their data in memory only and serve the management bridge.
const REDIS_IN_MEMORY: &[&str] = &["--save", "", "--appendonly", "no", "--protected-mode", "no"];

/// `redis-cli -h 10.9.0.1 -p PORT ARGS` in namespace `ns` (a shell line: quote braces); its output.
fn redis_cli(ns: &str, port: u16, args: &str) -> Option<String> {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c"])
        .arg(format!("redis-cli -h 10.9.0.1 -p {port} {args}"))
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// One line of `CLUSTER NODES`: `ID IP:PORT@BUS FLAGS MASTER-ID ... SLOT-RANGE...`.
struct ClusterNode<'a> {
    id: &'a str,
    port: u16,
    flags: &'a str,
    /// The master's id for a replica, `-` for a master.
    master: &'a str,
    /// Slot ranges (`0-5460`, `5461`), masters only.
    slots: Vec<&'a str>,
}

/// The nodes of a `CLUSTER NODES` answer (lines that do not parse are skipped).
fn cluster_nodes(text: &str) -> Vec<ClusterNode<'_>> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(ClusterNode {
                id: f.first()?,
                port: f
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?,
                flags: f.get(2)?,
                master: f.get(3)?,
                slots: f.get(8..).map(<[&str]>::to_vec).unwrap_or_default(),
            })
        })
        .collect()
}

/// The live master serving `slot`.
fn slot_owner<'a>(nodes: &'a [ClusterNode<'a>], slot: u16) -> Option<&'a ClusterNode<'a>> {
    nodes.iter().find(|n| {
        n.flags.contains("master")
            && !n.flags.contains("fail")
            && n.slots.iter().any(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            })
    })
}

/// Kills the master holding `flow-mapping` (SIGKILL), reads what it and its replica had, and waits
/// for the replica's promotion.
fn kill_flow_mapping_master(ns: &str) -> Option<StoreKill> {
    let slot: u16 = redis_cli(ns, 7000, &format!("cluster keyslot '{FLOW_MAPPING_SEQ}'"))?
        .trim()
        .parse()
        .ok()?;
    let text = redis_cli(ns, 7000, "cluster nodes")?;
    let nodes = cluster_nodes(&text);
    let master = slot_owner(&nodes, slot)?;
    let port = master.port;
    let replica = nodes
        .iter()
        .find(|n| n.flags.contains("slave") && n.master == master.id)?
        .port;
    let seq_of = |port: u16| -> u64 {
        // READONLY: a replica answers reads of its own slots (one connection for both commands).
        redis_cli(
            ns,
            port,
            &format!("<<'EOF'\nREADONLY\nGET {FLOW_MAPPING_SEQ}\nEOF"),
        )
        .and_then(|o| o.lines().last()?.trim().parse().ok())
        .unwrap_or(0)
    };
    let pid: u32 = redis_cli(ns, port, "info server")?
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))?
        .trim()
        .parse()
        .ok()?;
    let master_seq = seq_of(port);
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if !killed {
        return None;
    }
    let at_us = now_us();
    let replica_seq = seq_of(replica);
    let t = Instant::now();
    let mut promoted_after_us = None;
    while t.elapsed() < Duration::from_secs(15) {
        if redis_cli(ns, replica, "role").is_some_and(|r| r.starts_with("master")) {
            promoted_after_us = Some(now_us().saturating_sub(at_us));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(StoreKill {
        at_us,
        port,
        promoted_after_us,
        master_seq,
        replica_seq,
    })
}

/// Starts backend `i`'s HTTP server: `nf serve` on its address, port 8080, with the lab's three
/// responses (`/small` 1 KiB, `/page` 100 KiB, `/big` 2 MiB). Returns its process id.
fn start_backend(lab: &mut Lab, nf: &Path, i: usize) -> Result<u32, String> {
    let listen = format!("{}:8080", backend_ip(i));
    let nf = nf.to_string_lossy().into_owned();
    let child = lab.spawn(
        &format!("b{i}"),
        &[
            &nf,
            "serve",
            "--listen",
            &listen,
            "--file",
            "small=1024",
            "--file",
            "page=102400",
            "--file",
            "big=2097152",
        ],
    )?;
    Ok(child.id())
}

fn backend_ip(i: usize) -> String {
    format!("10.1.0.{}", 11 + i)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The balancer configuration for `nf lb`: the LoadBalancer between `$FRONT` and `$BACK`, static
/// neighbours for the clients and each backend.
pub fn lb_config(backends: usize) -> String {
    lb_config_with(&(0..backends).collect::<Vec<_>>(), backends, 120)
}

/// [`lb_config`] with the balancer's backends chosen among the lab's (`in_set`, indices), routes to
/// the first `routes` of them (a backend taken out of the set keeps its route, so its flows go on),
/// and an idle timeout (the hot reconfiguration tests change these).
pub fn lb_config_with(in_set: &[usize], routes: usize, idle: u32) -> String {
    let backends = routes;
    let list: Vec<String> = in_set
        .iter()
        .map(|&i| format!("{}:8080", backend_ip(i)))
        .collect();
    let mut c = format!(
        "// nf lb: the failover lab's balancer. FRONT and BACK are set on the command line.\n\
         lb :: LoadBalancer(VIP {VIP}:80, BACKENDS {}, POLICY random, IDLE {idle});\n\
         FromDevice($FRONT) -> [0]lb;\n\
         FromDevice($BACK) -> [1]lb;\n\
         lb[1] -> EtherRewrite(SRC {LB_FRONT}, DST {CLIENT_MAC}) -> ToDevice($FRONT);\n",
        list.join(" ")
    );
    let patterns: Vec<String> = (0..backends)
        .map(|i| format!("30/0a0100{:02x}", 11 + i))
        .collect();
    let _ = writeln!(c, "lb[0] -> nh :: Classifier({});", patterns.join(", "));
    for i in 0..backends {
        let _ = writeln!(
            c,
            "nh[{i}] -> EtherRewrite(SRC {LB_BACK}, DST 02:00:00:00:03:{:02x}) -> ToDevice($BACK);",
            i + 1
        );
    }
    c
}

impl FailoverLab {
    /// Builds the topology.
    pub fn build(cfg: LabConfig) -> Result<FailoverLab, String> {
        let mut lab = Lab::new(&cfg.tag);
        for n in ["cl", "sw", "pri", "min", "mg"] {
            lab.add(n)?;
        }
        lab.exec("sw", "ip link add br0 type bridge && ip link set br0 up")?;
        lab.exec("sw", "ip link add br1 type bridge && ip link set br1 up")?;
        lab.veth("cl", "c0", "10.0.0.2/24", "sw", "f0", "")?;
        for k in 1..cfg.clients.max(1) {
            lab.exec("cl", &format!("ip addr add 10.0.0.{}/24 dev c0", 2 + k))?;
        }
        lab.veth("pri", "p0", "", "sw", "f1", "")?;
        lab.veth("min", "m0", "", "sw", "f2", "")?;
        lab.veth("pri", "p1", "", "sw", "g1", "")?;
        lab.veth("min", "m1", "", "sw", "g2", "")?;
        for (dev, br) in [
            ("f0", "br0"),
            ("f1", "br0"),
            ("f2", "br0"),
            ("g1", "br1"),
            ("g2", "br1"),
        ] {
            lab.exec("sw", &format!("ip link set {dev} master {br}"))?;
        }
        lab.set_mac("cl", "c0", CLIENT_MAC)?;
        for (ns, front, back) in [("pri", "p0", "p1"), ("min", "m0", "m1")] {
            lab.set_mac(ns, front, LB_FRONT)?;
            lab.set_mac(ns, back, LB_BACK)?;
        }
        lab.exec(
            "cl",
            &format!("ip neigh replace {VIP} lladdr {LB_FRONT} dev c0 nud permanent"),
        )?;
        lab.exec("cl", "ethtool -K c0 tx off >/dev/null")?;
        // The NAT and firewall boxes sit between the clients and the servers: the clients' route to
        // the servers' network goes through them (10.0.0.1, the boxes' inside address).
        lab.exec(
            "cl",
            &format!(
                "ip neigh replace {BOX_INSIDE} lladdr {LB_FRONT} dev c0 nud permanent && \
                 ip route add 10.1.0.0/24 via {BOX_INSIDE}"
            ),
        )?;
        // Small receive windows: a rate-limited download is limited on the wire, not only inside curl
        // (with the default, up to 6 MB, the server would send the whole file at once into the
        // client's buffer and the connection would be idle when the failure comes).
        lab.exec("cl", "sysctl -qw net.ipv4.tcp_rmem=\"4096 32768 65536\"")?;
        for i in 0..cfg.backends {
            let name = format!("b{i}");
            lab.add(&name)?;
            lab.veth(
                &name,
                "b0",
                &format!("{}/24", backend_ip(i)),
                "sw",
                &format!("h{i}"),
                "",
            )?;
            lab.exec("sw", &format!("ip link set h{i} master br1"))?;
            lab.set_mac(&name, "b0", &format!("02:00:00:00:03:{:02x}", i + 1))?;
            lab.exec(
                &name,
                &format!("ip neigh replace 10.1.0.1 lladdr {LB_BACK} dev b0 nud permanent"),
            )?;
            lab.exec(&name, "ip route add default via 10.1.0.1")?;
            lab.exec(&name, "ethtool -K b0 tx off >/dev/null")?;
            // Each backend sends at most `backend_mbit` (8 by default): LONG downloads stay open for seconds on the wire
            // (curl's own --limit-rate only averages, and lets a transfer finish in a burst).
            lab.exec(
                &name,
                &format!(
                    "tc qdisc add dev b0 root tbf rate {}mbit burst {}kb latency 500ms",
                    cfg.backend_mbit.max(1),
                    (2 * cfg.backend_mbit).max(16)
                ),
            )?;
        }
        let mut backend_pids = Vec::new();
        for i in 0..cfg.backends {
            backend_pids.push(start_backend(&mut lab, &cfg.nf, i)?);
        }
        // Management: Redis; the balancers reach it over x0.
        lab.exec(
            "mg",
            "ip link add br0 type bridge && ip addr add 10.9.0.1/24 dev br0 && ip link set br0 up",
        )?;
        for (k, ns) in ["pri", "min"].iter().enumerate() {
            lab.veth(
                ns,
                "x0",
                &format!("10.9.0.{}/24", k + 2),
                "mg",
                &format!("y{k}"),
                "",
            )?;
            lab.exec("mg", &format!("ip link set y{k} master br0"))?;
        }
        if cfg.store_cluster {
            let dir = cluster_dir(&cfg.tag);
            let _ = std::fs::remove_dir_all(&dir);
            for port in CLUSTER_PORTS {
                spawn_cluster_node(&mut lab, &dir, port)?;
            }
            for port in CLUSTER_PORTS {
                wait_until(20, "the cluster's redis-servers", || {
                    lab.exec_out("mg", &format!("redis-cli -h 10.9.0.1 -p {port} ping"))
                        .map(|o| o.stdout.starts_with(b"PONG"))
                        .unwrap_or(false)
                })?;
            }
            let nodes: Vec<String> = CLUSTER_PORTS
                .iter()
                .map(|p| format!("10.9.0.1:{p}"))
                .collect();
            lab.exec(
                "mg",
                &format!(
                    "redis-cli --cluster create {} --cluster-replicas 1 --cluster-yes >/dev/null",
                    nodes.join(" ")
                ),
            )?;
            wait_until(30, "the cluster", || cluster_ok(&lab))?;
        } else {
            lab.spawn(
                "mg",
                &["redis-server", "--port", "6379", "--bind", "10.9.0.1"]
                    .iter()
                    .chain(REDIS_IN_MEMORY)
                    .copied()
                    .collect::<Vec<_>>(),
            )?;
            wait_until(20, "redis-server", || {
                lab.exec_out("pri", "redis-cli -h 10.9.0.1 -p 6379 ping")
                    .map(|o| o.stdout.starts_with(b"PONG"))
                    .unwrap_or(false)
            })?;
        }
        for i in 0..cfg.backends {
            let name = format!("b{i}");
            let ip = backend_ip(i);
            wait_until(20, "the backends' HTTP servers", || {
                lab.exec_out(
                    &name,
                    &format!("curl -s -o /dev/null -m 1 http://{ip}:8080/small"),
                )
                .map(|o| o.status.success())
                .unwrap_or(false)
            })?;
        }
        sh("sysctl -qw net.netfilter.nf_log_all_netns=1")?;
        let write = |name: &str, text: String| -> Result<PathBuf, String> {
            let path = std::env::temp_dir().join(format!("{}-{name}.click", cfg.tag));
            std::fs::write(&path, text).map_err(|e| e.to_string())?;
            Ok(path)
        };
        let (lb_config, nat_config, fw_config) = (
            write("lb", lb_config(cfg.backends))?,
            write("nat", nat_config(cfg.backends))?,
            write("fw", fw_config(cfg.backends))?,
        );
        let mut me = FailoverLab {
            lab,
            cfg,
            lb_config,
            nat_config,
            fw_config,
            backend_pids,
            store_down: None,
        };
        me.attach_primary()?;
        Ok(me)
    }

    /// The switch's four changes that move the traffic to the minion (or back to the primary), as
    /// `ip -batch` lines.
    fn switch_commands(to_minion: bool) -> String {
        let (down, up) = if to_minion { ("1", "2") } else { ("2", "1") };
        format!(
            "link set f{down} down\nlink set g{down} down\nlink set f{up} up\nlink set g{up} up\n"
        )
    }

    /// Moves the traffic to the minion (or back to the primary).
    pub fn switch(&self, to_minion: bool) -> Result<(), String> {
        // One process, four changes: the failover switch.
        let mut c = Command::new("ip")
            .args(["-n", &self.lab.ns("sw"), "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        {
            use std::io::Write;
            let mut stdin = c.stdin.take().ok_or("no stdin for ip -batch")?;
            stdin
                .write_all(Self::switch_commands(to_minion).as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let out = c.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "the switch's ip -batch: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    fn attach_primary(&mut self) -> Result<(), String> {
        self.switch(false)
    }

    /// The lab's namespaces (`cl`, `sw`, `pri`, `min`, `mg`, `b0`...).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// Stops backend `i`'s HTTP server (SIGKILL: a backend that dies).
    pub fn stop_backend(&mut self, i: usize) -> Result<(), String> {
        let pid = *self.backend_pids.get(i).ok_or("no such backend")?;
        sh(&format!("kill -9 {pid}")).map(|_| ())
    }

    /// Starts backend `i`'s HTTP server again.
    pub fn start_backend(&mut self, i: usize) -> Result<(), String> {
        let pid = start_backend(&mut self.lab, &self.cfg.nf, i)?;
        if let Some(p) = self.backend_pids.get_mut(i) {
            *p = pid;
        }
        Ok(())
    }

    /// The lab's namespaces, to start processes that the lab stops when it is dropped.
    pub fn lab_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }

    /// Starts `nf ARGS` in namespace `ns` (output kept under `NF_LAB_LOGS`, else dropped).
    pub fn nf(&self, ns: &str, args: &[&str]) -> Result<Child, String> {
        // NF_LAB_LOGS=DIR keeps each process's output (its counters at exit) in DIR/NS-COMMAND.log.
        let (out, err) = match std::env::var_os("NF_LAB_LOGS") {
            Some(dir) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(
                        Path::new(&dir).join(format!("{ns}-{}.log", args.first().unwrap_or(&"nf"))),
                    )
                    .map_err(|e| e.to_string())?;
                let f2 = f.try_clone().map_err(|e| e.to_string())?;
                (Stdio::from(f), Stdio::from(f2))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        Command::new("ip")
            .args(["netns", "exec", &self.lab.ns(ns)])
            .arg(&self.cfg.nf)
            .args(args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("nf {args:?}: {e}"))
    }

    fn nf_lb(&self, ns: &str, front: &str, back: &str, extra: &[&str]) -> Result<Child, String> {
        let cfg = self.lb_config.to_string_lossy().into_owned();
        let mut args = vec!["lb", cfg.as_str()];
        let (f, b) = (format!("FRONT={front}"), format!("BACK={back}"));
        args.push(&f);
        args.push(&b);
        args.extend_from_slice(extra);
        // Its metrics on the namespace's loopback: the lab reads the replication lag at each failure.
        args.extend_from_slice(&["--metrics", "127.0.0.1:9100"]);
        self.nf(ns, &args)
    }

    /// The replication's lag as the processes report it now (p99 over the run so far, microseconds):
    /// the active node's driver (change to store: the white-box balancer's replicator on port 9100 of
    /// `active`; or a syslog or observation driver's batch writer, port 9101 of `active`) and the
    /// standby's follower (record to installed).
    fn lags(&self, active: &str, standby: &str, driver: Primary) -> LagsAt {
        let scrape = |ns: &str, port: u16| -> String {
            self.lab
                .exec_out(
                    ns,
                    &format!("curl -s -m 0.3 http://127.0.0.1:{port}/metrics"),
                )
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let value = |text: &str, name: &str| -> Option<f64> {
            text.lines()
                .find(|l| l.starts_with(name))?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        };
        let (act, stand) = (
            scrape(
                active,
                if driver == Primary::WhiteBox {
                    9100
                } else {
                    9101
                },
            ),
            scrape(standby, 9100),
        );
        let read = |text: &str, name: &str| value(text, name).map(|v| (v * 1e6) as u64);
        let drv = |q: &str| match driver {
            Primary::WhiteBox => read(&act, &format!("nf_replication_lag_{q}_seconds")),
            _ => read(&act, &format!("nf_driver_store_lag_{q}_seconds")),
        };
        let unstored = (driver == Primary::WhiteBox)
            .then(|| {
                let seen = value(&act, "nf_driver_seen")?;
                let done: f64 = [
                    "nf_replication_written",
                    "nf_replication_coalesced",
                    "nf_replication_deltas_dropped",
                ]
                .iter()
                .map(|n| value(&act, n))
                .sum::<Option<f64>>()?;
                Some((seen - done).max(0.0) as u64)
            })
            .flatten();
        LagsAt {
            driver: drv("p99"),
            follower: read(&stand, "nf_follower_latency_p99_seconds"),
            driver_p50: drv("p50"),
            follower_p50: read(&stand, "nf_follower_latency_p50_seconds"),
            unstored,
        }
    }

    /// The iptables DNAT balancer in the primary's namespace (random backend), with a LOG rule for new
    /// connections.
    fn iptables_up(&self) -> Result<(), String> {
        let l = &self.lab;
        l.exec(
            "pri",
            &format!("ip addr add {VIP}/24 dev p0 && ip addr add 10.1.0.1/24 dev p1"),
        )?;
        l.exec("pri", "sysctl -qw net.ipv4.ip_forward=1")?;
        let n = self.cfg.backends;
        let rule = format!("iptables -t nat -A PREROUTING -d {VIP} -p tcp --dport 80");
        for i in 0..n {
            let ip = backend_ip(i);
            let cmd = if i + 1 < n {
                format!(
                    "{rule} -m statistic --mode random --probability {:.5} -j DNAT --to-destination {ip}:8080",
                    1.0 / (n - i) as f64
                )
            } else {
                format!("{rule} -j DNAT --to-destination {ip}:8080")
            };
            l.exec("pri", &cmd)?;
        }
        l.exec(
            "pri",
            &format!("iptables -A FORWARD -m conntrack --ctstate NEW -j LOG --log-prefix \"{LOG_PREFIX}: \""),
        )?;
        Ok(())
    }

    fn iptables_down(&self) {
        let l = &self.lab;
        let _ = l.exec_out("pri", "iptables -t nat -F; iptables -F; iptables -P FORWARD ACCEPT; conntrack -F 2>/dev/null; ip addr flush dev p0; ip addr flush dev p1");
    }

    /// The NAT box (`MASQUERADE --random` out of its outside interface: random ports, as a box that
    /// hides its choice) or the strict stateful firewall (established and related accepted, new TCP
    /// connections only with a SYN, `nf_conntrack_tcp_loose` off, everything else dropped) in the
    /// primary's namespace, between the clients (`p0`, 10.0.0.1) and the servers (`p1`, 10.1.0.1).
    fn box_up(&self, kind: BoxKind) -> Result<(), String> {
        let l = &self.lab;
        l.exec(
            "pri",
            &format!("ip addr add {BOX_INSIDE}/24 dev p0 && ip addr add {NAT_EXTERNAL}/24 dev p1"),
        )?;
        l.exec(
            "pri",
            "sysctl -qw net.ipv4.ip_forward=1 && sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0",
        )?;
        match kind {
            BoxKind::Nat => l
                .exec(
                    "pri",
                    "iptables -t nat -A POSTROUTING -o p1 -j MASQUERADE --random",
                )
                .map(|_| ()),
            BoxKind::Fw => l
                .exec(
                    "pri",
                    "iptables -P FORWARD DROP && \
                 iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT && \
                 iptables -A FORWARD -p tcp --syn -m conntrack --ctstate NEW -j ACCEPT",
                )
                .map(|_| ()),
            BoxKind::Lb => self.iptables_up(),
        }
    }

    /// The box's `conntrack -E` lines, through util-linux `logger` over TCP (RFC 3164) to the syslog
    /// driver in the management namespace (which must be listening: waited for here), as a process
    /// group of its own.
    fn conntrack_events(&self) -> Result<Child, String> {
        wait_until(10, "the syslog driver's TCP listener", || {
            self.lab
                .exec_out("mg", "ss -Hltn sport = :5514")
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false)
        })?;
        use std::os::unix::process::CommandExt;
        Command::new("ip")
            .args(["netns", "exec", &self.lab.ns("pri"), "sh", "-c"])
            .arg(
                "stdbuf -oL conntrack -E -o timestamp,extended -p tcp 2>/dev/null | \
                 logger --rfc3164 -T -n 10.9.0.1 -P 5514",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("conntrack -E | logger: {e}"))
    }

    /// `nf observe` on the box's two sides (outside: the clients' `p0`; inside: the servers' `p1`),
    /// for the balancer's `vip` or, without one, a NAPT box.
    fn observe(&self, vip: Option<&str>, store: &str) -> Result<Child, String> {
        let mut args = vec!["observe", "--outside", "p0", "--inside", "p1"];
        if let Some(v) = vip {
            args.extend_from_slice(&["--vip", v]);
        }
        args.extend_from_slice(&["--store", store, "--metrics", "127.0.0.1:9101"]);
        self.nf("pri", &args)
    }

    /// The minion of a kind of box (`nf lb`, `nf nat` with the NAT box's external address, `nf fw`)
    /// on interfaces `front` (the clients') and `back` (the servers').
    fn minion(
        &self,
        kind: BoxKind,
        ns: &str,
        front: &str,
        back: &str,
        role: &[&str],
    ) -> Result<Child, String> {
        let (cmd, cfg) = match kind {
            BoxKind::Lb => return self.nf_lb(ns, front, back, role),
            BoxKind::Nat => ("nat", &self.nat_config),
            BoxKind::Fw => ("fw", &self.fw_config),
        };
        let cfg = cfg.to_string_lossy().into_owned();
        let (i, o, e) = (
            format!("INSIDE={front}"),
            format!("OUTSIDE={back}"),
            format!("EXTERNAL={NAT_EXTERNAL}"),
        );
        let mut args = vec![cmd, cfg.as_str(), i.as_str(), o.as_str()];
        if kind == BoxKind::Nat {
            args.push(e.as_str());
        }
        args.extend_from_slice(role);
        args.extend_from_slice(&["--metrics", "127.0.0.1:9100"]);
        self.nf(ns, &args)
    }

    /// Starts the WEB or LONG traffic; returns the children and when they started.
    fn traffic(&self, w: Workload, kind: BoxKind) -> Result<Vec<Child>, String> {
        let ns = self.lab.ns("cl");
        let backends = self.cfg.backends.max(1);
        // The balancer's clients reach the VIP; the NAT's and the firewall's reach the servers
        // through the box, spread over them.
        let target = |k: usize| -> String {
            match kind {
                BoxKind::Lb => format!("{VIP}:80"),
                BoxKind::Nat | BoxKind::Fw => format!("{}:8080", backend_ip(k % backends)),
            }
        };
        let mut kids = Vec::new();
        match w {
            Workload::Web => {
                let secs = self.cfg.web_duration.as_secs_f64();
                for k in 0..self.cfg.web_loops {
                    let src = format!("10.0.0.{}", 2 + k % self.cfg.clients.max(1));
                    let script = format!(
                        "end=$(( $(date +%s%N) + {} )); while [ $(date +%s%N) -lt $end ]; do \
                         if out=$(curl -s -o /dev/null -m 5 --interface {src} -w '%{{size_download}}' http://{}/page); \
                         then echo \"$out\"; else echo fail; fi; done",
                        (secs * 1e9) as u64,
                        target(k)
                    );
                    kids.push(
                        Command::new("ip")
                            .args(["netns", "exec", &ns, "sh", "-c", &script])
                            .stdout(Stdio::piped())
                            .stderr(Stdio::null())
                            .spawn()
                            .map_err(|e| e.to_string())?,
                    );
                }
            }
            Workload::Load | Workload::WebSessions(_) | Workload::Dash(_) => {
                let secs = self.cfg.load_duration.as_secs_f64();
                let (rate, long, requests, think) = match w {
                    Workload::WebSessions(n) => (
                        f64::from(n) / secs,
                        0,
                        self.cfg.web_requests.max(1),
                        self.cfg.web_think.as_secs_f64(),
                    ),
                    Workload::Dash(n) => (0.0, n as usize, 1, 0.0),
                    _ => (self.cfg.load_rate, self.cfg.load_long, 1, 0.0),
                };
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns])
                    .arg(&self.cfg.nf)
                    .arg("load")
                    .arg(target(0))
                    .args(["--rate", &rate.to_string()])
                    .args(["--duration", &secs.to_string()])
                    .args(["--sizes", "1k:80,10k:20"])
                    .args(["--requests", &requests.to_string()])
                    .args(["--think", &think.to_string()])
                    .args(["--long", &long.to_string()])
                    .args([
                        "--long-bitrate",
                        &format!("{}k", self.cfg.load_long_kbit.max(1)),
                        "--segment",
                        "0.5",
                        "--timeout",
                        "3",
                    ])
                    .arg("--events")
                    .arg(self.load_events_path());
                for k in 0..self.cfg.clients.max(1) {
                    c.args(["--source", &format!("10.0.0.{}", 2 + k)]);
                }
                kids.push(
                    c.stdout(Stdio::piped())
                        .stderr(Stdio::null())
                        .spawn()
                        .map_err(|e| e.to_string())?,
                );
            }
            Workload::Long => {
                for k in 0..self.cfg.downloads {
                    let src = format!("10.0.0.{}", 2 + k % self.cfg.clients.max(1));
                    kids.push(
                        Command::new("ip")
                            .args(["netns", "exec", &ns, "curl", "-s", "-o", "/dev/null"])
                            .args(["--interface", &src, "-m", "20"])
                            .args(["-w", "%{size_download} %{time_total} %{exitcode}\\n"])
                            .arg(format!("http://{}/big", target(k)))
                            .stdout(Stdio::piped())
                            .stderr(Stdio::null())
                            .spawn()
                            .map_err(|e| e.to_string())?,
                    );
                }
            }
        }
        Ok(kids)
    }

    /// The store's URL for the lab's processes.
    pub fn store_url(&self) -> String {
        if self.cfg.store_cluster {
            let nodes: Vec<String> = CLUSTER_PORTS[..3]
                .iter()
                .map(|p| format!("10.9.0.1:{p}"))
                .collect();
            format!("redis+cluster://{}", nodes.join(","))
        } else {
            STORE.to_string()
        }
    }

    /// An empty store for the next run: the cluster node killed in the last run back (it rejoins as
    /// a replica), the cluster whole again, every master flushed.
    fn fresh_store(&mut self) -> Result<(), String> {
        if !self.cfg.store_cluster {
            let _ = self
                .lab
                .exec_out("pri", "redis-cli -h 10.9.0.1 -p 6379 flushall");
            return Ok(());
        }
        if let Some(port) = self.store_down.take() {
            spawn_cluster_node(&mut self.lab, &cluster_dir(&self.cfg.tag), port)?;
        }
        wait_until(30, "the cluster", || cluster_ok(&self.lab))?;
        for p in CLUSTER_PORTS {
            // Replicas refuse (READONLY); their masters' flush reaches them.
            let _ = self
                .lab
                .exec_out("mg", &format!("redis-cli -h 10.9.0.1 -p {p} flushall"));
        }
        Ok(())
    }

    /// Where a LOAD run's `nf load` writes its sessions' outcomes.
    fn load_events_path(&self) -> PathBuf {
        std::env::temp_dir().join(format!("{}-load.jsonl", self.cfg.tag))
    }

    /// One run of one combination.
    pub fn run_one(
        &mut self,
        primary: Primary,
        workload: Workload,
        scenario: Scenario,
        run: usize,
    ) -> Result<RunResult, String> {
        self.attach_primary()?;
        self.fresh_store()?;
        let store = self.store_url();
        let store = store.as_str();
        let mut procs: Vec<Child> = Vec::new();
        // Pipelines (`conntrack -E | logger`), each a process group, stopped as a group.
        let mut groups: Vec<Child> = Vec::new();
        let rep = scenario.replicates();
        // The primary and its driver.
        match primary {
            Primary::WhiteBox => {
                let role: &[&str] = if rep {
                    &["--role", "primary", "--store", store, "--node", "primary"]
                } else {
                    &["--role", "standalone"]
                };
                procs.push(self.nf_lb("pri", "p0", "p1", role)?);
            }
            Primary::Syslog | Primary::Observe => {
                self.iptables_up()?;
                if rep && primary == Primary::Syslog {
                    procs.push(self.nf(
                        "mg",
                        &[
                            "syslogd",
                            "--listen",
                            "udp://10.9.0.1:5514",
                            "--extract",
                            "netfilter-log",
                            "--prefix",
                            LOG_PREFIX,
                            "--store",
                            store,
                            "--metrics",
                            "127.0.0.1:9101",
                        ],
                    )?);
                    procs.push(self.nf(
                        "mg",
                        &[
                            "kmsg-forward",
                            "--to",
                            "udp://10.9.0.1:5514",
                            "--grep",
                            LOG_PREFIX,
                        ],
                    )?);
                }
                if rep && primary == Primary::Observe {
                    procs.push(self.observe(Some(&format!("{VIP}:80")), store)?);
                }
            }
            Primary::NatSyslog | Primary::NatObserve | Primary::FwSyslog => {
                self.box_up(primary.kind())?;
                if rep && primary.by_syslog() {
                    procs.push(self.nf(
                        "mg",
                        &[
                            "syslogd",
                            "--listen",
                            "tcp://10.9.0.1:5514",
                            "--extract",
                            "conntrack-events",
                            "--store",
                            store,
                            "--metrics",
                            "127.0.0.1:9101",
                        ],
                    )?);
                    groups.push(self.conntrack_events()?);
                }
                if rep && primary == Primary::NatObserve {
                    procs.push(self.observe(None, store)?);
                }
            }
        }
        // The minion, waiting.
        let repeated = self.cfg.failures > 1 && primary == Primary::WhiteBox;
        if scenario.fails() {
            let role: &[&str] = match (rep, repeated) {
                (true, true) => &[
                    "--role",
                    "minion",
                    "--store",
                    store,
                    "--node",
                    "minion",
                    "--replicate",
                ],
                (true, false) => &["--role", "minion", "--store", store, "--node", "minion"],
                _ => &["--role", "standalone"],
            };
            procs.push(self.minion(primary.kind(), "min", "m0", "m1", role)?);
        }
        let first = match primary.kind() {
            BoxKind::Lb => format!("{VIP}:80"),
            _ => format!("{}:8080", backend_ip(0)),
        };
        let ready = wait_until(20, "the servers through the primary", || {
            self.lab
                .exec_out(
                    "cl",
                    &format!("curl -s -o /dev/null -m 1 http://{first}/small"),
                )
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
        if let Err(e) = ready {
            for mut p in procs {
                let _ = p.kill();
                let _ = p.wait();
            }
            groups.into_iter().for_each(stop_group);
            self.iptables_down();
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let kids = self.traffic(workload, primary.kind())?;
        // The store's failure, on a thread of its own so that it keeps its time whatever the
        // failures of the balancers do.
        let killer = self
            .cfg
            .kill_store_master
            .filter(|_| self.cfg.store_cluster && rep)
            .map(|d| {
                let ns = self.lab.ns("mg");
                std::thread::spawn(move || {
                    std::thread::sleep(d.saturating_sub(t0.elapsed()));
                    kill_flow_mapping_master(&ns)
                })
            });
        let mut switch_to_first_us = None;
        let mut failures_us = Vec::new();
        let mut lag_at = Vec::new();
        if scenario.fails() {
            // The minion's first forwarded frame, either way (management traffic left out).
            // The switch's `ip -batch`, started now and fed at the failure: no process start-up in the
            // measured time.
            let mut switch = Command::new("ip")
                .args(["-n", &self.lab.ns("sw"), "-batch", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?;
            let mut dump = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.lab.ns("min"),
                    "tcpdump",
                    "-i",
                    "any",
                    "-Q",
                    "out",
                    "-c",
                    "1",
                    "-tt",
                    "-n",
                    "-l",
                    "--immediate-mode",
                    "tcp and not net 10.9.0.0/24",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())?;
            if let Some(err) = dump.stderr.as_mut() {
                use std::io::BufRead;
                let mut line = String::new();
                let _ = std::io::BufReader::new(err).read_line(&mut line);
            }
            let wait = self.cfg.fail_after.saturating_sub(t0.elapsed());
            std::thread::sleep(wait);
            if rep {
                let driver_ns = if primary.by_syslog() { "mg" } else { "pri" };
                lag_at.push(self.lags(driver_ns, "min", primary));
            }
            // The failure: the primary stops (its process dies; an iptables box is cut off), and the
            // switch moves its ports to the minion.
            if primary == Primary::WhiteBox
                && let Some(p) = procs.first_mut()
            {
                let _ = p.kill();
            }
            let at = now_us();
            failures_us.push(at);
            {
                use std::io::Write;
                let mut stdin = switch.stdin.take().ok_or("no stdin for ip -batch")?;
                stdin
                    .write_all(Self::switch_commands(true).as_bytes())
                    .map_err(|e| e.to_string())?;
            }
            let _ = switch.wait();
            let first = wait_first_packet(dump, Duration::from_secs(10));
            switch_to_first_us = first.map(|t| t.saturating_sub(at));
            if repeated {
                self.more_failures(&mut procs, rep, t0, &mut failures_us, &mut lag_at)?;
            }
        }
        let (mut attempted, mut failed, mut bytes) = (0u64, 0u64, 0u64);
        let mut risk = Vec::new();
        for k in kids {
            let out = k.wait_with_output().map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout);
            match workload {
                Workload::Load | Workload::WebSessions(_) | Workload::Dash(_) => {
                    let ev = load_events(&self.load_events_path())?;
                    attempted += ev.len() as u64;
                    failed += ev.iter().filter(|e| !e.2).count() as u64;
                    // `nf load`'s summary lines end with the megabytes received.
                    bytes += text
                        .lines()
                        .filter_map(|l| {
                            l.rsplit(", ")
                                .next()?
                                .strip_suffix(" MB")?
                                .parse::<f64>()
                                .ok()
                        })
                        .map(|mb| (mb * 1e6) as u64)
                        .sum::<u64>();
                    risk = risk_of(&ev, &failures_us, self.cfg.risk_window.as_micros() as u64);
                    for (k, l) in risk.iter_mut().zip(&lag_at) {
                        (k.driver_lag_p99_us, k.follower_lag_p99_us, k.unstored) =
                            (l.driver, l.follower, l.unstored);
                        (k.driver_lag_p50_us, k.follower_lag_p50_us) =
                            (l.driver_p50, l.follower_p50);
                    }
                }
                Workload::Web => {
                    for l in text.lines() {
                        attempted += 1;
                        match l.trim().parse::<u64>() {
                            Ok(n) if n == 100 * 1024 => bytes += n,
                            _ => failed += 1,
                        }
                    }
                }
                Workload::Long => {
                    attempted += 1;
                    if let Some(dir) = std::env::var_os("NF_LAB_LOGS") {
                        let _ = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(Path::new(&dir).join("downloads.log"))
                            .and_then(|mut f| {
                                use std::io::Write;
                                writeln!(
                                    f,
                                    "{} {} {}: {}",
                                    primary.name(),
                                    scenario.name(),
                                    run,
                                    text.trim()
                                )
                            });
                    }
                    let n: u64 = text
                        .split_whitespace()
                        .next()
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(0);
                    bytes += n;
                    if !out.status.success() || n != 2 << 20 {
                        failed += 1;
                    }
                }
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        for mut p in procs {
            // SIGTERM first: drivers flush; then make sure.
            let _ = sh_out(&format!("kill -TERM {} 2>/dev/null", p.id()));
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = p.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = p.kill();
            let _ = p.wait();
        }
        groups.into_iter().for_each(stop_group);
        if primary != Primary::WhiteBox {
            self.iptables_down();
        }
        self.attach_primary()?;
        let store_kill = killer.and_then(|k| k.join().ok().flatten());
        if let Some(k) = &store_kill {
            self.store_down = Some(k.port);
        }
        Ok(RunResult {
            primary,
            workload,
            scenario,
            run,
            attempted,
            failed,
            bytes,
            secs,
            switch_to_first_us,
            risk,
            store_kill,
        })
    }

    /// Failures 2.. of a white-box run (`procs[0]` the primary's process, `procs[1]` the minion's): the
    /// node that failed last comes back as a minion (replicating what it will create), then, at the next
    /// failure time, the active node dies and the switch moves the traffic to the recovered one.
    fn more_failures(
        &mut self,
        procs: &mut [Child],
        rep: bool,
        t0: Instant,
        failures_us: &mut Vec<u64>,
        lag_at: &mut Vec<LagsAt>,
    ) -> Result<(), String> {
        // Node 0 (primary's namespace) failed first; node 1 (the minion) is active.
        let sides = [
            ("pri", "p0", "p1", "primary"),
            ("min", "m0", "m1", "minion"),
        ];
        let mut active = 1;
        let store = self.store_url();
        for k in 2..=self.cfg.failures {
            let down = 1 - active;
            let (ns, f, b, node) = sides[down];
            // The failed node recovers: a minion of whoever serves now.
            let role: Vec<&str> = if rep {
                vec![
                    "--role",
                    "minion",
                    "--store",
                    &store,
                    "--node",
                    node,
                    "--replicate",
                ]
            } else {
                vec!["--role", "standalone"]
            };
            let _ = procs[down].kill();
            let _ = procs[down].wait();
            procs[down] = self.nf_lb(ns, f, b, &role)?;
            let at = self.cfg.fail_after * k as u32;
            std::thread::sleep(at.saturating_sub(t0.elapsed()));
            // The active node fails; the switch moves the traffic to the recovered one.
            if rep {
                lag_at.push(self.lags(sides[active].0, ns, Primary::WhiteBox));
            }
            let _ = procs[active].kill();
            failures_us.push(now_us());
            self.switch(down == 1)?;
            active = down;
        }
        Ok(())
    }

    /// Every combination of the configuration, `runs` times; `progress` hears of each run.
    pub fn run_all(
        &mut self,
        mut progress: impl FnMut(&RunResult),
    ) -> Result<Vec<RunResult>, String> {
        let mut out = Vec::new();
        let cfg = self.cfg.clone();
        for &p in &cfg.primaries {
            for &w in &cfg.workloads {
                for &s in &cfg.scenarios {
                    for r in 1..=cfg.runs.max(1) {
                        if cfg.stop.load(Ordering::Relaxed) {
                            return Ok(out);
                        }
                        let res = self.run_one(p, w, s, r)?;
                        progress(&res);
                        out.push(res);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The lab's neighbours on the servers' side for a minion between the clients and the servers: a
/// classifier on the destination address, one EtherRewrite per server (`out` the element whose output
/// `port` leads there).
fn to_servers(c: &mut String, out: &str, backends: usize) {
    let patterns: Vec<String> = (0..backends)
        .map(|i| format!("30/0a0100{:02x}", 11 + i))
        .collect();
    let _ = writeln!(c, "{out} -> nh :: Classifier({});", patterns.join(", "));
    for i in 0..backends {
        let _ = writeln!(
            c,
            "nh[{i}] -> EtherRewrite(SRC {LB_BACK}, DST 02:00:00:00:03:{:02x}) -> ToDevice($OUTSIDE);",
            i + 1
        );
    }
}

/// The NAT minion's configuration for `nf nat`: an IPRewriter (Click's NAPT: the clients' flows leave
/// from `$EXTERNAL`, a port of 1024-65535 each; replies without a binding dropped) between `$INSIDE`
/// (the clients) and `$OUTSIDE` (the servers).
pub fn nat_config(backends: usize) -> String {
    let mut c = "// nf nat: the failover lab's NAT minion. INSIDE, OUTSIDE and EXTERNAL are set on the command line.\n\
         rw :: IPRewriter(pattern $EXTERNAL 1024-65535 - - 0 1, drop, TCP_TIMEOUT 7200);\n\
         FromDevice($INSIDE) -> [0]rw;\n\
         FromDevice($OUTSIDE) -> [1]rw;\n"
        .to_string();
    let _ = writeln!(
        c,
        "rw[1] -> EtherRewrite(SRC {LB_FRONT}, DST {CLIENT_MAC}) -> ToDevice($INSIDE);"
    );
    to_servers(&mut c, "rw[0]", backends);
    c
}

/// The firewall minion's configuration for `nf fw`: a strict connection tracker (new TCP connections
/// only with a SYN; mid-stream packets of unknown connections, and anything else it cannot track,
/// dropped) between `$INSIDE` (the clients) and `$OUTSIDE` (the servers), routing by destination.
pub fn fw_config(backends: usize) -> String {
    let mut c = "// nf fw: the failover lab's firewall minion. INSIDE and OUTSIDE are set on the command line.\n\
         ct :: ConnTrack(LOOSE false, TCP_ESTABLISHED 7200);\n\
         FromDevice($INSIDE) -> ct;\n\
         FromDevice($OUTSIDE) -> ct;\n\
         ct[1] -> Discard;\n\
         ct[0] -> side :: Classifier(30/0a0000, 30/0a0100);\n"
        .to_string();
    let _ = writeln!(
        c,
        "side[0] -> EtherRewrite(SRC {LB_FRONT}, DST {CLIENT_MAC}) -> ToDevice($INSIDE);"
    );
    to_servers(&mut c, "side[1]", backends);
    c
}

/// Stops a process group (SIGTERM to the group, SIGKILL if it is still there after 3 s), and reaps its
/// leader (given up after another second: a process that ignores SIGKILL is not waited for forever).
fn stop_group(mut c: Child) {
    let group = format!("-{}", c.id());
    let signal = |sig: &str| {
        let _ = Command::new("kill")
            .args([sig, "--", group.as_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    let gone = |c: &mut Child, within: Duration| {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    signal("-TERM");
    if !gone(&mut c, Duration::from_secs(3)) {
        signal("-KILL");
        gone(&mut c, Duration::from_secs(1));
    }
}

/// Reads tcpdump's first line (`EPOCH.USEC ...`) within `timeout`; the packet's time in µs.
fn wait_first_packet(mut dump: Child, timeout: Duration) -> Option<u64> {
    let stdout = dump.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(timeout).ok();
    let _ = dump.kill();
    let _ = dump.wait();
    let ts = line?.split_whitespace().next()?.to_string();
    let (s, us) = ts.split_once('.')?;
    Some(s.parse::<u64>().ok()? * 1_000_000 + us.parse::<u64>().ok()?)
}

/// Mean and (sample) standard deviation.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// The published table: per primary, a row per workload and scenario: failed connections mean (sd)
/// over the runs, connections completed, throughput, switch-to-first-packet time.
pub fn markdown(results: &[RunResult]) -> String {
    let mut s = String::new();
    let mut primaries: Vec<Primary> = Vec::new();
    for r in results {
        if !primaries.contains(&r.primary) {
            primaries.push(r.primary);
        }
    }
    let risky: Vec<&RunResult> = results.iter().filter(|r| !r.risk.is_empty()).collect();
    let mut workloads: Vec<Workload> = Vec::new();
    for r in results {
        if !workloads.contains(&r.workload) {
            workloads.push(r.workload);
        }
    }
    for p in primaries.clone() {
        let _ = writeln!(s, "\n### Primary: {}\n", p.name());
        let _ = writeln!(
            s,
            "| workload | scenario | runs | failed connections, mean (sd) | attempted, mean | completed, mean | throughput | failover switch -> minion's first packet (max) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for &w in &workloads {
            for sc in [
                Scenario::Clean,
                Scenario::Copied,
                Scenario::Fail,
                Scenario::Failover,
            ] {
                let rs: Vec<&RunResult> = results
                    .iter()
                    .filter(|r| r.primary == p && r.workload == w && r.scenario == sc)
                    .collect();
                if rs.is_empty() {
                    continue;
                }
                let failed: Vec<f64> = rs.iter().map(|r| r.failed as f64).collect();
                let (m, sd) = mean_sd(&failed);
                let att = rs.iter().map(|r| r.attempted as f64).sum::<f64>() / rs.len() as f64;
                let done = rs
                    .iter()
                    .map(|r| (r.attempted - r.failed) as f64)
                    .sum::<f64>()
                    / rs.len() as f64;
                let tput = rs
                    .iter()
                    .map(|r| r.bytes as f64 / r.secs.max(1e-9))
                    .sum::<f64>()
                    / rs.len() as f64;
                let sw = rs.iter().filter_map(|r| r.switch_to_first_us).max();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.1} ({:.1}) | {:.0} | {:.0} | {:.2} MB/s | {} |",
                    w.name(),
                    sc.name(),
                    rs.len(),
                    m,
                    sd,
                    att,
                    done,
                    tput / 1e6,
                    sw.map_or("-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0))
                );
            }
        }
    }
    if !risky.is_empty() {
        let _ = writeln!(
            s,
            "\n### LOAD: the sessions at risk at each failure\n\n\
             Sessions opened within the risk window before a failure (their state may not have reached \
             the minion) and sessions open across it, with the failures among them, summed over the runs.\n"
        );
        let _ = writeln!(
            s,
            "| primary | workload | scenario | failures | opened in the window | of them failed | open across | of them failed | driver lag p50, p99 at the failures (median, max) | store -> minion p50, p99 (median, max) | changes not yet stored at the failures (sum) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        for (p, w, sc) in primaries.iter().flat_map(|&p| {
            workloads.iter().flat_map(move |&w| {
                [Scenario::Fail, Scenario::Failover]
                    .into_iter()
                    .map(move |sc| (p, w, sc))
            })
        }) {
            {
                let rs: Vec<&&RunResult> = risky
                    .iter()
                    .filter(|r| r.primary == p && r.workload == w && r.scenario == sc)
                    .collect();
                if rs.is_empty() {
                    continue;
                }
                let all: Vec<&FailureRisk> = rs.iter().flat_map(|r| r.risk.iter()).collect();
                let sum = |f: fn(&FailureRisk) -> u64| all.iter().map(|k| f(k)).sum::<u64>();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    p.name(),
                    w.name(),
                    sc.name(),
                    all.len(),
                    sum(|k| k.opened_recently),
                    sum(|k| k.failed_recently),
                    sum(|k| k.open_across),
                    sum(|k| k.failed_across),
                    lag_cell(
                        all.iter().filter_map(|k| k.driver_lag_p50_us),
                        all.iter().filter_map(|k| k.driver_lag_p99_us)
                    ),
                    lag_cell(
                        all.iter().filter_map(|k| k.follower_lag_p50_us),
                        all.iter().filter_map(|k| k.follower_lag_p99_us)
                    ),
                    if all.iter().any(|k| k.unstored.is_some()) {
                        sum(|k| k.unstored.unwrap_or(0)).to_string()
                    } else {
                        "-".into()
                    }
                );
            }
        }
    }
    let killed: Vec<&RunResult> = results.iter().filter(|r| r.store_kill.is_some()).collect();
    if !killed.is_empty() {
        let _ = writeln!(
            s,
            "\n### The store fails too: a Redis Cluster master killed\n\n\
             The master holding `flow-mapping` killed (SIGKILL) during the run; its replica promoted after \
             the cluster's node timeout. Lost by the store: records the master had acknowledged that its \
             replica never got. The sessions failed are the run's, with the failures of the balancer.\n"
        );
        let _ = writeln!(
            s,
            "| primary | workload | scenario | run | master killed, then the first failure | replica promoted after | master's last seq | replica's | lost by the store | changes not yet stored at the first failure | sessions failed |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        for r in killed {
            let Some(k) = &r.store_kill else { continue };
            let first = r
                .risk
                .first()
                .map(|f| f.at_us)
                .filter(|&at| at >= k.at_us)
                .map_or("-".to_string(), |at| {
                    format!("{:.0} ms", at.saturating_sub(k.at_us) as f64 / 1000.0)
                });
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {first} | {} | {} | {} | {} | {} | {} of {} |",
                r.primary.name(),
                r.workload.name(),
                r.scenario.name(),
                r.run,
                k.promoted_after_us.map_or("-".to_string(), |us| format!(
                    "{:.0} ms",
                    us as f64 / 1000.0
                )),
                k.master_seq,
                k.replica_seq,
                k.lost(),
                r.risk
                    .first()
                    .and_then(|f| f.unstored)
                    .map_or("-".to_string(), |n| n.to_string()),
                r.failed,
                r.attempted
            );
        }
    }
    s
}

/// A lag's cell in the risk table: the median over the failures of the p50 and of the p99, and the
/// p99's maximum (`p50 1.0 ms, p99 2.6 ms (max 5.1 ms)`); `-` without figures.
fn lag_cell(p50: impl Iterator<Item = u64>, p99: impl Iterator<Item = u64>) -> String {
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    };
    let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
    let p99: Vec<u64> = p99.collect();
    let max = p99.iter().max().copied();
    match (median(p50.collect()), median(p99), max) {
        (p50, Some(p99), Some(max)) => format!(
            "{}p99 {} (max {})",
            p50.map_or(String::new(), |v| format!("p50 {}, ", ms(v))),
            ms(p99),
            ms(max)
        ),
        _ => "-".into(),
    }
}

/// Every run as JSON (an array of objects).
pub fn json(results: &[RunResult]) -> String {
    let rows: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "{{\"primary\":\"{}\",\"workload\":\"{}\",\"scenario\":\"{}\",\"run\":{},\"attempted\":{},\"failed\":{},\"bytes\":{},\"secs\":{:.3},\"switch_to_first_us\":{},\"store_kill\":{},\"risk\":[{}]}}",
                r.primary.name(),
                r.workload.name(),
                r.scenario.name(),
                r.run,
                r.attempted,
                r.failed,
                r.bytes,
                r.secs,
                r.switch_to_first_us.map_or("null".into(), |v| v.to_string()),
                r.store_kill.as_ref().map_or("null".into(), |k| format!(
                    "{{\"at_us\":{},\"port\":{},\"promoted_after_us\":{},\"master_seq\":{},\"replica_seq\":{},\"lost\":{}}}",
                    k.at_us,
                    k.port,
                    k.promoted_after_us.map_or("null".into(), |v| v.to_string()),
                    k.master_seq,
                    k.replica_seq,
                    k.lost()
                )),
                r.risk
                    .iter()
                    .map(|k| format!(
                        "{{\"at_us\":{},\"opened_recently\":{},\"failed_recently\":{},\"open_across\":{},\"failed_across\":{},\"driver_lag_p99_us\":{},\"follower_lag_p99_us\":{},\"driver_lag_p50_us\":{},\"follower_lag_p50_us\":{},\"unstored\":{},\"by_age\":[{}]}}",
                        k.at_us, k.opened_recently, k.failed_recently, k.open_across, k.failed_across,
                        k.driver_lag_p99_us.map_or("null".into(), |v| v.to_string()),
                        k.follower_lag_p99_us.map_or("null".into(), |v| v.to_string()),
                        k.driver_lag_p50_us.map_or("null".into(), |v| v.to_string()),
                        k.follower_lag_p50_us.map_or("null".into(), |v| v.to_string()),
                        k.unstored.map_or("null".into(), |v| v.to_string()),
                        k.by_age
                            .iter()
                            .map(|(o, f)| format!("[{o},{f}]"))
                            .collect::<Vec<_>>()
                            .join(",")
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect();
    format!("[\n  {}\n]\n", rows.join(",\n  "))
}

/// A bar chart of the mean failed connections per scenario, a group per primary and workload (SVG).
pub fn svg(results: &[RunResult]) -> String {
    let mut groups: Vec<(Primary, Workload)> = Vec::new();
    for r in results {
        if !groups.contains(&(r.primary, r.workload)) {
            groups.push((r.primary, r.workload));
        }
    }
    let scen = [
        Scenario::Clean,
        Scenario::Copied,
        Scenario::Fail,
        Scenario::Failover,
    ];
    let colors = ["#6baed6", "#3182bd", "#de2d26", "#31a354"];
    let mean = |p: Primary, w: Workload, s: Scenario| {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.primary == p && r.workload == w && r.scenario == s)
            .map(|r| r.failed as f64)
            .collect();
        mean_sd(&v).0
    };
    let max = groups
        .iter()
        .flat_map(|&(p, w)| scen.iter().map(move |&s| (p, w, s)))
        .map(|(p, w, s)| mean(p, w, s))
        .fold(1.0f64, f64::max);
    let (gw, h, top, left) = (180.0, 260.0, 40.0, 50.0);
    let width = left + gw * groups.len() as f64 + 20.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n",
        top + h + 60.0
    );
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"20\" font-size=\"14\">Failed connections per scenario (mean over runs)</text>"
    );
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{:.0}\" y2=\"{}\" stroke=\"black\"/>",
        top + h,
        width - 10.0,
        top + h
    );
    let _ = writeln!(
        s,
        "<text x=\"5\" y=\"{top}\">{max:.0}</text><text x=\"5\" y=\"{}\">0</text>",
        top + h
    );
    for (gi, &(p, w)) in groups.iter().enumerate() {
        let x0 = left + gi as f64 * gw + 10.0;
        for (si, &sc) in scen.iter().enumerate() {
            let v = mean(p, w, sc);
            let bh = h * v / max;
            let x = x0 + si as f64 * 38.0;
            svg_bar(
                &mut s,
                (x, top + h),
                (32.0, bh),
                colors[si],
                &format!("{} {} {}: {v:.1}", p.name(), w.name(), sc.name()),
                (&format!("{v:.1}"), 11),
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\">{} {}</text>",
            x0,
            top + h + 18.0,
            p.name(),
            w.name()
        );
    }
    for (si, &sc) in scen.iter().enumerate() {
        let x = left + si as f64 * 90.0;
        let _ = writeln!(
            s,
            "<rect x=\"{x:.0}\" y=\"{:.0}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{:.0}\">{}</text>",
            top + h + 35.0,
            colors[si],
            x + 14.0,
            top + h + 44.0,
            sc.name()
        );
    }
    let panel = top + h + 60.0;
    let (extra, panel_width) = age_panel(results, panel, left);
    if extra.is_empty() {
        s.push_str("</svg>\n");
        return s;
    }
    // The sessions' panel below the bars: the document grows to hold it.
    s = s.replacen(
        &format!("height=\"{:.0}\"", top + h + 60.0),
        &format!("height=\"{:.0}\"", panel + AGE_PANEL_HEIGHT),
        1,
    );
    if panel_width + 20.0 > width {
        s = s.replacen(
            &format!("width=\"{width:.0}\""),
            &format!("width=\"{:.0}\"", panel_width + 20.0),
            1,
        );
    }
    s.push_str(&extra);
    s.push_str("</svg>\n");
    s
}

/// One bar standing on `base` (x, baseline y) of `size` (width, height): filled, its `title` shown on
/// hover, its label (text, font size) written above it.
fn svg_bar(
    s: &mut String,
    (x, base): (f64, f64),
    (width, height): (f64, f64),
    fill: &str,
    title: &str,
    (label, font): (&str, u32),
) {
    let _ = writeln!(
        s,
        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.0}\" height=\"{height:.1}\" fill=\"{fill}\"><title>{title}</title></rect>",
        base - height
    );
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"{font}\">{label}</text>",
        x + width / 2.0,
        base - height - 3.0
    );
}

/// The height of [`age_panel`].
const AGE_PANEL_HEIGHT: f64 = 260.0;

/// LOAD runs: the share of the sessions open across a failure that failed, by their age at the
/// failure (how long before it they were opened): where the state not yet replicated shows, as failures
/// of the youngest sessions, and the panel's right edge. Empty without LOAD runs.
fn age_panel(results: &[RunResult], y0: f64, left: f64) -> (String, f64) {
    type Cell = (Primary, Workload, Scenario, Vec<(u64, u64)>);
    let mut cells: Vec<Cell> = Vec::new();
    for r in results.iter().filter(|r| !r.risk.is_empty()) {
        let mut sum = vec![(0u64, 0u64); AGE_BINS_MS.len()];
        for k in &r.risk {
            for (t, b) in sum.iter_mut().zip(&k.by_age) {
                (t.0, t.1) = (t.0 + b.0, t.1 + b.1);
            }
        }
        match cells
            .iter_mut()
            .find(|c| c.0 == r.primary && c.1 == r.workload && c.2 == r.scenario)
        {
            Some(c) => {
                for (t, b) in c.3.iter_mut().zip(&sum) {
                    (t.0, t.1) = (t.0 + b.0, t.1 + b.1);
                }
            }
            None => cells.push((r.primary, r.workload, r.scenario, sum)),
        }
    }
    if cells.is_empty() {
        return (String::new(), 0.0);
    }
    let (h, top) = (150.0, y0 + 30.0);
    // Escaped for XML.
    let labels = ["&lt;1 ms", "1-10 ms", "10-100 ms", "0.1-1 s", "&gt;1 s"];
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"{:.0}\" font-size=\"14\">LOAD: sessions open across a failure that failed, by their age at the failure</text>",
        y0 + 15.0
    );
    let _ = writeln!(
        s,
        "<text x=\"5\" y=\"{top:.0}\">100%</text><text x=\"5\" y=\"{:.0}\">0</text>",
        top + h
    );
    let gw = 5.0 * 26.0 + 20.0;
    for (ci, (p, w, sc, bins)) in cells.iter().enumerate() {
        let x0 = left + ci as f64 * gw;
        let color = if *sc == Scenario::Failover {
            "#31a354"
        } else {
            "#de2d26"
        };
        for (bi, (open, failed)) in bins.iter().enumerate() {
            let frac = if *open == 0 {
                0.0
            } else {
                *failed as f64 / *open as f64
            };
            let bh = h * frac;
            let x = x0 + bi as f64 * 26.0;
            svg_bar(
                &mut s,
                (x, top + h),
                (22.0, bh),
                color,
                &format!(
                    "{} {} {} {}: {failed} of {open}",
                    p.name(),
                    w.name(),
                    sc.name(),
                    labels[bi]
                ),
                (&format!("{failed}/{open}"), 8),
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{x0:.1}\" y=\"{:.1}\" font-size=\"11\">{} {} {}</text><text x=\"{x0:.1}\" y=\"{:.1}\" font-size=\"8\">ages: {}</text>",
            top + h + 16.0,
            p.name(),
            w.name(),
            sc.name(),
            top + h + 28.0,
            labels.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{:.0}\" x2=\"{:.0}\" y2=\"{:.0}\" stroke=\"black\"/>",
        top + h,
        left + cells.len() as f64 * gw,
        top + h
    );
    (s, left + cells.len() as f64 * gw)
}

/// Writes `NAME.md`, `NAME.json` and `NAME.svg` into `dir`.
pub fn write_reports(
    dir: &Path,
    name: &str,
    results: &[RunResult],
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for (ext, text) in [
        ("md", markdown(results)),
        ("json", json(results)),
        ("svg", svg(results)),
    ] {
        let p = dir.join(format!("{name}.{ext}"));
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slots_owner_and_its_replica_are_read_from_cluster_nodes() {
        // As `redis-cli cluster nodes` wrote it for the lab's cluster (ids shortened).
        let text = "9ae2 10.9.0.1:7002@17002 master - 0 1796662133877 3 connected 10923-16383
72bf 10.9.0.1:7003@17003 slave 9ae2 0 1796662133576 3 connected
7c58 10.9.0.1:7005@17005 slave 89b0 0 1796662133576 2 connected
a457 10.9.0.1:7000@17000 myself,master - 0 1796662133000 1 connected 0-5460
89b0 10.9.0.1:7001@17001 master - 0 1796662133576 2 connected 5461-10922
dead 10.9.0.1:7009@17009 master,fail - 0 0 4 disconnected 8871
garbage";
        let nodes = cluster_nodes(text);
        assert_eq!(nodes.len(), 6, "the garbage line is skipped");
        let owner = slot_owner(&nodes, 8871).map(|n| (n.port, n.id));
        assert_eq!(
            owner,
            Some((7001, "89b0")),
            "a failed master is not the owner"
        );
        assert!(nodes.iter().any(|n| n.master == "89b0" && n.port == 7005));
        assert_eq!(slot_owner(&nodes, 0).map(|n| n.port), Some(7000));
        assert_eq!(slot_owner(&nodes, 16383).map(|n| n.port), Some(7002));
        assert!(slot_owner(&nodes, 16384).is_none());
    }

    #[test]
    fn the_papers_sizes_parse_and_name_themselves() {
        for (text, w, name) in [
            ("web-30k", Workload::WebSessions(30_000), "WEB-30k"),
            ("WEB-1500", Workload::WebSessions(1_500), "WEB-1500"),
            ("dash-1000", Workload::Dash(1_000), "DASH-1k"),
            ("dash-50", Workload::Dash(50), "DASH-50"),
            ("load", Workload::Load, "LOAD"),
        ] {
            assert_eq!(Workload::parse(text), Some(w), "{text}");
            assert_eq!(w.name(), name);
            assert_eq!(Workload::parse(&w.name()), Some(w), "a name parses back");
        }
        for bad in ["web-", "web-0", "dash-k", "web-99999999k", "webs-1k"] {
            assert_eq!(Workload::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn each_failure_counts_its_sessions_at_risk_by_age() {
        let at = 10_000_000;
        // (start, end, ok): one opened 0.5 ms before and failed, one 50 ms before and fine, one long
        // and failed, one ended before, one started after.
        let events = [
            (at - 500, at + 10, false),
            (at - 50_000, at + 10, true),
            (at - 5_000_000, at + 10, false),
            (at - 90_000, at - 1, true),
            (at + 5, at + 50, false),
        ];
        let mut r = risk_of(&events, &[at], 100_000);
        let k = &r[0];
        assert_eq!((k.opened_recently, k.failed_recently), (3, 1));
        assert_eq!((k.open_across, k.failed_across), (3, 2));
        assert_eq!(k.by_age, vec![(1, 1), (0, 0), (1, 0), (0, 0), (1, 1)]);
        (
            r[0].driver_lag_p50_us,
            r[0].driver_lag_p99_us,
            r[0].unstored,
        ) = (Some(1000), Some(2600), Some(7));
        let run = RunResult {
            primary: Primary::WhiteBox,
            workload: Workload::Load,
            scenario: Scenario::Failover,
            run: 1,
            attempted: 5,
            failed: 3,
            bytes: 0,
            secs: 1.0,
            switch_to_first_us: Some(1000),
            risk: r,
            store_kill: Some(StoreKill {
                at_us: at - 1_000_000,
                port: 7001,
                promoted_after_us: Some(2_300_000),
                master_seq: 2619,
                replica_seq: 2611,
            }),
        };
        let md = markdown(std::slice::from_ref(&run));
        assert!(
            md.contains("| p50 1.0 ms, p99 2.6 ms (max 2.6 ms) | - | 7 |")
                && md.contains("| 1000 ms | 2300 ms | 2619 | 2611 | 8 | 7 | 3 of 5 |"),
            "{md}"
        );
        let js = json(std::slice::from_ref(&run));
        assert!(
            js.contains("\"store_kill\":{\"at_us\":9000000,\"port\":7001,")
                && js.contains("\"lost\":8}")
                && js.contains("\"driver_lag_p50_us\":1000,"),
            "{js}"
        );
        let svg = svg(std::slice::from_ref(&run));
        assert!(svg.contains("by their age at the failure"), "{svg}");
        assert!(
            svg.contains("whitebox LOAD Failover &lt;1 ms: 1 of 1")
                && !svg.contains("<1 ms")
                && !svg.contains(">1 s"),
            "{svg}"
        );
        assert!(
            json(std::slice::from_ref(&run)).contains("\"by_age\":[[1,1],[0,0],[1,0],[0,0],[1,1]]")
        );
        assert!(markdown(&[run]).contains("| whitebox | LOAD | Failover | 1 | 3 | 1 | 3 | 2 |"));
    }
}
