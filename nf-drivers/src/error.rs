//! Errors of nf-drivers.

use std::path::PathBuf;

/// The error type of nf-drivers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A capture file is truncated or corrupt at `offset`.
    #[error("{path}: at byte {offset}: {reason}")]
    Capture {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad header or record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A socket could not be bound, read or written.
    #[error("{what}: {source}")]
    Net {
        /// What was being done (`bind udp://127.0.0.1:5514`).
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The state store failed.
    #[error("state store: {0}")]
    State(#[from] nf_state::Error),
    /// A driver's settings are wrong (an unknown extractor, a bad listen address).
    #[error("{0}")]
    Config(String),
}
