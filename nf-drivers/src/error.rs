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
}
