//! Synthetic traffic: valid Ethernet/IPv4 TCP and UDP frames over many flows, for sources, tests and
//! benchmarks (`nf pcap gen` writes its output to a pcap file so that every figure can be reproduced).
//!
//! Each TCP flow starts with a SYN, answered by a SYN-ACK, then an ACK, then data both ways; UDP flows
//! alternate directions. Checksums are valid (frames are built with `etherparse`'s `PacketBuilder`).

use crate::packet::Packet;
use etherparse::PacketBuilder;
use std::net::Ipv4Addr;

/// Frame sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SizeMix {
    /// Every frame this many bytes (at least the headers: 54 for TCP, 42 for UDP).
    Fixed(usize),
    /// Simple IMIX: 64, 576 and 1500-byte frames in the ratio 7:4:1.
    #[default]
    Imix,
}

/// Which transport protocols to generate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocols {
    /// Half the flows TCP, half UDP.
    #[default]
    Mixed,
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
}

impl crate::args::FromArg for SizeMix {
    const EXPECTED: &'static str = "imix or a frame length from 54 to 9000";
    fn from_arg(s: &str) -> Result<Self, String> {
        match s.trim() {
            "imix" => Ok(SizeMix::Imix),
            n => match n.parse::<usize>() {
                Ok(v) if (54..=9000).contains(&v) => Ok(SizeMix::Fixed(v)),
                _ => Err(format!("`{n}` is not imix or 54..9000")),
            },
        }
    }
}

impl crate::args::FromArg for Protocols {
    const EXPECTED: &'static str = "udp, tcp or mixed";
    fn from_arg(s: &str) -> Result<Self, String> {
        match s.trim() {
            "udp" => Ok(Protocols::Udp),
            "tcp" => Ok(Protocols::Tcp),
            "mixed" => Ok(Protocols::Mixed),
            o => Err(format!("`{o}` is not a protocol mix")),
        }
    }
}

/// How packets spread over the flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spread {
    /// Every flow sends as many packets.
    #[default]
    Even,
    /// `flows` flows (the first ones) carry `percent` % of the packets between them; the rest share
    /// what is left evenly (elephants and mice).
    Heavy {
        /// How many heavy flows.
        flows: usize,
        /// Their share of the packets, 1 to 99.
        percent: u8,
    },
    /// Flows chosen so that static RSS over two shards
    /// ([`frame_shard`](crate::flow::frame_shard)`(frame, 2)`) gives shard 0 `percent` % of the packets.
    ShardSkew {
        /// Shard 0's share of the packets, 0 to 100.
        percent: u8,
    },
}

/// How the traffic looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrafficConfig {
    /// Number of flows.
    pub flows: usize,
    /// Frame sizes.
    pub size: SizeMix,
    /// Protocols.
    pub protocols: Protocols,
    /// Seed of the packet order.
    pub seed: u64,
    /// Generate replies (server to client) as well as requests.
    pub bidirectional: bool,
    /// How packets spread over the flows.
    pub spread: Spread,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            flows: 10_000,
            size: SizeMix::Fixed(64),
            protocols: Protocols::Mixed,
            seed: 1,
            bidirectional: true,
            spread: Spread::Even,
        }
    }
}

#[derive(Clone, Debug)]
struct Flow {
    tcp: bool,
    client: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
    sent: u64,
    cseq: u32,
    sseq: u32,
}

/// A generator of frames.
#[derive(Debug)]
pub struct TrafficGen {
    cfg: TrafficConfig,
    flows: Vec<Flow>,
    rng: u64,
    order: Vec<u32>,
    pos: usize,
    imix: u32,
    frame: Vec<u8>,
}

const PAYLOAD: [u8; 1500] = [0x61; 1500];

impl TrafficConfig {
    /// The largest frame this configuration generates.
    pub fn max_frame_len(&self) -> usize {
        match self.size {
            SizeMix::Fixed(n) => n,
            SizeMix::Imix => 1518,
        }
    }

    /// Bytes a [`TrafficGen`] for this configuration holds (its per-flow state).
    pub fn memory(&self) -> u64 {
        (self.flows.max(1) as u64).saturating_mul(std::mem::size_of::<Flow>() as u64)
    }
}

impl TrafficGen {
    /// A generator for `cfg`.
    pub fn new(cfg: TrafficConfig) -> Self {
        let n = cfg.flows.max(1);
        let flows: Vec<Flow> = match cfg.spread {
            Spread::ShardSkew { percent } => {
                // The first flows of each static shard, as many of each as the share asks.
                let want0 = (n * usize::from(percent.min(100))).div_ceil(100);
                let want = [want0, n - want0];
                let mut have = [0usize; 2];
                let mut v = Vec::with_capacity(n);
                let mut i = 0;
                while v.len() < n && i < 0xfffe * 64 {
                    let f = Self::flow(&cfg, i);
                    let s = crate::flow::shard_of(f.key().rss_hash(), 2);
                    if have[s] < want[s] {
                        have[s] += 1;
                        v.push(f);
                    }
                    i += 1;
                }
                v
            }
            _ => (0..n).map(|i| Self::flow(&cfg, i)).collect(),
        };
        let n = flows.len().max(1);
        // Each flow's place in a round's order, once per packet it sends in a round.
        let order = match cfg.spread {
            Spread::Heavy { flows: k, percent } if k > 0 && k < n => {
                let p = u64::from(percent.clamp(1, 99));
                let light = (n - k) as u64;
                let weight = ((p * light) / ((100 - p) * k as u64)).max(1) as usize;
                (0..n as u32)
                    .flat_map(|i| std::iter::repeat_n(i, if (i as usize) < k { weight } else { 1 }))
                    .collect()
            }
            _ => (0..n as u32).collect(),
        };
        let mut g = TrafficGen {
            cfg,
            flows,
            rng: cfg.seed | 1,
            order,
            pos: 0,
            imix: 0,
            frame: Vec::with_capacity(1600),
        };
        g.shuffle();
        g
    }

    /// Flow number `i` of `cfg`.
    fn flow(cfg: &TrafficConfig, i: usize) -> Flow {
        let i32 = i as u32;
        let tcp = match cfg.protocols {
            Protocols::Tcp => true,
            Protocols::Udp => false,
            Protocols::Mixed => i.is_multiple_of(2),
        };
        Flow {
            tcp,
            client: (
                Ipv4Addr::from(0x0a00_0000 | (i32 % 0xfffe + 1)),
                1024 + (i32.wrapping_mul(7919) % 60000) as u16,
            ),
            server: (
                Ipv4Addr::from(0xc0a8_0000 | (i32 % 254 + 1)),
                if tcp { 80 } else { 53 },
            ),
            sent: 0,
            cseq: i32.wrapping_mul(2654435761),
            sseq: i32.wrapping_mul(40503).wrapping_add(17),
        }
    }
}

impl Flow {
    /// The flow's five-tuple (client to server).
    fn key(&self) -> crate::FlowKey {
        crate::FlowKey::new(
            if self.tcp { 6 } else { 17 },
            self.client.0.into(),
            self.client.1,
            self.server.0.into(),
            self.server.1,
        )
    }
}

impl TrafficGen {
    fn next_rand(&mut self) -> u64 {
        crate::hash::xorshift64_star(&mut self.rng)
    }

    fn shuffle(&mut self) {
        for i in (1..self.order.len()).rev() {
            let j = (self.next_rand() % (i as u64 + 1)) as usize;
            self.order.swap(i, j);
        }
    }

    fn frame_len(&mut self) -> usize {
        match self.cfg.size {
            SizeMix::Fixed(n) => n,
            SizeMix::Imix => {
                self.imix = (self.imix + 1) % 12;
                match self.imix {
                    0..=6 => 64,
                    7..=10 => 576,
                    _ => 1500,
                }
            }
        }
    }

    /// The next frame, valid until the next call.
    pub fn next_frame(&mut self) -> &[u8] {
        if self.pos == self.order.len() {
            self.pos = 0;
            self.shuffle();
        }
        let fi = self.order[self.pos] as usize;
        self.pos += 1;
        let len = self.frame_len();
        let bidir = self.cfg.bidirectional;
        let f = &mut self.flows[fi];
        let k = f.sent;
        f.sent += 1;
        // Direction: requests on even steps, replies on odd ones (when bidirectional).
        let reply = bidir && k % 2 == 1;
        let (src, dst) = if reply {
            (f.server, f.client)
        } else {
            (f.client, f.server)
        };
        let mac_c = [0x02, 0, 0, 0, 0, 1];
        let mac_s = [0x02, 0, 0, 0, 0, 2];
        let (ms, md) = if reply {
            (mac_s, mac_c)
        } else {
            (mac_c, mac_s)
        };
        let base = PacketBuilder::ethernet2(ms, md).ipv4(src.0.octets(), dst.0.octets(), 64);
        self.frame.clear();
        let res = if f.tcp {
            let hdr = 14 + 20 + 20;
            let pay = len.saturating_sub(hdr);
            let (seq, ack) = if reply {
                (f.sseq, f.cseq)
            } else {
                (f.cseq, f.sseq)
            };
            let mut b = base.tcp(src.1, dst.1, seq, 65535);
            b = match (k, bidir) {
                (0, _) => b.syn(),
                (1, true) => b.syn().ack(ack.wrapping_add(1)),
                _ => b.ack(ack.wrapping_add(1)).psh(),
            };
            let pay = if k == 0 || (k == 1 && bidir) { 0 } else { pay };
            let r = b.write(&mut self.frame, &PAYLOAD[..pay.min(1500)]);
            let adv = if k == 0 || (k == 1 && bidir) {
                1
            } else {
                pay as u32
            };
            if reply {
                f.sseq = f.sseq.wrapping_add(adv);
            } else {
                f.cseq = f.cseq.wrapping_add(adv);
            }
            r
        } else {
            let pay = len.saturating_sub(14 + 20 + 8);
            base.udp(src.1, dst.1)
                .write(&mut self.frame, &PAYLOAD[..pay.min(1500)])
        };
        debug_assert!(res.is_ok());
        // Ethernet padding up to the requested frame size.
        if self.frame.len() < len {
            self.frame.resize(len, 0);
        }
        &self.frame
    }

    /// The next frame as a pooled packet.
    pub fn next_packet(&mut self) -> Packet {
        Packet::from_slice(self.next_frame())
    }

    /// `n` frames as packets.
    pub fn packets(&mut self, n: usize) -> Vec<Packet> {
        (0..n).map(|_| self.next_packet()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_valid() {
        let mut g = TrafficGen::new(TrafficConfig {
            flows: 10,
            ..Default::default()
        });
        for _ in 0..100 {
            let f = g.next_frame().to_vec();
            assert_eq!(f.len(), 64);
            let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
            assert!(p.transport.is_some());
        }
        let mut g = TrafficGen::new(TrafficConfig {
            flows: 3,
            size: SizeMix::Imix,
            ..Default::default()
        });
        let sizes: Vec<usize> = (0..12).map(|_| g.next_frame().len()).collect();
        assert!(sizes.contains(&576) && sizes.contains(&1500) && sizes.contains(&64));
    }

    #[test]
    fn first_tcp_packet_is_syn() {
        let mut g = TrafficGen::new(TrafficConfig {
            flows: 4,
            protocols: Protocols::Tcp,
            ..Default::default()
        });
        let mut seen = std::collections::HashSet::new();
        for _ in 0..16 {
            let f = g.next_frame().to_vec();
            let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
            if let Some(etherparse::TransportSlice::Tcp(t)) = p.transport {
                let key = (
                    t.source_port().min(t.destination_port()),
                    t.source_port().max(t.destination_port()),
                );
                if seen.insert(key) {
                    assert!(t.syn() && !t.ack(), "first packet of a flow must be a SYN");
                }
            }
        }
    }
}
