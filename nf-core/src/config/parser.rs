//! The parser: tokens to an abstract syntax tree (declarations, connection chains, element classes).

use super::lexer::{Tok, Token};
use crate::error::{ConfigError, SourceFile, Span};
use std::rc::Rc;

/// A class reference with optional arguments: `Counter`, `Queue(100)`.
#[derive(Debug, Clone)]
pub struct ClassRef {
    /// Class name.
    pub name: String,
    /// Where the name is.
    pub span: Span,
    /// The raw argument text and its span (inside the parentheses), if parentheses were written.
    pub args: Option<(String, Span)>,
}

/// What an endpoint of a connection names.
#[derive(Debug, Clone)]
pub enum ElemRef {
    /// A bare name: a declared element, `input`/`output` in a compound, or a class used anonymously.
    Name(String, Span),
    /// `name :: Class(args)` inline.
    Decl(String, Span, ClassRef),
    /// `Class(args)`: an anonymous element.
    Anon(ClassRef),
}

/// `[in] element [out]` in a chain.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Input port written before the element.
    pub in_port: Option<(usize, Span)>,
    /// The element.
    pub elem: ElemRef,
    /// Output port written after the element.
    pub out_port: Option<(usize, Span)>,
    /// The whole endpoint.
    pub span: Span,
}

/// A compound element class body.
#[derive(Debug)]
pub struct Body {
    /// Formal parameters (`$a, $b |`).
    pub formals: Vec<(String, Span)>,
    /// Statements.
    pub stmts: Vec<Stmt>,
}

/// An `elementclass` definition.
#[derive(Debug, Clone)]
pub enum ClassDef {
    /// `elementclass X { ... }`
    Compound(Rc<Body>),
    /// `elementclass X Y` (a synonym).
    Synonym(String, Span),
}

/// A statement.
#[derive(Debug)]
pub enum Stmt {
    /// `elementclass NAME ...`
    ElementClass(String, Span, ClassDef),
    /// `define($X value, ...)`
    Define(String, Span),
    /// `require(...)`: accepted and ignored.
    Require,
    /// `a, b :: Class(args)`
    Decl(Vec<(String, Span)>, ClassRef),
    /// `e1 -> e2 -> ...` (a single endpoint is a declaration or a no-op).
    Chain(Vec<Endpoint>),
}

struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    src: &'a SourceFile,
}

type PResult<T> = Result<T, ConfigError>;

impl<'a> Parser<'a> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }
    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)].tok
    }
    fn tok(&self) -> &Token {
        &self.toks[self.pos]
    }
    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn err_here(&self, msg: impl Into<String>) -> ConfigError {
        ConfigError::at(Some(self.src), self.tok().span, msg)
    }
    fn expect(&mut self, t: &Tok, what: &str) -> PResult<Token> {
        if self.peek() == t {
            Ok(self.bump())
        } else {
            Err(self.err_here(format!("expected {what}, found {}", self.peek().describe())))
        }
    }

    fn body(&mut self, in_braces: bool) -> PResult<Body> {
        let mut formals = Vec::new();
        if in_braces && matches!(self.peek(), Tok::Var(_)) {
            // Formal parameters: `$a, $b |`
            loop {
                let t = self.bump();
                match t.tok {
                    Tok::Var(v) => formals.push((v, t.span)),
                    other => {
                        return Err(ConfigError::at(
                            Some(self.src),
                            t.span,
                            format!("expected a `$parameter`, found {}", other.describe()),
                        ));
                    }
                }
                match self.peek() {
                    Tok::Comma => {
                        self.bump();
                    }
                    Tok::Pipe => {
                        self.bump();
                        break;
                    }
                    _ => {
                        return Err(self.err_here("expected `,` or `|` after a compound parameter"));
                    }
                }
            }
        }
        let mut stmts = Vec::new();
        loop {
            match self.peek() {
                Tok::Eof if !in_braces => break,
                Tok::Eof => return Err(self.err_here("expected `}` to close the element class")),
                Tok::RBrace if in_braces => break,
                Tok::Semi => {
                    self.bump();
                }
                _ => {
                    let st = self.stmt()?;
                    let braced = matches!(st, Stmt::ElementClass(_, _, ClassDef::Compound(_)));
                    stmts.push(st);
                    if braced && self.peek() != &Tok::Semi {
                        // `elementclass X { ... }` needs no `;` after its closing brace.
                        continue;
                    }
                    match self.peek() {
                        Tok::Semi => {
                            self.bump();
                        }
                        Tok::RBrace if in_braces => {}
                        Tok::Eof if !in_braces => {}
                        _ => {
                            return Err(self.err_here(format!(
                                "expected `;` or `->`, found {}",
                                self.peek().describe()
                            )));
                        }
                    }
                }
            }
        }
        Ok(Body { formals, stmts })
    }

    fn stmt(&mut self) -> PResult<Stmt> {
        if let Tok::Ident(w) = self.peek().clone() {
            match w.as_str() {
                "elementclass" => {
                    self.bump();
                    let nt = self.bump();
                    let Tok::Ident(name) = nt.tok else {
                        return Err(ConfigError::at(
                            Some(self.src),
                            nt.span,
                            "expected a class name after `elementclass`",
                        ));
                    };
                    return match self.peek().clone() {
                        Tok::LBrace => {
                            self.bump();
                            let body = self.body(true)?;
                            self.expect(&Tok::RBrace, "`}`")?;
                            Ok(Stmt::ElementClass(
                                name,
                                nt.span,
                                ClassDef::Compound(Rc::new(body)),
                            ))
                        }
                        Tok::Ident(syn) => {
                            let st = self.bump();
                            Ok(Stmt::ElementClass(
                                name,
                                nt.span,
                                ClassDef::Synonym(syn, st.span),
                            ))
                        }
                        _ => {
                            Err(self
                                .err_here("expected `{` or a class name after `elementclass NAME`"))
                        }
                    };
                }
                "define" if matches!(self.peek_at(1), Tok::Args(_)) => {
                    self.bump();
                    let a = self.bump();
                    let Tok::Args(text) = a.tok else {
                        return Err(ConfigError::at(
                            Some(self.src),
                            a.span,
                            "expected an argument list",
                        ));
                    };
                    return Ok(Stmt::Define(text, a.inner));
                }
                "require" if matches!(self.peek_at(1), Tok::Args(_)) => {
                    self.bump();
                    self.bump();
                    return Ok(Stmt::Require);
                }
                _ => {}
            }
            // `a, b, c :: Class`
            if matches!(self.peek_at(1), Tok::Comma) {
                let mut names = Vec::new();
                loop {
                    let t = self.bump();
                    match t.tok {
                        Tok::Ident(n) => names.push((n, t.span)),
                        o => {
                            return Err(ConfigError::at(
                                Some(self.src),
                                t.span,
                                format!("expected an element name, found {}", o.describe()),
                            ));
                        }
                    }
                    match self.peek() {
                        Tok::Comma => {
                            self.bump();
                        }
                        Tok::ColonColon => {
                            self.bump();
                            break;
                        }
                        _ => {
                            return Err(self.err_here("expected `,` or `::` in a declaration list"));
                        }
                    }
                }
                let class = self.class_ref()?;
                return Ok(Stmt::Decl(names, class));
            }
        }
        let mut eps = vec![self.endpoint()?];
        while self.peek() == &Tok::Arrow {
            self.bump();
            eps.push(self.endpoint()?);
        }
        Ok(Stmt::Chain(eps))
    }

    fn class_ref(&mut self) -> PResult<ClassRef> {
        let t = self.bump();
        let Tok::Ident(name) = t.tok else {
            return Err(ConfigError::at(
                Some(self.src),
                t.span,
                format!("expected a class name, found {}", t.tok.describe()),
            ));
        };
        let args = if let Tok::Args(_) = self.peek() {
            let a = self.bump();
            let Tok::Args(text) = a.tok else {
                return Err(ConfigError::at(
                    Some(self.src),
                    a.span,
                    "expected an argument list",
                ));
            };
            Some((text, a.inner))
        } else {
            None
        };
        Ok(ClassRef {
            name,
            span: t.span,
            args,
        })
    }

    fn port(&mut self) -> PResult<Option<(usize, Span)>> {
        if self.peek() != &Tok::LBracket {
            return Ok(None);
        }
        let open = self.bump();
        let t = self.bump();
        let Tok::Int(n) = t.tok else {
            return Err(ConfigError::at(
                Some(self.src),
                t.span,
                format!("expected a port number, found {}", t.tok.describe()),
            ));
        };
        if n >= crate::element::MAX_PORTS {
            return Err(ConfigError::at(
                Some(self.src),
                t.span,
                format!(
                    "port {n} is out of range: an element has at most {} ports on a side",
                    crate::element::MAX_PORTS
                ),
            ));
        }
        let close = self.expect(&Tok::RBracket, "`]` after the port number")?;
        Ok(Some((n, open.span.to(close.span))))
    }

    fn endpoint(&mut self) -> PResult<Endpoint> {
        let start = self.tok().span;
        let in_port = self.port()?;
        let t = self.bump();
        let elem = match t.tok {
            Tok::Ident(name) => {
                if self.peek() == &Tok::ColonColon {
                    self.bump();
                    let c = self.class_ref()?;
                    ElemRef::Decl(name, t.span, c)
                } else if let Tok::Args(_) = self.peek() {
                    let a = self.bump();
                    let Tok::Args(text) = a.tok else {
                        return Err(ConfigError::at(
                            Some(self.src),
                            a.span,
                            "expected an argument list",
                        ));
                    };
                    ElemRef::Anon(ClassRef {
                        name,
                        span: t.span,
                        args: Some((text, a.inner)),
                    })
                } else {
                    ElemRef::Name(name, t.span)
                }
            }
            other => {
                return Err(ConfigError::at(
                    Some(self.src),
                    t.span,
                    format!("expected an element, found {}", other.describe()),
                ));
            }
        };
        let out_port = self.port()?;
        let end = self.toks[self.pos.saturating_sub(1)].span;
        Ok(Endpoint {
            in_port,
            elem,
            out_port,
            span: start.to(end),
        })
    }
}

/// Parses tokens into the statements of a configuration.
pub fn parse(toks: &[Token], src: &SourceFile) -> Result<Body, ConfigError> {
    let mut p = Parser { toks, pos: 0, src };
    let b = p.body(false)?;
    if p.peek() != &Tok::Eof {
        return Err(p.err_here(format!("unexpected {}", p.peek().describe())));
    }
    Ok(b)
}
