//! Errors of nf-state.

/// What is wrong with an encoded record or frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer bytes than the frame or field needs.
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A frame longer than the limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Claimed length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The CRC-32C does not match the payload.
    #[error("checksum mismatch: frame says {expected:#010x}, payload has {actual:#010x}")]
    Checksum {
        /// Stored CRC.
        expected: u32,
        /// Computed CRC.
        actual: u32,
    },
    /// A record format this code does not know.
    #[error("unknown record format version {0}")]
    UnknownFormat(u8),
    /// A field holds an impossible value.
    #[error("invalid {field}: {value}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What it held.
        value: String,
    },
    /// Bytes left over after the last field.
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
}

/// The error type of nf-state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record or frame does not decode.
    #[error("bad record: {0}")]
    Record(#[from] RecordError),
    /// A key or value does not encode or decode with the record's codec.
    #[error("{codec} codec: {message}")]
    Codec {
        /// Codec name.
        codec: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The record belongs to another schema.
    #[error("record of schema `{found}` read as `{expected}`")]
    WrongSchema {
        /// Schema asked for.
        expected: &'static str,
        /// Schema of the record.
        found: String,
    },
    /// The record was written by a schema version this code cannot read.
    #[error("schema `{schema}` version {found} cannot be read by version {supported}")]
    UnsupportedVersion {
        /// Schema.
        schema: String,
        /// Version of the record.
        found: u16,
        /// Version of this code.
        supported: u16,
    },
    /// No schema of that name is known.
    #[error("unknown schema `{0}` (known: {known})", known = crate::schema::BUILT_IN.join(", "))]
    UnknownSchema(String),
    /// A store URL does not parse.
    #[error("bad store URL `{url}`: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A file of the store cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store's data is corrupt where no crash could have left it so (not a torn tail).
    #[error("{path}: corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// Where.
        offset: u64,
        /// What.
        reason: RecordError,
    },
    /// A watcher fell behind what the store retains: resynchronise from a snapshot.
    #[error(
        "sequence gap in `{schema}`: wanted records after {from}, the oldest retained is {oldest}"
    )]
    Gap {
        /// Schema.
        schema: String,
        /// Last sequence number the watcher had.
        from: u64,
        /// Oldest sequence number still retained.
        oldest: u64,
    },
    /// The store went back in time under a watcher: its last sequence number is below what the watcher
    /// had already read (a Redis replica promoted after its master failed, without the master's last
    /// acknowledged writes; a server restored from an older copy). The records the watcher read beyond
    /// `now` are gone from the store, and new ones will reuse their numbers: resynchronise from a
    /// snapshot, keeping what was installed (the store no longer has all of it).
    #[error(
        "`{schema}` went back in time: the watcher had read up to {had}, the store now ends at {now}"
    )]
    Rewound {
        /// Schema.
        schema: String,
        /// Last sequence number the watcher had read.
        had: u64,
        /// The store's last sequence number now.
        now: u64,
    },
    /// The store is closed or its backend went away.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}
