//! Checks every store must pass, shared by the tests of the embedded stores and of Redis.
#![allow(dead_code)]

use nf_state::schemas::*;
use nf_state::{Codec, Record, StateStore, StateStoreExt};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub fn fm_key(i: u32) -> FlowMappingKey {
    FlowMappingKey {
        proto: Proto::Tcp,
        client_ip: IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()),
        client_port: (i % 60000) as u16,
    }
}

pub fn fm_val(i: u32) -> FlowMappingValue {
    FlowMappingValue {
        backend_ip: IpAddr::from([10, 1, 0, (i % 5) as u8 + 1]),
        backend_port: 80,
    }
}

/// Upserts of flows `ids` (keys and values as [`fm_key`] and [`fm_val`]) from `origin`.
pub fn fm_records(origin: &str, ids: std::ops::Range<u32>) -> Vec<Record> {
    ids.map(|i| {
        Record::upsert::<FlowMapping>(Codec::Bincode, origin, &fm_key(i), &fm_val(i))
            .expect("a flow mapping encodes")
    })
    .collect()
}

/// The map a [`follow_into_map`] follower fills.
pub type FlowMap =
    Arc<std::sync::Mutex<std::collections::HashMap<FlowMappingKey, FlowMappingValue>>>;

/// What [`follow_into_map`] returns: the map, the follower's counters, its stop order, its task.
pub type MapFollower = (
    FlowMap,
    Arc<nf_state::replicate::FollowerStats>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), nf_state::Error>>,
);

/// A follower of `flow-mapping` in `store`, installing into a map: the map, its counters, its stop
/// order (send `true`) and its task.
pub fn follow_into_map(store: Arc<dyn StateStore>) -> MapFollower {
    let map = FlowMap::default();
    let stats = Arc::new(nf_state::replicate::FollowerStats::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(nf_state::replicate::follow::<FlowMapping>(
        store,
        stats.clone(),
        stop,
        nf_state::replicate::install_into_map(map.clone()),
    ));
    (map, stats, stop_tx, task)
}

/// Waits up to 10 s for `cond`.
pub async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 10 s");
}

/// Every schema through both codecs: put, get, delete; then the store's counters. Expects a fresh store.
pub async fn round_trip_every_schema(s: &dyn StateStore) {
    for codec in [Codec::Bincode, Codec::Json] {
        let k = fm_key(1);
        s.put::<FlowMapping>(codec, "p", &k, &fm_val(1))
            .await
            .unwrap();
        assert_eq!(
            s.get_typed::<FlowMapping>(codec, &k).await.unwrap(),
            Some(fm_val(1)),
            "{}",
            s.url()
        );
        let nk = NatBindingKey {
            proto: Proto::Udp,
            client_ip: k.client_ip,
            client_port: 9,
            server_ip: k.client_ip,
            server_port: 53,
        };
        let nv = NatBindingValue {
            nat_ip: k.client_ip,
            nat_port: 4000,
        };
        s.put::<NatBinding>(codec, "p", &nk, &nv).await.unwrap();
        assert_eq!(
            s.get_typed::<NatBinding>(codec, &nk).await.unwrap(),
            Some(nv)
        );
        let ck = FiveTuple {
            proto: Proto::Tcp,
            src_ip: k.client_ip,
            src_port: 1,
            dst_ip: k.client_ip,
            dst_port: 2,
        };
        let cv = ConntrackValue {
            state: ConnState::SynSent,
            timeout_secs: 120,
            packets: [1, 0],
            bytes: [60, 0],
        };
        s.put::<Conntrack>(codec, "p", &ck, &cv).await.unwrap();
        assert_eq!(
            s.get_typed::<Conntrack>(codec, &ck).await.unwrap(),
            Some(cv)
        );
        let bk = BackendKey {
            backend_ip: k.client_ip,
            backend_port: 80,
        };
        let bv = BackendLoadValue {
            active_connections: 3,
            bytes: 4,
        };
        s.put::<BackendLoad>(codec, "p", &bk, &bv).await.unwrap();
        assert_eq!(
            s.get_typed::<BackendLoad>(codec, &bk).await.unwrap(),
            Some(bv)
        );
        s.delete::<FlowMapping>(codec, "p", &k).await.unwrap();
        assert_eq!(s.get_typed::<FlowMapping>(codec, &k).await.unwrap(), None);
    }
    let st = s.stats().await.unwrap();
    let fm = st
        .schemas
        .iter()
        .find(|x| x.schema == "flow-mapping")
        .unwrap();
    assert_eq!((fm.entries, fm.last_seq), (0, 4), "{}", s.url());
}

/// `batches` x `per_batch` upserts written while a watcher reads them, goes away after `break_at`, and comes
/// back from its last sequence number: every record arrives once, in order.
pub async fn ordered_watch_across_a_reconnect(
    s: Arc<dyn StateStore>,
    batches: u32,
    per_batch: u32,
    break_at: usize,
) {
    let base = s.scan("flow-mapping").await.unwrap().seq;
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for b in 0..batches {
                let recs = (0..per_batch)
                    .map(|i| {
                        Record::upsert::<FlowMapping>(
                            Codec::Bincode,
                            "p",
                            &fm_key(b * per_batch + i),
                            &fm_val(i),
                        )
                        .unwrap()
                    })
                    .collect();
                s.apply(recs).await.unwrap();
            }
        })
    };
    let total = (batches * per_batch) as usize;
    let mut seen = Vec::with_capacity(total);
    let mut w = s.watch("flow-mapping", base).await.unwrap();
    while seen.len() < break_at {
        seen.push(w.next().await.unwrap().unwrap());
    }
    drop(w); // the watcher goes away...
    let last = seen.last().map_or(base, |r: &Record| r.seq);
    let mut w = s.watch("flow-mapping", last).await.unwrap(); // ...and comes back
    while seen.len() < total {
        seen.push(w.next().await.unwrap().unwrap());
    }
    writer.await.unwrap();
    for (i, r) in seen.iter().enumerate() {
        assert_eq!(r.seq, base + i as u64 + 1, "{}", s.url());
        assert_eq!(r.decode::<FlowMapping>().unwrap().0, fm_key(i as u32));
    }
}

/// Two writers (two handles of one store, or the same one twice) interleave batches on one schema: runs of
/// upserts, runs longer than a script call, deletes mixed with upserts of the same key in one batch. The
/// sequence numbers the store returns are one gapless run; the state (each key with the number of its last
/// write), `get`, and a watch started in the middle of a batch all agree with them.
pub async fn interleaved_writers(a: Arc<dyn StateStore>, b: Arc<dyn StateStore>) {
    use nf_state::Op;
    use std::collections::BTreeMap;
    let base = a.scan("flow-mapping").await.unwrap().seq;
    // key bytes -> (value bytes, seq) of the last write.
    let mut model: BTreeMap<Vec<u8>, (Vec<u8>, u64)> = BTreeMap::new();
    let mut written: Vec<(u64, Op, Vec<u8>)> = Vec::new();
    let up = |i: u32, v: u32| {
        Record::upsert::<FlowMapping>(Codec::Bincode, "w", &fm_key(100_000 + i), &fm_val(v))
            .unwrap()
    };
    let del =
        |i: u32| Record::delete::<FlowMapping>(Codec::Bincode, "w", &fm_key(100_000 + i)).unwrap();
    let mut next = 0u32;
    for round in 0..6u32 {
        let n = if round == 3 { 5000 } else { 300 };
        let recs_a: Vec<Record> = (0..n).map(|k| up(next + k, round)).collect();
        next += n;
        // b: new keys, deletes of a's, and a key deleted then written again in the same batch.
        let mut recs_b: Vec<Record> = (0..100).map(|k| up(next + k, 7)).collect();
        next += 100;
        recs_b.extend((0..50).map(|k| del(next - 100 - n + k)));
        recs_b.push(del(next - 100 - n + 60));
        recs_b.push(up(next - 100 - n + 60, 9));
        for (store, recs) in [(&a, recs_a), (&b, recs_b)] {
            let seqs = store.apply(recs.clone()).await.unwrap();
            assert_eq!(seqs.len(), recs.len(), "{}", store.url());
            for (r, s) in recs.iter().zip(seqs) {
                written.push((s, r.op, r.key.to_vec()));
                match r.op {
                    Op::Upsert => {
                        model.insert(r.key.to_vec(), (r.value.clone().unwrap().to_vec(), s));
                    }
                    Op::Delete => {
                        model.remove(&r.key[..]);
                    }
                }
            }
        }
    }
    let want: Vec<u64> = (base + 1..=base + written.len() as u64).collect();
    assert_eq!(
        written.iter().map(|w| w.0).collect::<Vec<_>>(),
        want,
        "{}: one gapless run of sequence numbers",
        a.url()
    );
    let snap = b.scan("flow-mapping").await.unwrap();
    assert_eq!(snap.seq, *want.last().unwrap());
    let mine: BTreeMap<Vec<u8>, (Vec<u8>, u64)> = snap
        .records
        .iter()
        .filter(|r| r.origin.as_ref() == "w")
        .map(|r| (r.key.to_vec(), (r.value.clone().unwrap().to_vec(), r.seq)))
        .collect();
    assert_eq!(mine.len(), model.len(), "{}", a.url());
    assert!(
        mine == model,
        "{}: the state and its sequence numbers",
        a.url()
    );
    let (k, (_, s)) = model.iter().next_back().unwrap();
    assert_eq!(a.get("flow-mapping", k).await.unwrap().unwrap().seq, *s);
    // A watch from the middle of the first batch sees the rest, in order, each write once.
    let from = base + 7;
    let mut w = a.watch("flow-mapping", from).await.unwrap();
    for (s, op, key) in &written[7..] {
        let r = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("watch stalled")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.seq, r.op, &r.key[..]),
            (*s, *op, &key[..]),
            "{}",
            a.url()
        );
    }
}
