//! Active health checks of a balancer's backends (HAProxy's `check`: TCP connect or an HTTP GET with
//! an expected status; interval, timeout, rise and fall), run off the packet thread on the tokio
//! runtime. A verdict that changes is written to the balancer's `health` handler through the control
//! server's in-process handle (the router applies it between two rounds): a backend found down takes no
//! new flow; its established flows stay.

use nf_core::control::ControlHandle;
use nf_drivers::driver::Shutdown;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How `nf lb` checks its backends.
#[derive(clap::Args, Clone)]
pub struct CheckArgs {
    /// Check every backend: `tcp` (a connection opens) or `http` (a GET of --check-path answers
    /// --check-status). A backend that fails --check-fall checks in a row takes no new flow until it
    /// passes --check-rise in a row.
    #[arg(long, value_enum)]
    pub check: Option<CheckKind>,
    /// The path an HTTP check asks for.
    #[arg(long, default_value = "/")]
    pub check_path: String,
    /// The status an HTTP check expects.
    #[arg(long, default_value_t = 200)]
    pub check_status: u16,
    /// Seconds between two checks of a backend.
    #[arg(long, default_value_t = 2.0)]
    pub check_interval: f64,
    /// Seconds a check may take.
    #[arg(long, default_value_t = 1.0)]
    pub check_timeout: f64,
    /// Checks passed in a row that bring a backend up.
    #[arg(long, default_value_t = 2)]
    pub check_rise: u32,
    /// Checks failed in a row that take a backend down.
    #[arg(long, default_value_t = 3)]
    pub check_fall: u32,
}

/// What a check does.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckKind {
    /// A TCP connection opens.
    Tcp,
    /// An HTTP/1.1 GET answers the expected status.
    Http,
}

/// One check of `at`: true if it passed (a TCP connection opens; for HTTP, a GET answers the expected
/// status, through hyper's HTTP/1.1 client).
async fn check_once(at: SocketAddr, o: &CheckArgs, timeout: Duration) -> bool {
    let run = async {
        let s = tokio::net::TcpStream::connect(at).await.ok()?;
        if o.check == Some(CheckKind::Tcp) {
            return Some(true);
        }
        let mut send = crate::load::http1_client(s).await.ok()?;
        let req = crate::load::get_request(&o.check_path, &at.to_string())?;
        let resp = send.send_request(req).await.ok()?;
        Some(resp.status().as_u16() == o.check_status)
    };
    matches!(tokio::time::timeout(timeout, run).await, Ok(Some(true)))
}

/// The balancer's backends, as its `weights` handler lists them.
fn backends(handle: &ControlHandle, element: &str) -> Vec<SocketAddr> {
    let r = handle.read(&format!("{element}.weights"));
    r.data
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.rsplit_once('=')?.0.parse().ok())
        .collect()
}

/// Checks `element`'s backends until `stop` fires (the backend set is read again every round, so a
/// reload's new backends are checked too).
pub async fn run(handle: ControlHandle, element: String, o: CheckArgs, mut stop: Shutdown) {
    let every =
        Duration::try_from_secs_f64(o.check_interval.max(0.05)).unwrap_or(Duration::from_secs(2));
    let timeout =
        Duration::try_from_secs_f64(o.check_timeout.max(0.01)).unwrap_or(Duration::from_secs(1));
    // Per backend: healthy as last written, passes and failures in a row.
    let mut seen: HashMap<SocketAddr, (bool, u32, u32)> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = tick.tick() => {}
        }
        let h = handle.clone();
        let el = element.clone();
        let list = match tokio::task::spawn_blocking(move || backends(&h, &el)).await {
            Ok(l) => l,
            Err(_) => continue,
        };
        let mut checks = tokio::task::JoinSet::new();
        for &b in &list {
            let o = o.clone();
            checks.spawn(async move { (b, check_once(b, &o, timeout).await) });
        }
        let results = checks.join_all().await;
        for (b, ok) in results {
            let e = seen.entry(b).or_insert((true, 0, 0));
            if ok {
                (e.1, e.2) = (e.1 + 1, 0);
            } else {
                (e.1, e.2) = (0, e.2 + 1);
            }
            let flip = if e.0 && e.2 >= o.check_fall.max(1) {
                Some(false)
            } else if !e.0 && e.1 >= o.check_rise.max(1) {
                Some(true)
            } else {
                None
            };
            if let Some(up) = flip {
                e.0 = up;
                let word = if up { "up" } else { "down" };
                let (h, el) = (handle.clone(), element.clone());
                let r = tokio::task::spawn_blocking(move || {
                    h.write(&format!("{el}.health"), &format!("{b} {word}"))
                })
                .await;
                match r {
                    Ok(r) if r.code == 200 => eprintln!("health: {b} is {word}"),
                    Ok(r) => eprintln!(
                        "health: {b} is {word}, but the balancer said {} {}",
                        r.code, r.message
                    ),
                    Err(e) => eprintln!("health: {b}: {e}"),
                }
            }
        }
        seen.retain(|b, _| list.contains(b));
    }
}
