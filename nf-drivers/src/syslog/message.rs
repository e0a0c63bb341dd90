//! Syslog message parsers: RFC 3164 (BSD), RFC 5424 (with structured data) and the kernel's `/dev/kmsg`
//! record form. Parsing borrows from the line and allocates nothing unless the message carries structured
//! data.

use std::borrow::Cow;

/// Which syntax a message was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG` (RFC 3164, and its common variants).
    Rfc3164,
    /// `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG` (RFC 5424).
    Rfc5424,
    /// `PRI,SEQ,USEC,FLAGS;MSG` as read from `/dev/kmsg`.
    Kmsg,
}

/// One structured-data element of an RFC 5424 message: `[id name="value" ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement<'a> {
    /// The SD-ID (`exampleSDID@32473`).
    pub id: &'a str,
    /// Parameters, values unescaped (`\"`, `\\`, `\]`).
    pub params: Vec<(&'a str, Cow<'a, str>)>,
}

/// A parsed syslog message; fields borrow from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The syntax.
    pub format: Format,
    /// Facility (0..=23; for kmsg the facility bits of its priority).
    pub facility: u8,
    /// Severity (0..=7).
    pub severity: u8,
    /// Timestamp as written (RFC 3164 `Nov 22 01:50:29`, RFC 5424 RFC 3339, kmsg microseconds since boot).
    pub timestamp: Option<&'a str>,
    /// Sending host.
    pub hostname: Option<&'a str>,
    /// RFC 3164 tag or RFC 5424 APP-NAME (`kernel`, `sshd`).
    pub app_name: Option<&'a str>,
    /// Process id.
    pub proc_id: Option<&'a str>,
    /// RFC 5424 MSGID.
    pub msg_id: Option<&'a str>,
    /// RFC 5424 structured data.
    pub structured_data: Vec<SdElement<'a>>,
    /// kmsg sequence number.
    pub sequence: Option<u64>,
    /// The free-form message (a BOM removed).
    pub msg: &'a str,
}

/// Why a line is not a syslog message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Nothing at all.
    #[error("empty message")]
    Empty,
    /// No `<PRI>` (nor a kmsg `PRI,SEQ,...;` header).
    #[error("no <PRI> at the start")]
    NoPriority,
    /// `<PRI>` is not 0..=191.
    #[error("bad <PRI>")]
    BadPriority,
    /// An RFC 5424 header field is missing.
    #[error("RFC 5424 header: missing {0}")]
    MissingField(&'static str),
    /// RFC 5424 structured data is malformed.
    #[error("RFC 5424 structured data: {0}")]
    StructuredData(&'static str),
    /// A kmsg header is malformed.
    #[error("kmsg header: {0}")]
    Kmsg(&'static str),
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses one message (a line without its framing) in whichever of the three forms it is written.
pub fn parse(line: &str) -> Result<Message<'_>, ParseError> {
    let line = line.trim_end_matches(['\n', '\r', '\0']);
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let b = line.as_bytes();
    if b[0] == b'<' {
        let close = b[..b.len().min(5)]
            .iter()
            .position(|&c| c == b'>')
            .ok_or(ParseError::BadPriority)?;
        let digits = &line[1..close];
        if digits.is_empty()
            || !digits.bytes().all(|c| c.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return Err(ParseError::BadPriority);
        }
        let pri: u16 = digits.parse().map_err(|_| ParseError::BadPriority)?;
        if pri > 191 {
            return Err(ParseError::BadPriority);
        }
        let rest = &line[close + 1..];
        let (facility, severity) = ((pri >> 3) as u8, (pri & 7) as u8);
        // RFC 5424: VERSION is a non-zero digit (at most three) followed by a space.
        let vlen = rest.bytes().take_while(u8::is_ascii_digit).count();
        if (1..=3).contains(&vlen)
            && !rest.starts_with('0')
            && rest.as_bytes().get(vlen) == Some(&b' ')
        {
            return parse_5424(&rest[vlen + 1..], facility, severity);
        }
        return Ok(parse_3164(rest, facility, severity));
    }
    if b[0].is_ascii_digit() {
        return parse_kmsg(line);
    }
    Err(ParseError::NoPriority)
}

fn split_field<'a>(
    s: &'a str,
    name: &'static str,
) -> Result<(Option<&'a str>, &'a str), ParseError> {
    let (f, rest) = match s.find(' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    if f.is_empty() {
        return Err(ParseError::MissingField(name));
    }
    Ok((if f == "-" { None } else { Some(f) }, rest))
}

fn parse_5424(s: &str, facility: u8, severity: u8) -> Result<Message<'_>, ParseError> {
    let (timestamp, s) = split_field(s, "TIMESTAMP")?;
    let (hostname, s) = split_field(s, "HOSTNAME")?;
    let (app_name, s) = split_field(s, "APP-NAME")?;
    let (proc_id, s) = split_field(s, "PROCID")?;
    let (msg_id, s) = split_field(s, "MSGID")?;
    if s.is_empty() {
        return Err(ParseError::MissingField("STRUCTURED-DATA"));
    }
    let (structured_data, rest) = if let Some(r) = s.strip_prefix('-') {
        (Vec::new(), r)
    } else if s.starts_with('[') {
        parse_sd(s)?
    } else {
        return Err(ParseError::StructuredData("neither `-` nor `[`"));
    };
    let msg = match rest.strip_prefix(' ') {
        Some(m) => m.strip_prefix('\u{feff}').unwrap_or(m),
        None if rest.is_empty() => "",
        None => return Err(ParseError::StructuredData("no space after it")),
    };
    Ok(Message {
        format: Format::Rfc5424,
        facility,
        severity,
        timestamp,
        hostname,
        app_name,
        proc_id,
        msg_id,
        structured_data,
        sequence: None,
        msg,
    })
}

fn sd_name(s: &str) -> usize {
    s.bytes()
        .take_while(|&c| c > b' ' && c < 127 && c != b'=' && c != b']' && c != b'"')
        .count()
}

type SdResult<'a> = Result<(Vec<SdElement<'a>>, &'a str), ParseError>;

fn parse_sd(mut s: &str) -> SdResult<'_> {
    let mut out = Vec::new();
    while let Some(r) = s.strip_prefix('[') {
        let n = sd_name(r);
        if n == 0 {
            return Err(ParseError::StructuredData("empty SD-ID"));
        }
        let id = &r[..n];
        let mut r = &r[n..];
        let mut params = Vec::new();
        loop {
            if let Some(rest) = r.strip_prefix(']') {
                r = rest;
                break;
            }
            r = r
                .strip_prefix(' ')
                .ok_or(ParseError::StructuredData("expected a space or `]`"))?;
            let n = sd_name(r);
            if n == 0 {
                return Err(ParseError::StructuredData("empty PARAM-NAME"));
            }
            let name = &r[..n];
            r = r[n..]
                .strip_prefix("=\"")
                .ok_or(ParseError::StructuredData("expected `=\"`"))?;
            // The value runs to the first unescaped quote.
            let bytes = r.as_bytes();
            let mut i = 0;
            let mut escaped = false;
            loop {
                match bytes.get(i) {
                    None => return Err(ParseError::StructuredData("unterminated value")),
                    Some(b'\\') => {
                        escaped = true;
                        i += 2;
                    }
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            if i > bytes.len() {
                return Err(ParseError::StructuredData("unterminated value"));
            }
            let raw = &r[..i];
            let value = if escaped {
                let mut v = String::with_capacity(raw.len());
                let mut chars = raw.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        match chars.next() {
                            Some(e @ ('"' | '\\' | ']')) => v.push(e),
                            // RFC 5424 6.3.3: any other backslash is kept as it is.
                            Some(e) => {
                                v.push('\\');
                                v.push(e);
                            }
                            None => v.push('\\'),
                        }
                    } else {
                        v.push(c);
                    }
                }
                Cow::Owned(v)
            } else {
                Cow::Borrowed(raw)
            };
            params.push((name, value));
            r = &r[i + 1..];
        }
        out.push(SdElement { id, params });
        s = r;
    }
    Ok((out, s))
}

fn is_3164_timestamp(s: &[u8]) -> bool {
    // `Mmm dd hh:mm:ss` (day padded with a space).
    s.len() >= 15
        && MONTHS.iter().any(|m| s[..3] == *m.as_bytes())
        && s[3] == b' '
        && (s[4] == b' ' || s[4].is_ascii_digit())
        && s[5].is_ascii_digit()
        && s[6] == b' '
        && s[7].is_ascii_digit()
        && s[8].is_ascii_digit()
        && s[9] == b':'
        && s[10].is_ascii_digit()
        && s[11].is_ascii_digit()
        && s[12] == b':'
        && s[13].is_ascii_digit()
        && s[14].is_ascii_digit()
}

fn parse_3164(s: &str, facility: u8, severity: u8) -> Message<'_> {
    let b = s.as_bytes();
    let mut rest = s;
    let mut timestamp = None;
    if is_3164_timestamp(b) {
        timestamp = Some(&s[..15]);
        rest = s[15..].strip_prefix(' ').unwrap_or(&s[15..]);
    } else if b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        // A common variant: an RFC 3339 timestamp in a BSD header.
        let end = s.find(' ').unwrap_or(s.len());
        timestamp = Some(&s[..end]);
        rest = s.get(end + 1..).unwrap_or("");
    }
    // HOSTNAME (only after a timestamp; a word followed by a space that is not a tag).
    let mut hostname = None;
    if timestamp.is_some()
        && let Some(sp) = rest.find(' ')
    {
        let word = &rest[..sp];
        if !word.is_empty() && !word.ends_with(':') && !word.contains('[') {
            hostname = Some(word);
            rest = &rest[sp + 1..];
        }
    }
    // TAG[PID]: up to 48 characters of a name, then `[pid]` and/or `:`.
    let mut app_name = None;
    let mut proc_id = None;
    let tag_len = rest
        .bytes()
        .take(48)
        .take_while(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/'))
        .count();
    if tag_len > 0 {
        let after = &rest[tag_len..];
        if let Some(a) = after.strip_prefix('[')
            && let Some(close) = a.find(']')
            && let Some(m) = a[close + 1..].strip_prefix(':')
        {
            app_name = Some(&rest[..tag_len]);
            proc_id = Some(&a[..close]);
            rest = m.strip_prefix(' ').unwrap_or(m);
        } else if let Some(m) = after.strip_prefix(':') {
            app_name = Some(&rest[..tag_len]);
            rest = m.strip_prefix(' ').unwrap_or(m);
        }
    }
    Message {
        format: Format::Rfc3164,
        facility,
        severity,
        timestamp,
        hostname,
        app_name,
        proc_id,
        msg_id: None,
        structured_data: Vec::new(),
        sequence: None,
        msg: rest,
    }
}

fn parse_kmsg(line: &str) -> Result<Message<'_>, ParseError> {
    // PRI,SEQ,USEC,FLAGS[,...];MESSAGE (continuation lines ` KEY=VALUE` follow after a newline).
    let semi = line.find(';').ok_or(ParseError::Kmsg("no `;`"))?;
    let mut fields = line[..semi].split(',');
    let pri: u32 = fields
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or(ParseError::Kmsg("bad priority"))?;
    let seq: u64 = fields
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or(ParseError::Kmsg("bad sequence number"))?;
    let usec = fields
        .next()
        .filter(|f| !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()))
        .ok_or(ParseError::Kmsg("bad timestamp"))?;
    fields.next().ok_or(ParseError::Kmsg("no flags"))?;
    let body = &line[semi + 1..];
    let msg = body.split('\n').next().unwrap_or("");
    Ok(Message {
        format: Format::Kmsg,
        facility: ((pri >> 3) & 0xff) as u8,
        severity: (pri & 7) as u8,
        timestamp: Some(usec),
        hostname: None,
        app_name: Some("kernel"),
        proc_id: None,
        msg_id: None,
        structured_data: Vec::new(),
        sequence: Some(seq),
        msg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3164_as_logger_writes_it() {
        let m = parse("<13>Nov 22 01:50:29 host1 root[42]: hello world").unwrap();
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!((m.facility, m.severity), (1, 5));
        assert_eq!(m.timestamp, Some("Nov 22 01:50:29"));
        assert_eq!(m.hostname, Some("host1"));
        assert_eq!(m.app_name, Some("root"));
        assert_eq!(m.proc_id, Some("42"));
        assert_eq!(m.msg, "hello world");
        let m = parse("<4>Nov  2 01:50:29 fw kernel: [ 12.345] DNAT IN=eth0").unwrap();
        assert_eq!(m.timestamp, Some("Nov  2 01:50:29"));
        assert_eq!(m.app_name, Some("kernel"));
        assert_eq!(m.msg, "[ 12.345] DNAT IN=eth0");
        // No header at all beyond PRI: the whole rest is the message.
        let m = parse("<34>just text").unwrap();
        assert_eq!(m.msg, "just text");
        assert_eq!(m.hostname, None);
    }

    #[test]
    fn rfc5424_with_structured_data() {
        let m = parse(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Appli\"cation" eventID="1011"][examplePriority@32473 class="high"] An application event"#,
        )
        .unwrap();
        assert_eq!(m.format, Format::Rfc5424);
        assert_eq!((m.facility, m.severity), (20, 5));
        assert_eq!(m.hostname, Some("mymachine.example.com"));
        assert_eq!(m.app_name, Some("evntslog"));
        assert_eq!(m.proc_id, None);
        assert_eq!(m.msg_id, Some("ID47"));
        assert_eq!(m.structured_data.len(), 2);
        assert_eq!(m.structured_data[0].params[1].1, "Appli\"cation");
        assert_eq!(m.structured_data[1].id, "examplePriority@32473");
        assert_eq!(m.msg, "An application event");
        let m =
            parse("<34>1 2003-10-11T22:14:15.003Z host su - - - \u{feff}'su root' failed").unwrap();
        assert_eq!(m.msg, "'su root' failed");
        assert!(m.structured_data.is_empty());
        assert_eq!(parse("<34>1 - - - - - -").unwrap().msg, "");
    }

    #[test]
    fn kmsg_records() {
        let m = parse("4,1234,567890123,-;lb: IN=veth0 OUT=veth1 SRC=10.0.0.5\n SUBSYSTEM=net")
            .unwrap();
        assert_eq!(m.format, Format::Kmsg);
        assert_eq!(m.severity, 4);
        assert_eq!(m.sequence, Some(1234));
        assert_eq!(m.msg, "lb: IN=veth0 OUT=veth1 SRC=10.0.0.5");
    }

    #[test]
    fn bad_lines_are_typed_errors() {
        for (line, e) in [
            ("", ParseError::Empty),
            ("hello", ParseError::NoPriority),
            ("<999>x", ParseError::BadPriority),
            ("<192>x", ParseError::BadPriority),
            ("<013>x", ParseError::BadPriority),
            ("<>x", ParseError::BadPriority),
            ("<13", ParseError::BadPriority),
            ("<13>1 ", ParseError::MissingField("TIMESTAMP")),
            (
                "<13>1 - - - - -",
                ParseError::MissingField("STRUCTURED-DATA"),
            ),
            (
                "<13>1 - - - - - [x a=\"b]",
                ParseError::StructuredData("unterminated value"),
            ),
            (
                "<13>1 - - - - - [x a=\"b\\",
                ParseError::StructuredData("unterminated value"),
            ),
            (
                "<13>1 - - - - - [x a=b]",
                ParseError::StructuredData("expected `=\"`"),
            ),
            ("12,x,1,-;m", ParseError::Kmsg("bad sequence number")),
            ("12,1", ParseError::Kmsg("no `;`")),
        ] {
            assert_eq!(parse(line), Err(e), "{line:?}");
        }
    }
}
