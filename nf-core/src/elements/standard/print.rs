//! `Print`: prints a line per packet.

use crate::args::Args;
use crate::batch::{Batch, Outputs};
use crate::element::Element;
use crate::element::ElementClass;
use crate::error::ConfigError;
use std::io::Write;

/// Prints each packet to standard error as `LABEL: LENGTH | hex bytes`, then forwards it.
///
/// # Ports
/// One agnostic input, one agnostic output.
///
/// # Arguments
/// `LABEL` (optional); `MAXLENGTH` (default 24): bytes of data to show; `TIMESTAMP` (default false).
///
/// # Handlers
/// None.
///
/// # Example
/// ```
/// let r = nf_core::testing::run_config(
///     "InfiniteSource(LIMIT 1, STOP true) -> Print(hello, MAXLENGTH 4) -> Discard;").unwrap();
/// assert_eq!(r.names().count(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct Print {
    label: String,
    max: usize,
    timestamp: bool,
}

impl Print {
    /// A printer.
    pub fn new(label: impl Into<String>, max: usize, timestamp: bool) -> Self {
        Print {
            label: label.into(),
            max,
            timestamp,
        }
    }

    /// The line printed for a packet.
    pub fn format(&self, p: &crate::packet::Packet) -> String {
        let mut s = String::new();
        if !self.label.is_empty() {
            s.push_str(&self.label);
            s.push_str(": ");
        }
        if self.timestamp {
            s.push_str(&format!("{}: ", p.anno.timestamp));
        }
        s.push_str(&format!("{:4} |", p.len()));
        for (i, b) in p.data().iter().take(self.max).enumerate() {
            if i % 4 == 0 {
                s.push(' ');
            }
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl Element for Print {
    fn class_name(&self) -> &'static str {
        Self::NAME
    }
    fn push(&mut self, _port: usize, batch: &mut Batch, out: &mut Outputs) {
        let stderr = std::io::stderr();
        let mut w = stderr.lock();
        for p in batch.iter() {
            let _ = writeln!(w, "{}", self.format(p));
        }
        out.port(0).append(batch);
    }
}

impl ElementClass for Print {
    const NAME: &'static str = "Print";
    const DOC: &'static str = "prints packets to standard error";
    fn configure(a: &mut Args) -> Result<Self, ConfigError> {
        let label: String = a.read_p_or("LABEL", String::new())?;
        let max: usize = a.read_or("MAXLENGTH", 24)?;
        let ts: bool = a.read_or("TIMESTAMP", false)?;
        Ok(Print::new(label, max, ts))
    }
}
