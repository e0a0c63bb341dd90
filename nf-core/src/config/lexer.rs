//! Tokens of the Click configuration language.

use crate::error::{ConfigError, SourceFile, Span};

/// A token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A name: element, class or keyword (`elementclass`, `define`, `input`, `output`).
    Ident(String),
    /// `$name` (compound formal parameters).
    Var(String),
    /// A decimal integer (port numbers).
    Int(usize),
    /// `->`
    Arrow,
    /// `::`
    ColonColon,
    /// `;`
    Semi,
    /// `,`
    Comma,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `|`
    Pipe,
    /// A parenthesised argument list: the text between the parentheses, raw.
    Args(String),
    /// End of input.
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Var(s) => format!("`${s}`"),
            Tok::Int(n) => format!("`{n}`"),
            Tok::Arrow => "`->`".into(),
            Tok::ColonColon => "`::`".into(),
            Tok::Semi => "`;`".into(),
            Tok::Comma => "`,`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::Pipe => "`|`".into(),
            Tok::Args(_) => "an argument list".into(),
            Tok::Eof => "the end of the configuration".into(),
        }
    }
}

/// A token and where it is. For [`Tok::Args`], `inner` is the span between the parentheses.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Its span.
    pub span: Span,
    /// For argument lists: the span of the text inside the parentheses.
    pub inner: Span,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'@'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'@' || c == b'/' || c == b'.'
}

/// Splits a configuration into tokens. Comments (`//`, `/* */`, and `#` at the start of a line) are skipped.
pub fn lex(src: &SourceFile) -> Result<Vec<Token>, ConfigError> {
    let s = src.text.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let err =
        |at: usize, len: usize, msg: &str| ConfigError::at(Some(src), Span::new(at, at + len), msg);
    while i < s.len() {
        let c = s[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && s.get(i + 1) == Some(&b'/') {
            while i < s.len() && s[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'#'
            && (i == 0
                || s[..i]
                    .iter()
                    .rev()
                    .take_while(|&&b| b != b'\n')
                    .all(|b| b.is_ascii_whitespace()))
        {
            while i < s.len() && s[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && s.get(i + 1) == Some(&b'*') {
            let start = i;
            i += 2;
            loop {
                if i + 1 >= s.len() {
                    return Err(err(start, 2, "unterminated `/*` comment"));
                }
                if s[i] == b'*' && s[i + 1] == b'/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
            continue;
        }
        let start = i;
        let simple = |t: Tok, n: usize| Token {
            tok: t,
            span: Span::new(start, start + n),
            inner: Span::default(),
        };
        match c {
            b'-' if s.get(i + 1) == Some(&b'>') => {
                out.push(simple(Tok::Arrow, 2));
                i += 2;
            }
            b':' if s.get(i + 1) == Some(&b':') => {
                out.push(simple(Tok::ColonColon, 2));
                i += 2;
            }
            b';' => {
                out.push(simple(Tok::Semi, 1));
                i += 1;
            }
            b',' => {
                out.push(simple(Tok::Comma, 1));
                i += 1;
            }
            b'[' => {
                out.push(simple(Tok::LBracket, 1));
                i += 1;
            }
            b']' => {
                out.push(simple(Tok::RBracket, 1));
                i += 1;
            }
            b'{' => {
                out.push(simple(Tok::LBrace, 1));
                i += 1;
            }
            b'}' => {
                out.push(simple(Tok::RBrace, 1));
                i += 1;
            }
            b'|' => {
                out.push(simple(Tok::Pipe, 1));
                i += 1;
            }
            b'(' => {
                let end = matching_paren(s, i)
                    .ok_or_else(|| err(i, 1, "unclosed `(`: no matching `)`"))?;
                let text = src.text[i + 1..end].to_string();
                out.push(Token {
                    tok: Tok::Args(text),
                    span: Span::new(i, end + 1),
                    inner: Span::new(i + 1, end),
                });
                i = end + 1;
            }
            b')' => return Err(err(i, 1, "unexpected `)`")),
            b'$' => {
                i += 1;
                let braced = s.get(i) == Some(&b'{');
                if braced {
                    i += 1;
                }
                let ns = i;
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
                    i += 1;
                }
                if i == ns {
                    return Err(err(start, 1, "`$` must be followed by a variable name"));
                }
                let name = src.text[ns..i].to_string();
                if braced {
                    if s.get(i) != Some(&b'}') {
                        return Err(err(start, i - start, "unterminated `${`"));
                    }
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Var(name),
                    span: Span::new(start, i),
                    inner: Span::default(),
                });
            }
            c if c.is_ascii_digit() => {
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
                let n = src.text[start..i]
                    .parse()
                    .map_err(|_| err(start, i - start, "number too large"))?;
                out.push(Token {
                    tok: Tok::Int(n),
                    span: Span::new(start, i),
                    inner: Span::default(),
                });
            }
            c if is_ident_start(c) => {
                while i < s.len() && is_ident_char(s[i]) {
                    // `a/b` is a name, but `a//comment` is not.
                    if s[i] == b'/' && matches!(s.get(i + 1), Some(b'/') | Some(b'*')) {
                        break;
                    }
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(src.text[start..i].to_string()),
                    span: Span::new(start, i),
                    inner: Span::default(),
                });
            }
            _ => {
                let ch = src.text[start..].chars().next().unwrap_or('?');
                return Err(err(
                    start,
                    ch.len_utf8(),
                    &format!("unexpected character `{ch}`"),
                ));
            }
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        span: Span::new(s.len(), s.len()),
        inner: Span::default(),
    });
    Ok(out)
}

/// Index of the `)` matching the `(` at `open`, skipping quoted strings, comments and nested brackets.
fn matching_paren(s: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < s.len() {
        match s[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return (s[i] == b')').then_some(i);
                }
            }
            b'"' => {
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'/' if s.get(i + 1) == Some(&b'/') => {
                while i < s.len() && s[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if s.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < s.len() && !(s[i] == b'*' && s[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits the inside of an argument list at top-level commas. Spans are absolute; comments are dropped.
pub fn split_args(text: &str, base: usize) -> Vec<(String, Span)> {
    let s = text.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    let mut cur_start: Option<usize> = None;
    let mut cur_end = 0;
    let mut i = 0;
    let flush =
        |cur: &mut String, cs: &mut Option<usize>, ce: usize, out: &mut Vec<(String, Span)>| {
            let t = cur.trim().to_string();
            let st = cs.unwrap_or(ce);
            out.push((t, Span::new(base + st, base + ce.max(st))));
            cur.clear();
            *cs = None;
        };
    while i < s.len() {
        let c = s[i];
        if c == b'/' && s.get(i + 1) == Some(&b'/') {
            while i < s.len() && s[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && s.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < s.len() && !(s[i] == b'*' && s[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            continue;
        }
        if c == b',' && depth == 0 {
            flush(&mut cur, &mut cur_start, cur_end, &mut out);
            i += 1;
            continue;
        }
        let start = i;
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'"' => {
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        // Whole characters: a multi-byte one is taken in one piece.
        let mut end = (i + 1).min(s.len());
        while end < s.len() && !text.is_char_boundary(end) {
            end += 1;
        }
        let piece = &text[start..end];
        if !piece.trim().is_empty() {
            if cur_start.is_none() {
                cur_start = Some(start);
            }
            cur_end = end;
        }
        cur.push_str(piece);
        i = end;
    }
    if !cur.trim().is_empty() || !out.is_empty() {
        flush(&mut cur, &mut cur_start, cur_end, &mut out);
    }
    // A trailing comma leaves an empty last argument: drop it, as Click does.
    if out.last().is_some_and(|(t, _)| t.is_empty()) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split() {
        let a = split_args(r#" 12/0800, "a,b" , f(x, y) // c"#, 10);
        let t: Vec<&str> = a.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(t, vec!["12/0800", "\"a,b\"", "f(x, y)"]);
        assert_eq!(a[0].1, Span::new(11, 18));
        assert!(split_args("   ", 0).is_empty());
    }

    #[test]
    fn tokens() {
        let src = SourceFile::new("t", "a :: B(1, (2)) -> [1]c; /* x */ // y\n$v");
        let t: Vec<Tok> = lex(&src).unwrap().into_iter().map(|t| t.tok).collect();
        assert_eq!(
            t,
            vec![
                Tok::Ident("a".into()),
                Tok::ColonColon,
                Tok::Ident("B".into()),
                Tok::Args("1, (2)".into()),
                Tok::Arrow,
                Tok::LBracket,
                Tok::Int(1),
                Tok::RBracket,
                Tok::Ident("c".into()),
                Tok::Semi,
                Tok::Var("v".into()),
                Tok::Eof
            ]
        );
    }
}
