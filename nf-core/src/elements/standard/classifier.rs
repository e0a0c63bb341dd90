//! `Classifier`: chooses the output by byte patterns (Click's syntax).

use crate::args::Args;
use crate::args::RawArg;
use crate::batch::{Batch, Outputs};
use crate::element::ElementClass;
use crate::element::{Element, HandlerSpec, PortCount, PortSpec};
use crate::error::ConfigError;

#[derive(Debug, Clone)]
struct Clause {
    offset: usize,
    value: Vec<u8>,
    mask: Vec<u8>,
    negate: bool,
}

/// Sends each packet to the output of the first pattern it matches; a packet that matches none is dropped
/// (and counted).
///
/// A pattern is `-` (matches everything) or clauses joined by spaces, all of which must hold:
/// `OFFSET/VALUE` (hex bytes at byte `OFFSET` of the data; `?` is a wildcard nibble), optionally
/// `%MASK`, optionally preceded by `!` (the clause must not hold). `12/0800` is IPv4 over Ethernet,
/// `12/0806 20/0001` is an ARP request.
///
/// # Ports
/// One push input; one push output per pattern.
///
/// # Arguments
/// The patterns, one per output, in order (positional).
///
/// # Handlers
/// `dropped` (read): packets that matched no pattern.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 10, STOP true) -> c :: Classifier(12/0806, 12/0800, -);
///     c[0] -> Discard; c[1] -> ip :: Counter -> Discard; c[2] -> Discard;").unwrap();
/// assert_eq!(r.read_handler("ip", "count").unwrap(), "10");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    patterns: Vec<Vec<Clause>>,
    dropped: u64,
}

impl Classifier {
    /// A classifier from pattern texts.
    pub fn new(patterns: &[&str]) -> Result<Self, String> {
        let patterns = patterns
            .iter()
            .map(|p| parse_pattern(p))
            .collect::<Result<_, _>>()?;
        Ok(Classifier {
            patterns,
            dropped: 0,
        })
    }

    pub(crate) fn from_raw(
        args: &crate::args::Args,
        raw: Vec<RawArg>,
    ) -> Result<Self, crate::error::ConfigError> {
        if raw.is_empty() {
            return Err(args.error("needs at least one pattern"));
        }
        let mut patterns = Vec::new();
        for r in raw {
            patterns.push(parse_pattern(&r.text).map_err(|e| args.error_at(r.span, e))?);
        }
        Ok(Classifier {
            patterns,
            dropped: 0,
        })
    }

    /// The first pattern `data` matches.
    #[inline]
    pub fn classify(&self, data: &[u8]) -> Option<usize> {
        self.patterns
            .iter()
            .position(|clauses| clauses.iter().all(|c| matches(c, data)))
    }
}

#[inline]
fn matches(c: &Clause, data: &[u8]) -> bool {
    let hit = match data.get(c.offset..c.offset + c.value.len()) {
        Some(bytes) => bytes
            .iter()
            .zip(&c.value)
            .zip(&c.mask)
            .all(|((b, v), m)| b & m == *v),
        None => false,
    };
    hit != c.negate
}

fn parse_pattern(p: &str) -> Result<Vec<Clause>, String> {
    let p = p.trim();
    if p == "-" {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for word in p.split_whitespace() {
        let (negate, w) = match word.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, word),
        };
        let (off, rest) = w
            .split_once('/')
            .ok_or_else(|| format!("clause `{word}` is not OFFSET/VALUE"))?;
        let offset: usize = off
            .parse()
            .map_err(|_| format!("`{off}` is not an offset"))?;
        let (val, mask) = match rest.split_once('%') {
            Some((v, m)) => (v, Some(m)),
            None => (rest, None),
        };
        if val.is_empty() || val.len() % 2 != 0 {
            return Err(format!(
                "value `{val}` must have an even number of hex digits"
            ));
        }
        let mut value = Vec::new();
        let mut vmask = Vec::new();
        let vb = val.as_bytes();
        for i in (0..vb.len()).step_by(2) {
            let mut v = 0u8;
            let mut m = 0u8;
            for (k, &c) in vb[i..i + 2].iter().enumerate() {
                let shift = if k == 0 { 4 } else { 0 };
                if c == b'?' {
                    continue;
                }
                let d = (c as char)
                    .to_digit(16)
                    .ok_or_else(|| format!("`{val}` is not hex"))? as u8;
                v |= d << shift;
                m |= 0xf << shift;
            }
            value.push(v);
            vmask.push(m);
        }
        if let Some(m) = mask {
            let mb = crate::args::parse_hex(m)?;
            if mb.len() != value.len() {
                return Err(format!("mask `{m}` must be as long as the value"));
            }
            for (x, y) in vmask.iter_mut().zip(mb) {
                *x &= y;
            }
        }
        for (v, m) in value.iter_mut().zip(&vmask) {
            *v &= m;
        }
        out.push(Clause {
            offset,
            value,
            mask: vmask,
            negate,
        });
    }
    Ok(out)
}

const HANDLERS: &[HandlerSpec] = &[HandlerSpec::read(
    "dropped",
    "packets that matched no pattern",
)];

impl Element for Classifier {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(
            PortCount::exactly(1),
            PortCount::exactly(self.patterns.len()),
            "h/h",
        )
    }
    #[inline]
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let mut dropped = 0;
        let this = &*self;
        batch.classify_to(out, |p| {
            let r = this.classify(p.data());
            dropped += u64::from(r.is_none());
            r
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

impl ElementClass for Classifier {
    const NAME: &'static str = "Classifier";
    const DOC: &'static str = "chooses the output by byte patterns (12/0800, -)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let raw = a.rest_raw();
        Classifier::from_raw(a, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let c = Classifier::new(&["12/0800 23/06", "12/08??", "!12/0800", "-"]).unwrap();
        let mut f = vec![0u8; 40];
        f[12] = 8;
        f[23] = 6;
        assert_eq!(c.classify(&f), Some(0));
        f[23] = 17;
        assert_eq!(c.classify(&f), Some(1));
        f[12] = 0x86;
        assert_eq!(c.classify(&f), Some(2));
        assert_eq!(c.classify(&[]), Some(2));
        assert!(Classifier::new(&["12/080"]).is_err());
        assert!(Classifier::new(&["x/08"]).is_err());
        let m = Classifier::new(&["0/ff%0f"]).unwrap();
        assert_eq!(m.classify(&[0x0f]), Some(0));
        assert_eq!(m.classify(&[0x0e]), None);
    }
}
