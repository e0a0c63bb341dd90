//! The kernel's side of the indirection table: a classic BPF program for `PACKET_FANOUT_CBPF` that sends
//! each frame to the socket (shard) the run's [`Indirection`] table names for the frame's bucket, so
//! that live traffic is dispatched exactly as [`frame_shard`](nf_core::flow::frame_shard) and the
//! sharded file readers dispatch it, and a rebalance is one program swap.
//!
//! The program computes the symmetric RSS hash's bucket without the hash: the symmetric key repeats
//! every 16 bits, so the hash depends only on the XOR `W` of the 16-bit words of the addresses and ports
//! (the fold [`FrameHasher`](nf_core::flow::FrameHasher) uses), and is linear in `W`; so is its bucket
//! (its top bits). The program XORs the words, folds them to `W`, then XORs one constant per set bit of
//! `W` (sixteen at most) and looks the bucket up in the table by a binary search over the table's runs.
//! ICMP echo messages carry their identifier as both "ports", which cancel in `W`, as does anything
//! without ports: the program skips the ports there. IPv4 with options, fragments (no ports), IPv6 (TCP
//! and UDP right after the fixed header; behind extension headers a flow is hashed on its addresses
//! only: still one shard for all its packets, but its state may not follow a bucket move) and other
//! frames (ARP and the like: bucket 0) are handled. Loads are relative to the network header
//! (`SKF_NET_OFF`), which the kernel finds for received and sent frames alike.

use nf_core::indirection::{BUCKETS, Indirection};

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// The opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// The operand.
    pub k: u32,
}

/// The most instructions a classic BPF program may have (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

// Opcodes (linux/filter.h, linux/bpf_common.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const MSH: u16 = 0xa0;
const AND: u16 = 0x50;
const RSH: u16 = 0x70;
const XOR: u16 = 0xa0;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
const K: u16 = 0x00;
const X: u16 = 0x08;
const TAX: u16 = 0x00;

/// `SKF_NET_OFF`: offsets from the network header.
const NET: u32 = (-0x0010_0000i32) as u32;
/// `SKF_AD_OFF + SKF_AD_PROTOCOL`: the frame's protocol (ethertype), host order.
const AD_PROTOCOL: u32 = (-0x1000i32) as u32;

/// A program under construction, with labels resolved at the end.
struct Asm {
    code: Vec<Insn>,
    /// (instruction, label) pairs whose `jt`/`jf` or `k` (for `ja`) name a label.
    fixups: Vec<(usize, Fix)>,
    labels: Vec<Option<usize>>,
}

#[derive(Clone, Copy)]
enum Fix {
    /// A conditional jump: true and false targets (`None`: the next instruction).
    Cond(Option<usize>, Option<usize>),
    /// An unconditional jump.
    Always(usize),
}

impl Asm {
    fn new() -> Self {
        Asm {
            code: Vec::new(),
            fixups: Vec::new(),
            labels: Vec::new(),
        }
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn here(&mut self, l: usize) {
        self.labels[l] = Some(self.code.len());
    }
    fn op(&mut self, code: u16, k: u32) {
        self.code.push(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        });
    }
    fn jump(&mut self, code: u16, k: u32, jt: Option<usize>, jf: Option<usize>) {
        self.fixups.push((self.code.len(), Fix::Cond(jt, jf)));
        self.op(JMP | code | K, k);
    }
    fn ja(&mut self, to: usize) {
        self.fixups.push((self.code.len(), Fix::Always(to)));
        self.op(JMP | JA, 0);
    }
    /// Resolves the labels; `None` if a conditional jump is too long (over 255 instructions).
    fn finish(mut self) -> Option<Vec<Insn>> {
        for (at, fix) in std::mem::take(&mut self.fixups) {
            let target = |l: usize| -> Option<usize> { self.labels.get(l).copied().flatten() };
            match fix {
                Fix::Cond(jt, jf) => {
                    let off = |l: Option<usize>| -> Option<u8> {
                        match l {
                            None => Some(0),
                            Some(l) => u8::try_from(target(l)?.checked_sub(at + 1)?).ok(),
                        }
                    };
                    let (t, f) = (off(jt)?, off(jf)?);
                    self.code[at].jt = t;
                    self.code[at].jf = f;
                }
                Fix::Always(l) => {
                    self.code[at].k = u32::try_from(target(l)?.checked_sub(at + 1)?).ok()?;
                }
            }
        }
        Some(self.code)
    }
}

/// The bucket of a folded word `w` (the XOR of the 16-bit words of a flow's addresses and ports) under
/// the symmetric RSS key: what the program computes.
fn bucket_of_word(w: u16) -> usize {
    let [a, b] = w.to_be_bytes();
    let input = [a, b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    nf_core::indirection::bucket_of(nf_core::hash::toeplitz::symmetric().hash(&input))
}

/// The program that sends each frame to the socket of index `table.owner(bucket)` (sockets of a fanout
/// group are numbered in the order they joined it: shard order). `None` if it would not fit in
/// [`MAX_INSNS`] (it always does for [`BUCKETS`] buckets).
pub fn program(table: &Indirection) -> Option<Vec<Insn>> {
    let mut a = Asm::new();
    let (v4, v6, other) = (a.label(), a.label(), a.label());
    let (v4_ports, v4_addrs, v6_ports, v6_addrs, fold) =
        (a.label(), a.label(), a.label(), a.label(), a.label());
    // The ethertype.
    a.op(LD | H | ABS, AD_PROTOCOL);
    a.jump(JEQ, 0x0800, Some(v4), None);
    a.jump(JEQ, 0x86dd, Some(v6), Some(other));

    // IPv4: ports for an unfragmented TCP or UDP datagram (M[0]), then the addresses.
    a.here(v4);
    a.op(LD | IMM, 0);
    a.op(ST, 0);
    a.op(LD | H | ABS, NET.wrapping_add(6));
    a.jump(JSET, 0x3fff, Some(v4_addrs), None);
    a.op(LD | B | ABS, NET.wrapping_add(9));
    a.jump(JEQ, 6, Some(v4_ports), None);
    a.jump(JEQ, 17, Some(v4_ports), Some(v4_addrs));
    a.here(v4_ports);
    a.op(LDX | B | MSH, NET);
    a.op(LD | W | IND, NET);
    a.op(ST, 0);
    a.here(v4_addrs);
    a.op(LD | W | ABS, NET.wrapping_add(12));
    a.op(MISC | TAX, 0);
    a.op(LD | W | ABS, NET.wrapping_add(16));
    a.op(ALU | XOR | X, 0);
    a.op(MISC | TAX, 0);
    a.op(LD | MEM, 0);
    a.op(ALU | XOR | X, 0);
    a.ja(fold);

    // IPv6: ports for TCP or UDP right after the fixed header, then the eight address words.
    a.here(v6);
    a.op(LD | IMM, 0);
    a.op(ST, 0);
    a.op(LD | B | ABS, NET.wrapping_add(6));
    a.jump(JEQ, 6, Some(v6_ports), None);
    a.jump(JEQ, 17, Some(v6_ports), Some(v6_addrs));
    a.here(v6_ports);
    a.op(LD | W | ABS, NET.wrapping_add(40));
    a.op(ST, 0);
    a.here(v6_addrs);
    for i in 0..8u32 {
        a.op(LD | W | ABS, NET.wrapping_add(8 + 4 * i));
        a.op(MISC | TAX, 0);
        a.op(LD | MEM, 0);
        a.op(ALU | XOR | X, 0);
        a.op(ST, 0);
    }
    a.ja(fold);

    // Anything else: bucket 0.
    a.here(other);
    a.op(LD | IMM, 0);
    a.op(ST, 1);
    let lookup = a.label();
    a.ja(lookup);

    // Fold the 32-bit XOR to W, then the bucket: one constant per set bit of W, XORed into M[1].
    a.here(fold);
    a.op(MISC | TAX, 0);
    a.op(ALU | RSH | K, 16);
    a.op(ALU | XOR | X, 0);
    a.op(ALU | AND | K, 0xffff);
    a.op(ST, 0);
    a.op(LD | IMM, 0);
    a.op(ST, 1);
    for bit in 0..16u32 {
        let skip = a.label();
        a.op(LD | MEM, 0);
        a.jump(JSET, 1 << bit, None, Some(skip));
        a.op(LD | MEM, 1);
        a.op(ALU | XOR | K, bucket_of_word(1 << bit) as u32);
        a.op(ST, 1);
        a.here(skip);
    }

    // The owner: a binary search over the table's runs (bucket in A).
    a.here(lookup);
    a.op(LD | MEM, 1);
    let mut runs: Vec<(usize, usize)> = Vec::new(); // (first bucket, owner)
    for b in 0..BUCKETS {
        if runs.last().is_none_or(|&(_, o)| o != table.owner(b)) {
            runs.push((b, table.owner(b)));
        }
    }
    search(&mut a, &runs);
    let code = a.finish()?;
    (code.len() <= MAX_INSNS).then_some(code)
}

/// A search over `runs` (sorted by first bucket) with the bucket in A: `jge` nodes laid out in preorder,
/// each node's "at least" side reached through a `ja` (whose offset is not limited to 255), its other
/// side right after; leaves return the run's owner.
fn search(a: &mut Asm, runs: &[(usize, usize)]) {
    match runs {
        [] => a.op(RET | K, 0),
        [(_, owner)] => a.op(RET | K, *owner as u32),
        _ => {
            let mid = runs.len() / 2;
            let right = a.label();
            let left = a.label();
            a.jump(JGE, runs[mid].0 as u32, None, Some(left));
            a.ja(right);
            a.here(left);
            search(a, &runs[..mid]);
            a.here(right);
            search(a, &runs[mid..]);
        }
    }
}

/// Runs `prog` on a frame as the kernel would for a fanout decision (the tests' reference): `net` is the
/// offset of the network header in `frame`, `proto` the frame's ethertype. A load out of the frame ends
/// the program with 0, as in the kernel. `None` for an instruction this module never emits.
#[cfg(test)]
fn interpret(prog: &[Insn], frame: &[u8], net: usize, proto: u16) -> Option<u32> {
    let (mut acc, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
    let load = |k: u32, size: usize, plus: u32| -> Option<Option<u32>> {
        if k == AD_PROTOCOL {
            return Some(Some(u32::from(proto)));
        }
        let off = (k.wrapping_sub(NET) as usize).wrapping_add(plus as usize);
        if k < NET {
            return None;
        }
        let at = net.checked_add(off)?;
        Some(
            frame
                .get(at..at + size)
                .map(|mut b| bytes::Buf::get_uint(&mut b, size) as u32),
        )
    };
    while let Some(i) = prog.get(pc) {
        pc += 1;
        let size = match i.code & 0x18 {
            W => 4,
            H => 2,
            _ => 1,
        };
        match i.code {
            c if c == LD | H | ABS || c == LD | B | ABS || c == LD | W | ABS => {
                match load(i.k, size, 0)? {
                    Some(v) => acc = v,
                    None => return Some(0),
                }
            }
            c if c == LD | W | IND => match load(i.k, 4, x)? {
                Some(v) => acc = v,
                None => return Some(0),
            },
            c if c == LDX | B | MSH => match load(i.k, 1, 0)? {
                Some(v) => x = (v & 0xf) * 4,
                None => return Some(0),
            },
            c if c == LD | IMM => acc = i.k,
            c if c == LD | MEM => acc = *mem.get(i.k as usize)?,
            ST => *mem.get_mut(i.k as usize)? = acc,
            c if c == MISC | TAX => x = acc,
            c if c == ALU | XOR | X => acc ^= x,
            c if c == ALU | XOR | K => acc ^= i.k,
            c if c == ALU | RSH | K => acc >>= i.k,
            c if c == ALU | AND | K => acc &= i.k,
            c if c == JMP | JA => pc += i.k as usize,
            c if c & 0x07 == JMP => {
                let taken = match c & 0xf0 {
                    JEQ => acc == i.k,
                    JGE => acc >= i.k,
                    JSET => acc & i.k != 0,
                    _ => return None,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            c if c == RET | K => return Some(i.k),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use nf_core::traffic::{Protocols, SizeMix, TrafficConfig, TrafficGen};

    fn decide(prog: &[Insn], frame: &[u8]) -> usize {
        let proto = nf_core::wire::EthernetFrame::new_checked(frame).map_or(0, |e| e.ethertype());
        interpret(prog, frame, 14, proto).expect("a valid program") as usize
    }

    #[test]
    fn the_program_agrees_with_frame_shard_on_generated_traffic() {
        for shards in [2, 3, 4] {
            let table = Indirection::round_robin(shards);
            let prog = program(&table).unwrap();
            assert!(prog.len() < MAX_INSNS, "{} instructions", prog.len());
            for proto in [Protocols::Tcp, Protocols::Udp] {
                let mut g = TrafficGen::new(TrafficConfig {
                    flows: 3000,
                    protocols: proto,
                    size: SizeMix::Fixed(128),
                    ..Default::default()
                });
                for _ in 0..6000 {
                    let f = g.next_frame();
                    assert_eq!(decide(&prog, f), nf_core::flow::frame_shard(f, shards));
                }
            }
        }
    }

    #[test]
    fn any_table_is_followed() {
        // A table moved at random, with long and short runs.
        let mut table = Indirection::round_robin(4);
        let mut r = 12345u64;
        for _ in 0..300 {
            r = r
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            table.set((r >> 33) as usize % BUCKETS, (r >> 20) as usize % 4);
        }
        for b in 100..180 {
            table.set(b, 2);
        }
        let prog = program(&table).unwrap();
        let hasher = nf_core::flow::FrameHasher::new(nf_core::hash::toeplitz::symmetric());
        let mut g = TrafficGen::new(TrafficConfig {
            flows: 5000,
            ..Default::default()
        });
        for _ in 0..10_000 {
            let f = g.next_frame();
            let want = table.shard_of(hasher.hash(f));
            assert_eq!(decide(&prog, f), want);
        }
    }

    #[test]
    fn other_frames_follow_frame_shard_too() {
        use etherparse::PacketBuilder;
        let table = Indirection::round_robin(3);
        let prog = program(&table).unwrap();
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let eth = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        for i in 0..200u16 {
            let a = [10, 0, (i >> 8) as u8, i as u8];
            let b = [192, 168, 1, (i % 250) as u8];
            // ICMP echo (identifier as both ports), IPv6 TCP and UDP, ICMPv6 echo.
            let mut f = Vec::new();
            eth()
                .ipv4(a, b, 64)
                .icmpv4_echo_request(i, 1)
                .write(&mut f, b"ping")
                .unwrap();
            frames.push(f);
            let a6 = [
                0x20,
                1,
                0xd,
                0xb8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                (i >> 8) as u8,
                i as u8,
            ];
            let b6 = [
                0x20,
                1,
                0xd,
                0xb8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                9,
                9,
                (i % 7) as u8,
            ];
            let mut f = Vec::new();
            eth()
                .ipv6(a6, b6, 64)
                .tcp(1000 + i, 443, 1, 100)
                .write(&mut f, b"x")
                .unwrap();
            frames.push(f);
            let mut f = Vec::new();
            eth()
                .ipv6(b6, a6, 64)
                .udp(53, 2000 + i)
                .write(&mut f, b"x")
                .unwrap();
            frames.push(f);
            let mut f = Vec::new();
            eth()
                .ipv6(a6, b6, 64)
                .icmpv6_echo_request(i, 3)
                .write(&mut f, b"x")
                .unwrap();
            frames.push(f);
            // IPv4 with options (IHL 6) carrying UDP.
            let mut f = Vec::new();
            eth()
                .ipv4(a, b, 64)
                .udp(3000 + i, 53)
                .write(&mut f, b"opts")
                .unwrap();
            f[14] = 0x46;
            f.splice(34..34, [1, 1, 1, 1]);
            frames.push(f);
            // A fragment (offset 8): no ports.
            let mut f = Vec::new();
            eth()
                .ipv4(a, b, 64)
                .udp(4000 + i, 80)
                .write(&mut f, b"fragment")
                .unwrap();
            f[20] = 0;
            f[21] = 1;
            frames.push(f);
        }
        // ARP: bucket 0.
        let mut arp = vec![0xffu8; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        frames.push(arp);
        for f in &frames {
            assert_eq!(
                decide(&prog, f),
                nf_core::flow::frame_shard(f, 3),
                "{:02x?}",
                &f[..f.len().min(60)]
            );
        }
    }

    #[test]
    fn a_truncated_frame_goes_to_socket_0() {
        let prog = program(&Indirection::round_robin(2)).unwrap();
        let mut g = TrafficGen::new(TrafficConfig::default());
        let f = g.next_frame();
        assert_eq!(decide(&prog, &f[..30]), 0);
    }
}
