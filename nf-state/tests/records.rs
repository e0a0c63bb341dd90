//! Records: round trips of every schema through both codecs and the framing; upgrades from an older
//! version; corrupt, truncated, oversized and unknown-format frames rejected with typed errors.

use nf_state::schemas::*;
use nf_state::{Codec, Error, Op, Record, RecordError, Schema, json_line};
use proptest::prelude::*;
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn frame(r: &Record) -> Vec<u8> {
    let mut v = Vec::new();
    r.encode_frame(&mut v).unwrap();
    v
}

fn roundtrip<S: Schema>(k: S::Key, v: S::Value) {
    for codec in [Codec::Bincode, Codec::Json] {
        let mut r = Record::upsert::<S>(codec, "node-a", &k, &v).unwrap();
        r.seq = 42;
        let f = frame(&r);
        let (back, n) = Record::decode_frame(&f).unwrap();
        assert_eq!(n, f.len());
        assert_eq!(back, r);
        assert_eq!(back.decode::<S>().unwrap(), (k.clone(), Some(v.clone())));
        let d = Record::delete::<S>(codec, "node-a", &k).unwrap();
        let (back, _) = Record::decode_frame(&frame(&d)).unwrap();
        assert_eq!(back.op, Op::Delete);
        assert_eq!(back.decode::<S>().unwrap(), (k.clone(), None));
        // The JSON line reads back to the same record contents.
        let line = json_line(&r).unwrap();
        let again = nf_state::schema::record_from_json(S::NAME, codec, "node-a", &line).unwrap();
        assert_eq!(again.decode::<S>().unwrap(), (k.clone(), Some(v.clone())));
    }
}

#[test]
fn every_schema_round_trips_through_every_codec() {
    roundtrip::<FlowMapping>(
        FlowMappingKey {
            proto: Proto::Tcp,
            client_ip: ip("10.0.0.5"),
            client_port: 40808,
        },
        FlowMappingValue {
            backend_ip: ip("2001:db8::3"),
            backend_port: 443,
        },
    );
    roundtrip::<NatBinding>(
        NatBindingKey {
            proto: Proto::Udp,
            client_ip: ip("10.0.0.5"),
            client_port: 1,
            server_ip: ip("8.8.8.8"),
            server_port: 53,
        },
        NatBindingValue {
            nat_ip: ip("192.0.2.1"),
            nat_port: 15715,
        },
    );
    roundtrip::<Conntrack>(
        FiveTuple {
            proto: Proto::Other(47),
            src_ip: ip("10.0.0.1"),
            src_port: 0,
            dst_ip: ip("10.0.0.2"),
            dst_port: 0,
        },
        ConntrackValue {
            state: ConnState::Established,
            timeout_secs: 7200,
            packets: [1, 2],
            bytes: [3, 4],
        },
    );
    roundtrip::<BackendLoad>(
        BackendKey {
            backend_ip: ip("10.1.0.3"),
            backend_port: 80,
        },
        BackendLoadValue {
            active_connections: 9,
            bytes: u64::MAX,
        },
    );
}

#[test]
fn a_version_1_flow_mapping_is_upgraded() {
    // A record as version 1 wrote it: the backend as one "ip:port" string.
    for codec in [Codec::Bincode, Codec::Json] {
        let key = FlowMappingKey {
            proto: Proto::Tcp,
            client_ip: ip("10.0.0.5"),
            client_port: 40808,
        };
        let old = Record {
            schema: "flow-mapping".into(),
            version: 1,
            codec,
            seq: 7,
            origin: "old-primary".into(),
            time: 1,
            op: Op::Upsert,
            key: codec.encode(&key).unwrap().into(),
            value: Some(
                codec
                    .encode(&FlowMappingV1Value {
                        backend: "10.1.0.3:80".into(),
                    })
                    .unwrap()
                    .into(),
            ),
        };
        let (back, _) = Record::decode_frame(&frame(&old)).unwrap();
        let (k, v) = back.decode::<FlowMapping>().unwrap();
        assert_eq!(k, key);
        assert_eq!(
            v,
            Some(FlowMappingValue {
                backend_ip: ip("10.1.0.3"),
                backend_port: 80
            })
        );
        // A version from the future is refused, not guessed at.
        let future = Record {
            version: 3,
            ..old.clone()
        };
        assert!(matches!(
            future.decode::<FlowMapping>(),
            Err(Error::UnsupportedVersion { found: 3, .. })
        ));
        // A broken version-1 value is a typed error.
        let bad = Record {
            value: Some(
                codec
                    .encode(&FlowMappingV1Value {
                        backend: "nope".into(),
                    })
                    .unwrap()
                    .into(),
            ),
            ..old
        };
        assert!(matches!(
            bad.decode::<FlowMapping>(),
            Err(Error::Codec { .. })
        ));
        assert!(matches!(
            bad.decode::<NatBinding>(),
            Err(Error::WrongSchema { .. })
        ));
    }
}

#[test]
fn corrupt_frames_are_typed_errors() {
    let r = Record::upsert::<BackendLoad>(
        Codec::Bincode,
        "n",
        &BackendKey {
            backend_ip: ip("10.1.0.3"),
            backend_port: 80,
        },
        &BackendLoadValue {
            active_connections: 1,
            bytes: 2,
        },
    )
    .unwrap();
    let f = frame(&r);
    // Every truncation.
    for n in 0..f.len() {
        assert!(
            matches!(
                Record::decode_frame(&f[..n]),
                Err(RecordError::Truncated { .. })
            ),
            "prefix {n}"
        );
    }
    // Every single-bit flip in the payload is caught by the CRC; in the length, by the CRC or the bounds.
    for i in 0..f.len() {
        for bit in 0..8 {
            let mut g = f.clone();
            g[i] ^= 1 << bit;
            assert!(
                Record::decode_frame(&g).is_err(),
                "flip byte {i} bit {bit} went unnoticed"
            );
        }
    }
    let mut big = f.clone();
    big[..4].copy_from_slice(&(64u32 << 20).to_le_bytes());
    assert!(matches!(
        Record::decode_frame(&big),
        Err(RecordError::Oversized { .. })
    ));
    // A valid CRC over a payload of an unknown format version.
    let mut p = Vec::new();
    r.encode_payload(&mut p).unwrap();
    p[0] = 9;
    let mut g = Vec::new();
    g.extend_from_slice(&(p.len() as u32).to_le_bytes());
    g.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
    g.extend_from_slice(&p);
    assert_eq!(
        Record::decode_frame(&g).unwrap_err(),
        RecordError::UnknownFormat(9)
    );
    assert!(matches!(
        Record::decode_payload(&[1, 9, 1]),
        Err(RecordError::Invalid { field: "op", .. })
    ));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Record::decode_frame(&b);
        let _ = Record::decode_payload(&b);
    }

    #[test]
    fn arbitrary_records_round_trip(
        schema in "[a-z-]{1,40}", origin in "[a-z0-9.-]{0,60}", seq: u64, time: u64, version: u16,
        key in proptest::collection::vec(any::<u8>(), 0..100),
        value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
        json: bool,
    ) {
        let r = Record {
            schema: schema.into(), version, codec: if json { Codec::Json } else { Codec::Bincode }, seq, origin: origin.into(), time,
            op: if value.is_some() { Op::Upsert } else { Op::Delete },
            key: key.into(), value: value.map(Into::into),
        };
        let f = frame(&r);
        let (back, n) = Record::decode_frame(&f).unwrap();
        prop_assert_eq!(n, f.len());
        prop_assert_eq!(back, r);
    }
}
