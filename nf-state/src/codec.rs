//! Codecs for keys and values: `bincode` (compact, the fast default) and JSON (for tools that read the
//! store directly).

use crate::error::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How a record's key and value are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// `bincode` 2 with its standard configuration (varint integers, little endian).
    #[default]
    Bincode = 1,
    /// JSON (`serde_json`).
    Json = 2,
}

impl Codec {
    /// The codec's name (`bincode`, `json`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Bincode => "bincode",
            Codec::Json => "json",
        }
    }

    /// The codec of a record's codec byte.
    pub fn from_byte(b: u8) -> Option<Codec> {
        match b {
            1 => Some(Codec::Bincode),
            2 => Some(Codec::Json),
            _ => None,
        }
    }

    /// The codec called `name`.
    pub fn from_name(name: &str) -> Option<Codec> {
        match name {
            "bincode" => Some(Codec::Bincode),
            "json" => Some(Codec::Json),
            _ => None,
        }
    }

    /// Encodes a value.
    pub fn encode<T: Serialize>(self, v: &T) -> Result<Vec<u8>, Error> {
        match self {
            Codec::Bincode => bincode::serde::encode_to_vec(v, bincode::config::standard())
                .map_err(|e| Error::Codec {
                    codec: "bincode",
                    message: e.to_string(),
                }),
            Codec::Json => serde_json::to_vec(v).map_err(|e| Error::Codec {
                codec: "json",
                message: e.to_string(),
            }),
        }
    }

    /// Encodes a value into a `Bytes` of exactly its length: one allocation, freed in one.
    ///
    /// (A `Vec` from [`encode`](Self::encode) has room to spare, and a `Bytes` made from such a `Vec`
    /// allocates a second, shared header: two allocations and two frees per key or value.)
    pub fn encode_bytes<T: Serialize>(self, v: &T) -> Result<bytes::Bytes, Error> {
        if self == Codec::Bincode {
            let mut buf = [0u8; 128];
            if let Ok(n) =
                bincode::serde::encode_into_slice(v, &mut buf, bincode::config::standard())
            {
                return Ok(bytes::Bytes::copy_from_slice(&buf[..n]));
            }
        }
        let mut vec = self.encode(v)?;
        vec.shrink_to_fit();
        Ok(bytes::Bytes::from(vec))
    }

    /// Decodes a value; bytes left over are an error.
    pub fn decode<T: DeserializeOwned>(self, b: &[u8]) -> Result<T, Error> {
        match self {
            Codec::Bincode => {
                let (v, n) = bincode::serde::decode_from_slice(b, bincode::config::standard())
                    .map_err(|e| Error::Codec {
                        codec: "bincode",
                        message: e.to_string(),
                    })?;
                if n != b.len() {
                    return Err(Error::Codec {
                        codec: "bincode",
                        message: format!("{} trailing bytes", b.len() - n),
                    });
                }
                Ok(v)
            }
            Codec::Json => serde_json::from_slice(b).map_err(|e| Error::Codec {
                codec: "json",
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `encode_bytes` gives the bytes `encode` gives, for small values (encoded on the stack) and for
    /// values past the stack buffer, in both codecs.
    #[test]
    fn encode_bytes_agrees_with_encode() {
        let small = (6u8, "10.0.0.5", 40808u16);
        let large: Vec<u64> = (0..100).map(|i| i * 1_000_003).collect();
        for codec in [Codec::Bincode, Codec::Json] {
            assert_eq!(
                &codec.encode_bytes(&small).unwrap()[..],
                &codec.encode(&small).unwrap()[..]
            );
            let l = codec.encode_bytes(&large).unwrap();
            assert!(l.len() > 128);
            assert_eq!(&l[..], &codec.encode(&large).unwrap()[..]);
            let back: Vec<u64> = codec.decode(&l).unwrap();
            assert_eq!(back, large);
        }
    }
}
