//! `HashSwitch`: chooses the output by a hash of some bytes.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, InitContext, PortCount, PortSpec};
use crate::error::ConfigError;

/// Sends each packet to output `hash(data[OFFSET..OFFSET+LENGTH]) mod N`, so that packets with equal bytes
/// there take the same output. Packets too short are dropped (and counted).
///
/// # Ports
/// One push input; one or more push outputs.
///
/// # Arguments
/// `OFFSET`, `LENGTH` (mandatory).
///
/// # Handlers
/// `dropped` (read): packets too short for the hashed bytes.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 100, FLOWS 10, STOP true) -> h :: HashSwitch(26, 8);
///     h[0] -> a :: Counter -> Discard; h[1] -> b :: Counter -> Discard;").unwrap();
/// let a: u64 = r.read_handler("a", "count").unwrap().parse().unwrap();
/// let b: u64 = r.read_handler("b", "count").unwrap().parse().unwrap();
/// assert_eq!(a + b, 100);
/// ```
#[derive(Debug, Clone)]
pub struct HashSwitch {
    offset: usize,
    length: usize,
    n: usize,
    dropped: u64,
}

impl HashSwitch {
    /// Hashes `length` bytes at `offset`.
    pub fn new(offset: usize, length: usize) -> Self {
        HashSwitch {
            offset,
            length,
            n: 1,
            dropped: 0,
        }
    }
}

const HANDLERS: &[HandlerSpec] = &[HandlerSpec::read("dropped", "packets too short to hash")];

impl Element for HashSwitch {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::at_least(1), "h/h")
    }
    fn initialize(&mut self, ctx: &InitContext<'_>) -> Result<(), String> {
        self.n = ctx.noutputs.max(1);
        Ok(())
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let (o, l, n) = (self.offset, self.length, self.n);
        let mut dropped = 0;
        batch.classify_to(out, |p| match p.data().get(o..o + l) {
            Some(bytes) => {
                // The stable hash (every process sends a flow to the same output), spread over
                // the outputs by its high bits.
                Some(crate::hash::reduce(crate::hash::stable_hash(0, bytes), n))
            }
            None => {
                dropped += 1;
                None
            }
        });
        self.dropped += dropped;
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        (name == "dropped").then(|| self.dropped.to_string())
    }
}

impl ElementClass for HashSwitch {
    const NAME: &'static str = "HashSwitch";
    const DOC: &'static str = "chooses the output by a hash of bytes (OFFSET, LENGTH)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        Ok(HashSwitch::new(a.read_mp("OFFSET")?, a.read_mp("LENGTH")?))
    }
}
