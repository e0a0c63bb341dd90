//! Declarative, typed argument parsing for elements (Click's `Args`), with line-and-column errors.
//!
//! ```
//! # use nf_core::args::Args;
//! let mut a = Args::from_strs("Counter", &["1000", "STOP true"]);
//! let limit: u64 = a.read_mp("LIMIT").unwrap();
//! let stop: bool = a.read_or("STOP", false).unwrap();
//! a.complete().unwrap();
//! assert_eq!((limit, stop), (1000, true));
//! ```
//!
//! Positional arguments are read in order by [`Args::read_mp`] and [`Args::read_p`]; an argument whose
//! first word is in capitals and is followed by a value (`LIMIT 10`) is a keyword argument, read by name.
//! [`Args::complete`] rejects arguments nobody read.

use crate::error::{ConfigError, SourceFile, Span};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// One raw argument: its text (after `$variable` substitution) and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawArg {
    /// The text, trimmed.
    pub text: String,
    /// Where it is in the source.
    pub span: Span,
}

#[derive(Debug)]
struct Slot {
    keyword: Option<String>,
    value: String,
    span: Span,
    used: bool,
}

/// The arguments of one element, read by the element's constructor.
#[derive(Debug)]
pub struct Args {
    class: String,
    slots: Vec<Slot>,
    src: Option<Arc<SourceFile>>,
    whole: Span,
    budget: Arc<AtomicU64>,
    /// Every keyword the element asked for (for "did you mean" on a misspelt one).
    asked: std::cell::RefCell<Vec<String>>,
}

/// The memory a configuration's elements may allocate when they are made (pre-generated frames, preallocated
/// queues and tables), unless the builder sets another budget: 2 GiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 2 << 30;

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn keyword_of(text: &str) -> Option<(String, String)> {
    let t = text.trim_start();
    let end = t.find(char::is_whitespace)?;
    let (k, rest) = t.split_at(end);
    let kw = k.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && k.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    let rest = rest.trim();
    (kw && !rest.is_empty()).then(|| (k.to_string(), rest.to_string()))
}

impl Args {
    /// Arguments of an element of class `class`, from raw arguments of a configuration text.
    pub fn new(class: &str, raw: Vec<RawArg>, src: Option<Arc<SourceFile>>, whole: Span) -> Self {
        let slots = raw
            .into_iter()
            .map(|r| match keyword_of(&r.text) {
                Some((k, v)) => Slot {
                    keyword: Some(k),
                    value: v,
                    span: r.span,
                    used: false,
                },
                None => Slot {
                    keyword: None,
                    value: r.text,
                    span: r.span,
                    used: false,
                },
            })
            .collect();
        Args {
            class: class.to_string(),
            slots,
            src,
            whole,
            budget: Arc::new(AtomicU64::new(DEFAULT_MEMORY_BUDGET)),
            asked: Default::default(),
        }
    }

    /// Arguments given in code (no source text; errors carry no location).
    pub fn from_strs(class: &str, args: &[&str]) -> Self {
        let raw = args
            .iter()
            .map(|a| RawArg {
                text: a.trim().to_string(),
                span: Span::default(),
            })
            .collect();
        Args::new(class, raw, None, Span::default())
    }

    /// An error pointing at `span`.
    pub fn error_at(&self, span: Span, msg: impl Into<String>) -> ConfigError {
        ConfigError::at(
            self.src.as_deref(),
            span,
            format!("{}: {}", self.class, msg.into()),
        )
    }

    /// An error pointing at the whole argument list.
    pub fn error(&self, msg: impl Into<String>) -> ConfigError {
        self.error_at(self.whole, msg)
    }

    fn parse<T: FromArg>(&self, i: usize, name: &str) -> Result<T, ConfigError> {
        let s = &self.slots[i];
        T::from_arg(&s.value).map_err(|why| {
            self.error_at(s.span, format!("argument {name}: {why}"))
                .with_help(format!("expected {}", T::EXPECTED))
        })
    }

    fn keyword_index(&self, key: &str) -> Option<usize> {
        let mut asked = self.asked.borrow_mut();
        if !asked.iter().any(|k| k == key) {
            asked.push(key.to_string());
        }
        drop(asked);
        self.slots
            .iter()
            .position(|s| !s.used && s.keyword.as_deref() == Some(key))
    }

    fn next_positional(&self) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| !s.used && s.keyword.is_none())
    }

    /// A mandatory argument, given by keyword `key` or as the next positional argument.
    pub fn read_mp<T: FromArg>(&mut self, key: &str) -> Result<T, ConfigError> {
        self.read_p(key)?
            .ok_or_else(|| self.error(format!("missing mandatory argument {key}")))
    }

    /// An optional argument, given by keyword `key` or as the next positional argument.
    pub fn read_p<T: FromArg>(&mut self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.keyword_index(key).or_else(|| self.next_positional()) {
            Some(i) => {
                self.slots[i].used = true;
                self.parse(i, key).map(Some)
            }
            None => Ok(None),
        }
    }

    /// An optional keyword argument.
    pub fn read<T: FromArg>(&mut self, key: &str) -> Result<Option<T>, ConfigError> {
        match self.keyword_index(key) {
            Some(i) => {
                self.slots[i].used = true;
                self.parse(i, key).map(Some)
            }
            None => Ok(None),
        }
    }

    /// A keyword argument with a default, at most `max` (a size that decides what the element allocates:
    /// a value above `max` is an error pointing at the argument, before anything is allocated).
    pub fn read_at_most_or<T>(&mut self, key: &str, default: T, max: T) -> Result<T, ConfigError>
    where
        T: FromArg + PartialOrd + std::fmt::Display,
    {
        self.bounded(key, false, default, max)
    }

    /// A positional-or-keyword argument with a default, at most `max` (see [`Args::read_at_most_or`]).
    pub fn read_p_at_most_or<T>(&mut self, key: &str, default: T, max: T) -> Result<T, ConfigError>
    where
        T: FromArg + PartialOrd + std::fmt::Display,
    {
        self.bounded(key, true, default, max)
    }

    fn bounded<T>(
        &mut self,
        key: &str,
        positional: bool,
        default: T,
        max: T,
    ) -> Result<T, ConfigError>
    where
        T: FromArg + PartialOrd + std::fmt::Display,
    {
        let found = match self.keyword_index(key) {
            Some(i) => Some(i),
            None if positional => self.next_positional(),
            None => None,
        };
        let Some(i) = found else {
            return Ok(default);
        };
        self.slots[i].used = true;
        let v: T = self.parse(i, key)?;
        if v > max {
            return Err(self
                .error_at(
                    self.slots[i].span,
                    format!("{key} {v} is more than the limit {max}"),
                )
                .with_help(format!(
                    "{key} sets what this element allocates; at most {max}"
                )));
        }
        Ok(v)
    }

    /// Takes `bytes` from the memory budget of the configuration being built (shared by all its elements;
    /// [`DEFAULT_MEMORY_BUDGET`] unless the builder says otherwise), for an element that allocates that much
    /// when it is made. `what` names the arguments responsible. An error if the budget is spent, so a
    /// configuration cannot make its builder run out of memory.
    pub fn reserve(&self, what: &str, bytes: u64) -> Result<(), ConfigError> {
        use std::sync::atomic::Ordering;
        let taken = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            });
        match taken {
            Ok(_) => Ok(()),
            Err(left) => Err(self
                .error(format!(
                    "{what} would take {} of memory; {} is left of the configuration's memory budget",
                    human_bytes(bytes),
                    human_bytes(left)
                ))
                .with_help(format!("make {what} smaller")),
            ),
        }
    }

    /// Shares `budget` (bytes left) with other elements of one configuration (see [`Args::reserve`]).
    pub fn with_budget(mut self, budget: Arc<AtomicU64>) -> Self {
        self.budget = budget;
        self
    }

    /// A keyword argument with a default.
    pub fn read_or<T: FromArg>(&mut self, key: &str, default: T) -> Result<T, ConfigError> {
        Ok(self.read(key)?.unwrap_or(default))
    }

    /// A positional-or-keyword argument with a default.
    pub fn read_p_or<T: FromArg>(&mut self, key: &str, default: T) -> Result<T, ConfigError> {
        Ok(self.read_p(key)?.unwrap_or(default))
    }

    /// Every remaining positional argument, raw (for pattern lists such as `IPClassifier`'s).
    pub fn rest(&mut self) -> Vec<RawArg> {
        let mut v = Vec::new();
        for s in self
            .slots
            .iter_mut()
            .filter(|s| !s.used && s.keyword.is_none())
        {
            s.used = true;
            v.push(RawArg {
                text: s.value.clone(),
                span: s.span,
            });
        }
        v
    }

    /// Every remaining argument (positional or keyword), raw, as written.
    pub fn rest_raw(&mut self) -> Vec<RawArg> {
        let mut v = Vec::new();
        for s in self.slots.iter_mut().filter(|s| !s.used) {
            s.used = true;
            let text = match &s.keyword {
                Some(k) => format!("{k} {}", s.value),
                None => s.value.clone(),
            };
            v.push(RawArg { text, span: s.span });
        }
        v
    }

    /// Number of arguments not yet read.
    pub fn remaining(&self) -> usize {
        self.slots.iter().filter(|s| !s.used).count()
    }

    /// Fails if an argument was not read (a misspelt keyword, one argument too many).
    pub fn complete(self) -> Result<(), ConfigError> {
        match self.slots.iter().find(|s| !s.used) {
            None => Ok(()),
            Some(s) => Err(match &s.keyword {
                Some(k) => {
                    let e = self.error_at(s.span, format!("unknown keyword argument {k}"));
                    let asked = self.asked.borrow();
                    let close = asked
                        .iter()
                        .map(|a| (crate::registry::edit_distance(k, a), a))
                        .filter(|(d, a)| *d <= (a.len() / 3).max(1))
                        .min();
                    match close {
                        Some((_, a)) => e.with_help(format!("did you mean {a}?")),
                        None if asked.is_empty() => {
                            e.with_help(format!("{} takes no keyword arguments", self.class))
                        }
                        None => e.with_help(format!("{} takes {}", self.class, asked.join(", "))),
                    }
                }
                None => self.error_at(s.span, "too many arguments"),
            }),
        }
    }
}

/// A type an argument can be read as.
pub trait FromArg: Sized {
    /// What a valid value looks like (shown in errors).
    const EXPECTED: &'static str;
    /// Parses the argument text.
    fn from_arg(s: &str) -> Result<Self, String>;
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl FromArg for $t {
            const EXPECTED: &'static str = concat!("an integer (", stringify!($t), ")");
            fn from_arg(s: &str) -> Result<Self, String> {
                let t = s.trim().replace('_', "");
                let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    <$t>::from_str_radix(h, 16)
                } else {
                    t.parse::<$t>()
                };
                r.map_err(|e| format!("`{s}` is not a valid {}: {e}", stringify!($t)))
            }
        }
    )*};
}
int_arg!(u8, u16, u32, u64, usize, i32, i64);

impl FromArg for f64 {
    const EXPECTED: &'static str = "a number";
    fn from_arg(s: &str) -> Result<Self, String> {
        s.trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number"))
    }
}

impl FromArg for bool {
    const EXPECTED: &'static str = "true or false";
    fn from_arg(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(true),
            "false" | "no" | "0" | "off" => Ok(false),
            _ => Err(format!("`{s}` is not a boolean")),
        }
    }
}

impl FromArg for String {
    const EXPECTED: &'static str = "a string";
    fn from_arg(s: &str) -> Result<Self, String> {
        unquote(s)
    }
}

/// Removes one level of double quotes and resolves `\"`, `\\`, `\n`, `\t` inside them.
pub fn unquote(s: &str) -> Result<String, String> {
    let t = s.trim();
    if let Some(inner) = t.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| format!("unterminated string {t}"))?;
        let mut out = String::with_capacity(inner.len());
        let mut it = inner.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(o) => out.push(o),
                    None => return Err("string ends with a backslash".into()),
                }
            } else {
                out.push(c);
            }
        }
        Ok(out)
    } else {
        Ok(t.to_string())
    }
}

impl FromArg for IpAddr {
    const EXPECTED: &'static str = "an IPv4 or IPv6 address";
    fn from_arg(s: &str) -> Result<Self, String> {
        s.trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address"))
    }
}

impl FromArg for Ipv4Addr {
    const EXPECTED: &'static str = "an IPv4 address";
    fn from_arg(s: &str) -> Result<Self, String> {
        s.trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IPv4 address"))
    }
}

impl FromArg for Ipv6Addr {
    const EXPECTED: &'static str = "an IPv6 address";
    fn from_arg(s: &str) -> Result<Self, String> {
        s.trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IPv6 address"))
    }
}

/// An Ethernet address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EtherAddr(pub [u8; 6]);

impl std::fmt::Display for EtherAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromArg for EtherAddr {
    const EXPECTED: &'static str = "an Ethernet address such as 00:11:22:33:44:55";
    fn from_arg(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(format!("`{s}` is not an Ethernet address"));
        }
        let mut b = [0u8; 6];
        for (o, p) in b.iter_mut().zip(&parts) {
            *o = u8::from_str_radix(p, 16)
                .map_err(|_| format!("`{s}` is not an Ethernet address"))?;
        }
        Ok(EtherAddr(b))
    }
}

pub use crate::wire::IpPrefix;

impl FromArg for IpPrefix {
    const EXPECTED: &'static str = "an address or prefix such as 10.0.0.0/8";
    fn from_arg(s: &str) -> Result<Self, String> {
        s.parse()
            .map_err(|e: crate::wire::PrefixError| e.to_string())
    }
}

/// A duration written with a unit (`500ms`, `2s`, `1.5s`, `30us`, `100ns`, `5m`); a bare number is seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl FromArg for Duration {
    const EXPECTED: &'static str = "a duration such as 500ms or 2s";
    fn from_arg(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let v: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration"))?;
        let secs = match unit.trim() {
            "" | "s" | "sec" => v,
            "ms" => v / 1e3,
            "us" => v / 1e6,
            "ns" => v / 1e9,
            "m" | "min" => v * 60.0,
            "h" => v * 3600.0,
            u => return Err(format!("unknown time unit `{u}`")),
        };
        if !(0.0..1e12).contains(&secs) {
            return Err(format!("`{s}` is out of range"));
        }
        Ok(Duration(std::time::Duration::from_secs_f64(secs)))
    }
}

/// Parses hex bytes (`0800`, `de ad be ef`, `0x0800`).
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let t: String = s
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if !t.len().is_multiple_of(2) {
        return Err(format!("`{s}` has an odd number of hex digits"));
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16).map_err(|_| format!("`{s}` is not hex")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_and_positionals() {
        let mut a = Args::from_strs("X", &["5", "BURST 32", "ACTIVE false"]);
        assert_eq!(a.read_mp::<u32>("LIMIT").unwrap(), 5);
        assert_eq!(a.read_or::<u32>("BURST", 1).unwrap(), 32);
        assert!(a.complete().is_err());
    }

    #[test]
    fn prefixes() {
        let p = IpPrefix::from_arg("10.1.2.3/8").unwrap();
        assert_eq!(p.addr().to_string(), "10.0.0.0");
        assert!(p.contains("10.200.0.1".parse().unwrap()));
        assert!(!p.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(
            IpPrefix::from_arg("10.0.0.0/255.255.0.0").unwrap().len(),
            16
        );
        assert!(IpPrefix::from_arg("10.0.0.0/33").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::from_arg("500ms").unwrap().0.as_millis(), 500);
        assert_eq!(Duration::from_arg("2").unwrap().0.as_secs(), 2);
        assert!(Duration::from_arg("2 parsecs").is_err());
    }
}
