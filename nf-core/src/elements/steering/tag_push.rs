//! `TagPush`: adds a `ProcState` tag with a fixed value.

use super::{TagCarrier, carrier};
use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::{Element, ElementClass, HandlerSpec, PortCount, PortSpec};
use crate::error::ConfigError;

/// Adds the `ProcState` tag (a VLAN or MPLS header, or the annotation) with a fixed value.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// `CARRIER` (`vlan`, `mpls` or `anno`), `TAG` (default 0).
///
/// # Handlers
/// `dropped` (read): packets too short for a tag.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config("
///     InfiniteSource(LIMIT 3, STOP true) -> TagPush(vlan, 5) -> c :: Classifier(12/8100 14/0006, -);
///     c[0] -> t :: Counter -> TagPop(vlan) -> Classifier(12/0800) -> u :: Counter -> Discard;
///     c[1] -> Discard;").unwrap();
/// assert_eq!(r.read_handler("t", "count").unwrap(), "3");
/// assert_eq!(r.read_handler("u", "count").unwrap(), "3");
/// ```
#[derive(Debug, Clone)]
pub struct TagPush {
    carrier: TagCarrier,
    tag: u16,
    dropped: u64,
}

impl TagPush {
    /// Pushes `tag` with `carrier`.
    pub fn new(carrier: TagCarrier, tag: u16) -> Self {
        TagPush {
            carrier,
            tag,
            dropped: 0,
        }
    }
}

const TAG_HANDLERS: &[HandlerSpec] = &[HandlerSpec::read("dropped", "packets too short for a tag")];

impl Element for TagPush {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn ports(&self) -> PortSpec {
        PortSpec::new(PortCount::exactly(1), PortCount::exactly(1), "h/h")
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let (c, t) = (self.carrier, self.tag);
        let mut dropped = 0;
        batch.classify_to(out, |p| match c.push(p, t) {
            Ok(()) => Some(0),
            Err(_) => {
                dropped += 1;
                None
            }
        });
        self.dropped += dropped;
    }
    fn handlers(&self) -> &'static [HandlerSpec] {
        TAG_HANDLERS
    }
    fn read_handler(&self, name: &str) -> Option<String> {
        (name == "dropped").then(|| self.dropped.to_string())
    }
}

impl ElementClass for TagPush {
    const NAME: &'static str = "TagPush";
    const DOC: &'static str = "adds a ProcState tag (VLAN, MPLS or annotation)";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let c: String = a.read_mp("CARRIER")?;
        let c = carrier(a, &c)?;
        let tag: u16 = a.read_p_or("TAG", 0)?;
        if tag > c.max_tag() {
            return Err(a.error(format!(
                "TAG {tag} does not fit in {c:?} (at most {})",
                c.max_tag()
            )));
        }
        Ok(TagPush::new(c, tag))
    }
}
