//! The syslog driver: a syslog server whose messages become state records.
//!
//! - [`framing`]: RFC 6587 framing of TCP streams (octet counting and LF-terminated).
//! - [`message`]: RFC 3164, RFC 5424 (structured data included) and `/dev/kmsg` parsers.
//! - [`extract`]: the [`Extractor`] trait and the built-in `netfilter-log` and `conntrack-events`.
//! - [`server`]: the server and [`SyslogDriver`] (UDP, TCP, Unix datagrams; bounded queue; counters).
//! - [`kmsg`]: a small forwarder from the kernel's `/dev/kmsg` to a syslog server, for boxes whose LOG
//!   lines no syslog daemon relays.

pub mod extract;
pub mod framing;
pub mod kernel_clock;
pub mod kmsg;
pub mod message;
pub mod server;

pub use extract::{Emitter, ExtractError, Extractor};
pub use message::{Format, Message, ParseError, parse};
pub use server::{Listen, SyslogConfig, SyslogDriver, SyslogStats};
