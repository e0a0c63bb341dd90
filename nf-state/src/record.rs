//! Records: one change of one key of one schema, and the framing that carries them in files and on sockets.
//!
//! ```text
//! frame   := len:u32le  crc32c(payload):u32le  payload[len]
//! payload := format:u8(=1) op:u8 codec:u8 version:u16le seq:u64le time:u64le
//!            schema_len:u8 schema  origin_len:u8 origin  key_len:u32le key
//!            has_value:u8 [value_len:u32le value]
//! ```
//!
//! Decoding never panics: a short, oversized, corrupt or unknown-format frame is a [`RecordError`].

use crate::codec::Codec;
use crate::error::{Error, RecordError};
use crate::schema::Schema;
use bytes::Bytes;
use std::sync::Arc;

/// The record format this code writes (and the only one it reads).
pub const FORMAT: u8 = 1;
/// Largest frame payload accepted (16 MiB).
pub const MAX_FRAME: usize = 16 << 20;
/// Bytes of a frame's header (length and CRC).
pub const FRAME_HEADER: usize = 8;

/// Upsert or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// The key now has this value.
    Upsert = 1,
    /// The key is gone.
    Delete = 2,
}

/// One change of one key. Key and value are encoded with `codec`; the store orders records by `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Schema name (shared: cloning a record allocates nothing).
    pub schema: Arc<str>,
    /// Schema version the key and value were written with.
    pub version: u16,
    /// Codec of key and value.
    pub codec: Codec,
    /// Sequence number (assigned by the store: contiguous per schema, from 1; 0 before it is stored).
    pub seq: u64,
    /// The node that produced the change.
    pub origin: Arc<str>,
    /// When (nanoseconds since the Unix epoch).
    pub time: u64,
    /// Upsert or delete.
    pub op: Op,
    /// Encoded key.
    pub key: Bytes,
    /// Encoded value (`None` for deletes).
    pub value: Option<Bytes>,
}

/// The shared form of a schema or origin name. A record's two names are a handful of strings repeated
/// over millions of records: each thread keeps the last few it made, so that building or decoding a record
/// allocates neither (two allocations, and later two frees, of a four-allocation record).
pub(crate) fn shared_name(s: &str) -> Arc<str> {
    const KEPT: usize = 16;
    thread_local! {
        static NAMES: std::cell::RefCell<Vec<Arc<str>>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    NAMES
        .try_with(|names| {
            let mut names = names.try_borrow_mut().ok()?;
            if let Some(a) = names.iter().find(|a| ***a == *s) {
                return Some(a.clone());
            }
            let a: Arc<str> = Arc::from(s);
            if names.len() == KEPT {
                names.remove(0);
            }
            names.push(a.clone());
            Some(a)
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Arc::from(s))
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Record {
    /// An upsert of `key` to `value` in schema `S`.
    pub fn upsert<S: Schema>(
        codec: Codec,
        origin: &str,
        key: &S::Key,
        value: &S::Value,
    ) -> Result<Record, Error> {
        Ok(Record {
            schema: shared_name(S::NAME),
            version: S::VERSION,
            codec,
            seq: 0,
            origin: shared_name(origin),
            time: now_nanos(),
            op: Op::Upsert,
            key: codec.encode_bytes(key)?,
            value: Some(codec.encode_bytes(value)?),
        })
    }

    /// A delete of `key` in schema `S`.
    pub fn delete<S: Schema>(codec: Codec, origin: &str, key: &S::Key) -> Result<Record, Error> {
        Ok(Record {
            schema: shared_name(S::NAME),
            version: S::VERSION,
            codec,
            seq: 0,
            origin: shared_name(origin),
            time: now_nanos(),
            op: Op::Delete,
            key: codec.encode_bytes(key)?,
            value: None,
        })
    }

    /// The typed key and value (`None` for a delete), upgraded from an older schema version if need be.
    pub fn decode<S: Schema>(&self) -> Result<(S::Key, Option<S::Value>), Error> {
        if &*self.schema != S::NAME {
            return Err(Error::WrongSchema {
                expected: S::NAME,
                found: self.schema.to_string(),
            });
        }
        if self.version == S::VERSION {
            let k = self.codec.decode(&self.key)?;
            let v = match &self.value {
                Some(v) => Some(self.codec.decode(v)?),
                None => None,
            };
            return Ok((k, v));
        }
        if self.version > S::VERSION {
            return Err(Error::UnsupportedVersion {
                schema: self.schema.to_string(),
                found: self.version,
                supported: S::VERSION,
            });
        }
        S::upgrade(self.version, self.codec, &self.key, self.value.as_deref())
    }

    /// Length of the encoded payload.
    pub fn payload_len(&self) -> usize {
        1 + 1
            + 1
            + 2
            + 8
            + 8
            + 1
            + self.schema.len()
            + 1
            + self.origin.len()
            + 4
            + self.key.len()
            + 1
            + self.value.as_ref().map_or(0, |v| 4 + v.len())
    }

    /// Appends the payload (no frame header).
    pub fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        self.encode_payload_seq(self.seq, out)
    }

    /// [`Record::encode_payload`] with `seq` in place of the record's own sequence number.
    fn encode_payload_seq(&self, seq: u64, out: &mut Vec<u8>) -> Result<(), RecordError> {
        let too_long = |field: &'static str, n: usize| RecordError::Invalid {
            field,
            value: format!("{n} bytes is too long"),
        };
        let schema_len =
            u8::try_from(self.schema.len()).map_err(|_| too_long("schema", self.schema.len()))?;
        let origin_len =
            u8::try_from(self.origin.len()).map_err(|_| too_long("origin", self.origin.len()))?;
        let key_len = u32::try_from(self.key.len()).map_err(|_| too_long("key", self.key.len()))?;
        out.reserve(self.payload_len());
        out.push(FORMAT);
        out.push(self.op as u8);
        out.push(self.codec as u8);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&self.time.to_le_bytes());
        out.push(schema_len);
        out.extend_from_slice(self.schema.as_bytes());
        out.push(origin_len);
        out.extend_from_slice(self.origin.as_bytes());
        out.extend_from_slice(&key_len.to_le_bytes());
        out.extend_from_slice(&self.key);
        match &self.value {
            None => out.push(0),
            Some(v) => {
                let n = u32::try_from(v.len()).map_err(|_| too_long("value", v.len()))?;
                out.push(1);
                out.extend_from_slice(&n.to_le_bytes());
                out.extend_from_slice(v);
            }
        }
        Ok(())
    }

    /// Appends a whole frame: length, CRC-32C, payload.
    pub fn encode_frame(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        self.encode_frame_seq(self.seq, out)
    }

    /// [`Record::encode_frame`] with `seq` in place of the record's own sequence number (a store that
    /// numbers records itself frames them without cloning each one to clear the field).
    pub fn encode_frame_seq(&self, seq: u64, out: &mut Vec<u8>) -> Result<(), RecordError> {
        let start = out.len();
        out.extend_from_slice(&[0u8; FRAME_HEADER]);
        self.encode_payload_seq(seq, out)?;
        let len = out.len() - start - FRAME_HEADER;
        if len > MAX_FRAME {
            out.truncate(start);
            return Err(RecordError::Oversized {
                len,
                max: MAX_FRAME,
            });
        }
        let crc = crc32c::crc32c(&out[start + FRAME_HEADER..]);
        out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// Decodes a payload (all of `b`).
    pub fn decode_payload(b: &[u8]) -> Result<Record, RecordError> {
        let mut r = Reader { b, at: 0 };
        let fmt = r.u8()?;
        if fmt != FORMAT {
            return Err(RecordError::UnknownFormat(fmt));
        }
        let op = match r.u8()? {
            1 => Op::Upsert,
            2 => Op::Delete,
            o => {
                return Err(RecordError::Invalid {
                    field: "op",
                    value: o.to_string(),
                });
            }
        };
        let c = r.u8()?;
        let codec = Codec::from_byte(c).ok_or(RecordError::Invalid {
            field: "codec",
            value: c.to_string(),
        })?;
        let version = u16::from_le_bytes(r.array()?);
        let seq = u64::from_le_bytes(r.array()?);
        let time = u64::from_le_bytes(r.array()?);
        let n = usize::from(r.u8()?);
        let schema = r.string(n, "schema")?;
        let n = usize::from(r.u8()?);
        let origin = r.string(n, "origin")?;
        let n = u32::from_le_bytes(r.array()?) as usize;
        let key = Bytes::copy_from_slice(r.take(n)?);
        let value = match r.u8()? {
            0 => None,
            1 => {
                let n = u32::from_le_bytes(r.array()?) as usize;
                Some(Bytes::copy_from_slice(r.take(n)?))
            }
            o => {
                return Err(RecordError::Invalid {
                    field: "has_value",
                    value: o.to_string(),
                });
            }
        };
        if (op == Op::Delete) != value.is_none() {
            return Err(RecordError::Invalid {
                field: "value",
                value: format!(
                    "{op:?} with{} a value",
                    if value.is_some() { "" } else { "out" }
                ),
            });
        }
        if r.at != b.len() {
            return Err(RecordError::Trailing(b.len() - r.at));
        }
        Ok(Record {
            schema,
            version,
            codec,
            seq,
            origin,
            time,
            op,
            key,
            value,
        })
    }

    /// Decodes the frame at the start of `b`; returns the record and the frame's length.
    pub fn decode_frame(b: &[u8]) -> Result<(Record, usize), RecordError> {
        let (payload, n) = frame_payload(b)?;
        Ok((Record::decode_payload(payload)?, n))
    }
}

/// Checks the frame at the start of `b` (length, limit, CRC) and returns its payload and total length.
pub fn frame_payload(b: &[u8]) -> Result<(&[u8], usize), RecordError> {
    if b.len() < FRAME_HEADER {
        return Err(RecordError::Truncated {
            need: FRAME_HEADER,
            have: b.len(),
        });
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if len > MAX_FRAME {
        return Err(RecordError::Oversized {
            len,
            max: MAX_FRAME,
        });
    }
    let expected = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let end = FRAME_HEADER + len;
    let payload = b.get(FRAME_HEADER..end).ok_or(RecordError::Truncated {
        need: end,
        have: b.len(),
    })?;
    let actual = crc32c::crc32c(payload);
    if actual != expected {
        return Err(RecordError::Checksum { expected, actual });
    }
    Ok((payload, end))
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.at.checked_add(n).ok_or(RecordError::Truncated {
            need: usize::MAX,
            have: self.b.len(),
        })?;
        let s = self.b.get(self.at..end).ok_or(RecordError::Truncated {
            need: end,
            have: self.b.len(),
        })?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn string(&mut self, n: usize, field: &'static str) -> Result<Arc<str>, RecordError> {
        let s = self.take(n)?;
        std::str::from_utf8(s)
            .map(shared_name)
            .map_err(|_| RecordError::Invalid {
                field,
                value: "not UTF-8".into(),
            })
    }
}

#[cfg(test)]
mod shared_name_tests {
    use super::*;

    /// The same name is shared (one allocation), different names stay different, and more names than the
    /// thread keeps are still right.
    #[test]
    fn names_are_shared_and_never_confused() {
        let a = shared_name("flow-mapping");
        let b = shared_name("flow-mapping");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*shared_name("nf-load"), "nf-load");
        for round in 0..3 {
            for i in 0..40 {
                let n = format!("node-{i}");
                assert_eq!(&*shared_name(&n), n, "round {round}");
            }
        }
        assert_eq!(&*shared_name("flow-mapping"), "flow-mapping");
        assert_eq!(&*shared_name(""), "");
    }
}
