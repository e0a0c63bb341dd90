//! Errors of nf-core: configuration errors that name line and column and point at the text, and the rest.

use std::fmt;
use std::sync::Arc;

/// A configuration text with a name (a file path or `<string>`), for rendering error locations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The name shown in errors.
    pub name: String,
    /// The whole text.
    pub text: String,
}

impl SourceFile {
    /// A source from a name and its text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(SourceFile {
            name: name.into(),
            text: text.into(),
        })
    }

    /// The 1-based line and column (in characters) of byte offset `at`.
    pub fn line_col(&self, at: usize) -> (usize, usize) {
        let at = at.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, at)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// The location of a span, for an error.
    pub fn locate(&self, span: Span) -> Location {
        let (line, col) = self.line_col(span.start);
        let start = floor_char_boundary(&self.text, span.start.min(self.text.len()));
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let line_text = self.text[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let end = span.end.min(line_end).max(start);
        let width = self.text[start..floor_char_boundary(&self.text, end)]
            .chars()
            .count()
            .max(1);
        Location {
            file: self.name.clone(),
            line,
            col,
            line_text,
            width,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A byte range in a configuration text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from its bounds.
    pub const fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// Where an error is: file, line, column and the line's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Source name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub col: usize,
    /// The text of the line.
    pub line_text: String,
    /// Characters to underline.
    pub width: usize,
}

/// One configuration error: what is wrong and, when it came from a text, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// What is wrong.
    pub message: String,
    /// Where, if known.
    pub location: Option<Location>,
    /// An extra line of help.
    pub help: Option<String>,
}

impl ConfigError {
    /// An error without a location (a graph built in code).
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            location: None,
            help: None,
        }
    }
    /// An error at `span` of `src`.
    pub fn at(src: Option<&SourceFile>, span: Span, message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            location: src.map(|s| s.locate(span)),
            help: None,
        }
    }
    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    /// Prefixes the message (e.g. with the element it concerns).
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            None => write!(f, "error: {}", self.message)?,
            Some(l) => {
                let num = l.line.to_string();
                let pad = " ".repeat(num.len());
                writeln!(f, "error: {}", self.message)?;
                writeln!(f, "{pad}--> {}:{}:{}", l.file, l.line, l.col)?;
                writeln!(f, "{pad} |")?;
                writeln!(f, "{num} | {}", l.line_text)?;
                let lead: String = l
                    .line_text
                    .chars()
                    .take(l.col - 1)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                write!(f, "{pad} | {lead}{}", "^".repeat(l.width))?;
            }
        }
        if let Some(h) = &self.help {
            write!(f, "\n  = help: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in one configuration (checking goes on after the first, as a compiler's does).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n\n{} errors", self.0.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// The error type of nf-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is wrong (each error names line and column).
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// An element failed to initialize (e.g. a file it must open).
    #[error("element `{element}` ({class}) failed to initialize: {message}")]
    Initialize {
        /// Element name.
        element: String,
        /// Element class.
        class: String,
        /// What went wrong.
        message: String,
    },
    /// An element failed while running (e.g. it met a corrupt input file).
    #[error("element `{element}` ({class}): {message}")]
    Element {
        /// Element name.
        element: String,
        /// Element class.
        class: String,
        /// What went wrong.
        message: String,
    },
    /// No element of that name.
    #[error("no element named `{0}`")]
    NoSuchElement(String),
    /// The element has no such handler, or it refused the value.
    #[error("handler `{element}.{handler}`: {message}")]
    Handler {
        /// Element name.
        element: String,
        /// Handler name.
        handler: String,
        /// What went wrong.
        message: String,
    },
    /// A worker thread of the sharded runtime panicked or could not start.
    #[error("runtime: {0}")]
    Runtime(String),
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e.into())
    }
}
