//! `FromDevice` over a real `PACKET_RX_RING` on a veth pair (needs root, as CI has): frames arrive in
//! place in the kernel's blocks, whole and in order; a graph that holds packets while the kernel fills
//! the ring gets copies once half the ring is held, and every frame it holds keeps its bytes.

use nf_core::elements::standard::Replay;
use nf_core::testing::Keep;
use nf_core::traffic::{SizeMix, TrafficConfig, TrafficGen};
use nf_core::{Graph, Packet, Router};
use nf_drivers::io::{FromDevice, ToDevice};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support {
    pub mod veth;
}
use support::veth::Veth;

fn frames(n: usize, size: SizeMix) -> Vec<Vec<u8>> {
    let mut g = TrafficGen::new(TrafficConfig {
        flows: 20,
        size,
        ..Default::default()
    });
    (0..n).map(|_| g.next_frame().to_vec()).collect()
}

/// A router sending `frames` out of `dev` once (through a TX ring, or with sendmmsg).
fn sender_with(dev: &str, frames: &[Vec<u8>], ring: bool) -> Router {
    let mut g = Graph::new();
    let src = g.add(
        "src",
        Replay::from_frames(frames).limit(frames.len() as u64),
    );
    let out = g.add("out", ToDevice::new(dev).ring(ring));
    g.connect(src.id(), 0, out.id(), 0);
    let r = Router::new(g).unwrap();
    assert_eq!(r.read_handler("out", "ring").unwrap(), ring.to_string());
    r
}

fn sender(dev: &str, frames: &[Vec<u8>]) -> Router {
    sender_with(dev, frames, true)
}

/// A router receiving from `dev` into a `Keep`.
fn receiver(dev: &str, kept: &Arc<Mutex<Vec<Packet>>>) -> Router {
    receiver_with(dev, kept, true)
}

fn receiver_with(dev: &str, kept: &Arc<Mutex<Vec<Packet>>>, ring: bool) -> Router {
    let mut g = Graph::new();
    let src = g.add("src", FromDevice::new(dev).copybreak(100).ring(ring));
    let k = g.add("k", Keep(kept.clone()));
    g.connect(src.id(), 0, k.id(), 0);
    Router::new(g).unwrap()
}

/// Runs both routers' rounds until the receiver kept `n` packets (or 10 s passed).
fn exchange(tx: &mut Router, rx: &mut Router, kept: &Arc<Mutex<Vec<Packet>>>, n: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    while kept.lock().unwrap().len() < n && Instant::now() < until {
        tx.run_round();
        rx.run_round();
    }
}

fn handler(r: &Router, h: &str) -> u64 {
    r.read_handler("src", h).unwrap().parse().unwrap()
}

#[test]
fn frames_arrive_in_the_ring_in_place_whole_and_in_order() {
    // Both rings (receive and transmit), then each alone, then neither (recvmmsg and sendmmsg).
    for (rx_ring, tx_ring) in [(true, true), (true, false), (false, true), (false, false)] {
        let v = Veth::new("nfr", "o");
        let sent = frames(3000, SizeMix::Imix);
        let kept = Arc::new(Mutex::new(Vec::new()));
        let mut rx = receiver_with(&v.0, &kept, rx_ring);
        assert_eq!(rx.read_handler("src", "ring").unwrap(), rx_ring.to_string());
        let mut tx = sender_with(&v.1, &sent, tx_ring);
        exchange(&mut tx, &mut rx, &kept, sent.len());
        let got = std::mem::take(&mut *kept.lock().unwrap());
        let case = format!("rx ring {rx_ring}, tx ring {tx_ring}");
        assert_eq!(got.len(), sent.len(), "{case}: every frame once");
        assert_eq!(
            tx.read_handler("out", "count").unwrap(),
            sent.len().to_string()
        );
        for (i, (p, f)) in got.iter().zip(&sent).enumerate() {
            assert_eq!(p.data(), &f[..], "{case}: frame {i}");
            assert_eq!(
                p.is_borrowed(),
                rx_ring && f.len() >= 100,
                "{case}: frame {i}"
            );
        }
        let borrowed = got.iter().filter(|p| p.is_borrowed()).count() as u64;
        assert_eq!(handler(&rx, "borrowed"), borrowed);
        assert_eq!(handler(&rx, "copied_held"), 0);
    }
}

#[test]
fn a_graph_holding_packets_gets_copies_and_every_held_frame_keeps_its_bytes() {
    let v = Veth::new("nfr", "h");
    let kept = Arc::new(Mutex::new(Vec::new()));
    let mut rx = receiver(&v.0, &kept);
    // Rounds of a few large frames, each round apart by more than the ring's block timeout, so that each
    // lands in a block of its own: the held packets pin block after block (64 in the ring).
    let mut sent = Vec::new();
    let round = |r: usize, sent: &mut Vec<Vec<u8>>, rx: &mut Router| {
        let batch = frames(4, SizeMix::Fixed(1000 + r));
        let mut tx = sender(&v.1, &batch);
        let want = kept.lock().unwrap().len() + batch.len();
        sent.extend(batch);
        exchange(&mut tx, rx, &kept, want);
        std::thread::sleep(Duration::from_millis(3));
    };
    for r in 0..48 {
        round(r, &mut sent, &mut rx);
    }
    {
        let got = kept.lock().unwrap();
        assert_eq!(got.len(), sent.len(), "every frame once");
        for (i, (p, f)) in got.iter().zip(&sent).enumerate() {
            assert_eq!(
                p.data(),
                &f[..],
                "frame {i} kept its bytes while the kernel filled the ring"
            );
        }
        assert!(got.iter().any(|p| !p.is_borrowed()) && got.iter().any(|p| p.is_borrowed()));
    }
    let copied = handler(&rx, "copied_held");
    assert!(copied > 0, "half the ring held: copies");
    assert_eq!(handler(&rx, "borrowed") + copied, sent.len() as u64);
    // The graph lets go: the blocks go back, and the ring carries on for more than a turn.
    kept.lock().unwrap().clear();
    sent.clear();
    for r in 0..80 {
        round(r, &mut sent, &mut rx);
        kept.lock().unwrap().clear();
    }
    assert_eq!(
        handler(&rx, "count"),
        48 * 4 + 80 * 4,
        "nothing lost, nothing twice"
    );
}
