//! RFC 6587 framing of syslog over TCP: *octet counting* (`MSG-LEN SP MSG`) and *non-transparent* framing
//! (messages terminated by LF). The framing is decided per message, as RFC 6587 section 3.4 allows: a
//! message that starts with a non-zero digit is octet-counted; anything else (a `<PRI>`, a count with a
//! leading zero) runs to the next LF.

use bytes::{Buf, Bytes, BytesMut};

/// A framing problem; the stream stays usable (the framer resynchronises).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A message longer than the limit; it is skipped (its octet count, or up to the next LF).
    #[error("message of {len} bytes or more exceeds the limit of {max}")]
    Oversized {
        /// Its length (at least).
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// An incremental decoder of a TCP syslog stream.
#[derive(Debug, Clone)]
pub struct Framer {
    max: usize,
    /// Bytes still to discard of an oversized octet-counted message.
    skip: usize,
    /// Discarding an oversized LF-terminated message up to its LF.
    skip_line: bool,
}

/// The longest octet count accepted (in digits): a count of 10 digits or more is not a count.
const MAX_DIGITS: usize = 9;

impl Framer {
    /// A framer accepting messages of at most `max` bytes.
    pub fn new(max: usize) -> Framer {
        Framer {
            max: max.max(1),
            skip: 0,
            skip_line: false,
        }
    }

    /// Takes the next complete message from the front of `buf`: `None` when more bytes are needed.
    /// Empty lines are skipped.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Option<Result<Bytes, FrameError>> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len());
                buf.advance(n);
                self.skip -= n;
                if self.skip > 0 {
                    return None;
                }
            }
            if self.skip_line {
                match memchr_lf(buf) {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.skip_line = false;
                    }
                    None => {
                        buf.clear();
                        return None;
                    }
                }
            }
            let first = *buf.first()?;
            if first == b'\n' || first == b'\r' || first == 0 {
                buf.advance(1);
                continue;
            }
            if (b'1'..=b'9').contains(&first) {
                let digits = buf.iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == buf.len() && digits <= MAX_DIGITS {
                    return None; // the count is not complete yet
                }
                if digits <= MAX_DIGITS && buf[digits] == b' ' {
                    let len = buf[..digits]
                        .iter()
                        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
                    if len > self.max {
                        buf.advance(digits + 1);
                        self.skip = len;
                        return Some(Err(FrameError::Oversized { len, max: self.max }));
                    }
                    if buf.len() < digits + 1 + len {
                        buf.reserve(digits + 1 + len - buf.len());
                        return None;
                    }
                    buf.advance(digits + 1);
                    let mut msg = buf.split_to(len).freeze();
                    trim_end(&mut msg);
                    if msg.is_empty() {
                        continue;
                    }
                    return Some(Ok(msg));
                }
            }
            // Non-transparent framing: up to the LF.
            match memchr_lf(buf) {
                Some(i) if i <= self.max => {
                    let mut msg = buf.split_to(i + 1).freeze();
                    trim_end(&mut msg);
                    if msg.is_empty() {
                        continue;
                    }
                    return Some(Ok(msg));
                }
                Some(i) => {
                    buf.advance(i + 1);
                    return Some(Err(FrameError::Oversized {
                        len: i,
                        max: self.max,
                    }));
                }
                None if buf.len() > self.max => {
                    let len = buf.len();
                    buf.clear();
                    self.skip_line = true;
                    return Some(Err(FrameError::Oversized { len, max: self.max }));
                }
                None => return None,
            }
        }
    }

    /// At the end of the stream: what remains, as a last message (a sender may omit the final LF).
    pub fn finish(&mut self, buf: &mut BytesMut) -> Option<Result<Bytes, FrameError>> {
        if let Some(f) = self.next_frame(buf) {
            return Some(f);
        }
        if self.skip > 0 || self.skip_line || buf.is_empty() {
            buf.clear();
            return None;
        }
        let mut msg = buf.split().freeze();
        trim_end(&mut msg);
        (!msg.is_empty()).then_some(Ok(msg))
    }
}

fn memchr_lf(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Removes trailing LF, CR and NUL.
pub(crate) fn trim_end(b: &mut Bytes) {
    let n = b
        .iter()
        .rev()
        .take_while(|&&c| c == b'\n' || c == b'\r' || c == 0)
        .count();
    b.truncate(b.len() - n);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: usize, chunk: usize) -> Vec<Result<Bytes, FrameError>> {
        let mut f = Framer::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(c);
            while let Some(m) = f.next_frame(&mut buf) {
                out.push(m);
            }
        }
        while let Some(m) = f.finish(&mut buf) {
            out.push(m);
        }
        out
    }

    #[test]
    fn both_framings_interleaved_in_any_chunking() {
        let input = b"10 <13>hello\n<13>world\n15 <13>multi\nline\n<14>last";
        for chunk in 1..input.len() {
            let got: Vec<_> = all(input, 1024, chunk)
                .into_iter()
                .map(|r| String::from_utf8(r.unwrap().to_vec()).unwrap())
                .collect();
            assert_eq!(
                got,
                ["<13>hello", "<13>world", "<13>multi\nline", "<14>last"],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_count_with_a_leading_zero_is_not_octet_counting() {
        let got = all(b"012 <13>x\n", 1024, 64);
        assert_eq!(got, [Ok(Bytes::from_static(b"012 <13>x"))]);
        // Digits not followed by a space: a line.
        let got = all(b"123abc\n", 1024, 64);
        assert_eq!(got, [Ok(Bytes::from_static(b"123abc"))]);
    }

    #[test]
    fn oversized_messages_are_skipped_and_the_stream_resynchronises() {
        let mut input = b"100 ".to_vec();
        input.extend_from_slice(&[b'a'; 100]);
        input.extend_from_slice(b"5 <13>x");
        input.extend_from_slice(&[b'b'; 50]);
        input.extend_from_slice(b"\n<13>ok\n");
        for chunk in [1, 7, 1000] {
            let got = all(&input, 20, chunk);
            assert_eq!(got.len(), 4, "{got:?}");
            assert!(matches!(
                got[0],
                Err(FrameError::Oversized { len: 100, .. })
            ));
            assert_eq!(got[1], Ok(Bytes::from_static(b"<13>x")));
            assert!(matches!(got[2], Err(FrameError::Oversized { .. })));
            assert_eq!(got[3], Ok(Bytes::from_static(b"<13>ok")));
        }
    }
}
