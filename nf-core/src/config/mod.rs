//! The Click-compatible configuration language.
//!
//! ```text
//! // comments, and /* block comments */
//! define($LIMIT 1000);
//! src :: InfiniteSource(LIMIT $LIMIT, STOP true);
//! elementclass CountAndDrop { $label | input -> c :: Counter -> output }
//! src -> Strip(14) -> CheckIPHeader -> cls :: IPClassifier(tcp, udp, -);
//! cls[0] -> CountAndDrop(tcp) -> Discard;
//! cls[1] -> Counter -> Discard;
//! cls[2] -> Discard;
//! ```
//!
//! [`Config::parse`] reads the text into a flat list of element declarations and connections (compound
//! elements expanded, `$variables` substituted); [`Config::build`] makes the elements through a
//! [`Registry`] and gives a [`Graph`] that [`Router::new`](crate::Router::new)
//! checks and runs. Every error names the line and column and shows the text.

pub mod lexer;
pub mod parser;

use crate::args::{Args, RawArg};
use crate::error::{ConfigError, ConfigErrors, SourceFile, Span};
use crate::graph::Graph;
use crate::registry::Registry;
use parser::{Body, ClassDef, ClassRef, ElemRef, Stmt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

/// An element declared in a configuration (after compound expansion).
#[derive(Debug, Clone)]
pub struct ElementDecl {
    /// Full name (`outer/inner` inside compounds; `Class@N` when anonymous).
    pub name: String,
    /// Class name.
    pub class: String,
    /// Where the class name is written.
    pub class_span: Span,
    /// Arguments, with `$variables` substituted.
    pub args: Vec<RawArg>,
    /// Span of the whole argument list.
    pub args_span: Span,
}

/// A connection `from[port] -> [port]to` between declared elements (indices into [`Config::elements`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionDecl {
    /// Source element and output port.
    pub from: (usize, usize),
    /// Destination element and input port.
    pub to: (usize, usize),
    /// Where the connection is written.
    pub span: Span,
}

/// A parsed configuration: flat declarations and connections.
#[derive(Debug, Clone)]
pub struct Config {
    /// Elements, in declaration order.
    pub elements: Vec<ElementDecl>,
    /// Connections.
    pub connections: Vec<ConnectionDecl>,
    /// The text it came from.
    pub source: Arc<SourceFile>,
    /// The `$NAME` variables the text reads (a command-line `NAME=VALUE` outside this set is unused:
    /// [`Config::unused_params`]).
    pub variables_read: BTreeSet<String>,
}

impl Config {
    /// Parses a configuration. `params` sets `$NAME` variables (the `NAME=value` words of `nf run`); they
    /// override the configuration's own `define($NAME default)`.
    pub fn parse(
        name: &str,
        text: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigErrors> {
        let src = SourceFile::new(name, text);
        let toks = lexer::lex(&src)?;
        let body = parser::parse(&toks, &src)?;
        let mut ex = Expander {
            src: src.clone(),
            nodes: Vec::new(),
            edges: Vec::new(),
            errors: Vec::new(),
            anon: 0,
            read: Default::default(),
        };
        let mut scope = Scope {
            prefix: String::new(),
            names: HashMap::new(),
            classes: Vec::new(),
            vars: params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            fixed: params.keys().cloned().collect(),
            ports: None,
            depth: 0,
            within: Vec::new(),
        };
        ex.body(&body, &mut scope);
        if !ex.errors.is_empty() {
            return Err(ConfigErrors(ex.errors));
        }
        ex.finish()
    }

    /// Replaces the class and arguments of the element called `name` (a benchmark swapping a file source for
    /// an in-memory one). Returns false if there is no such element.
    pub fn replace_element(&mut self, name: &str, class: &str, args: &[&str]) -> bool {
        match self.elements.iter_mut().find(|e| e.name == name) {
            Some(e) => {
                e.class = class.to_string();
                e.args = args
                    .iter()
                    .map(|a| RawArg {
                        text: a.to_string(),
                        span: e.args_span,
                    })
                    .collect();
                true
            }
            None => false,
        }
    }

    /// The configuration flattened, in Click's language: every element declared with its class and
    /// arguments (compounds expanded, variables substituted), then every connection (Click's
    /// `flatconfig`).
    pub fn flatten(&self) -> String {
        let mut s = String::new();
        for e in &self.elements {
            let args: Vec<&str> = e.args.iter().map(|a| a.text.as_str()).collect();
            s.push_str(&format!(
                "{} :: {}({});\n",
                e.name,
                e.class,
                args.join(", ")
            ));
        }
        for c in &self.connections {
            let (f, t) = (&self.elements[c.from.0].name, &self.elements[c.to.0].name);
            s.push_str(&format!("{f} [{}] -> [{}] {t};\n", c.from.1, c.to.1));
        }
        s
    }

    /// The names of `params` that the configuration never reads (most likely misspelt: a caller warns).
    pub fn unused_params<'a>(&self, params: &'a BTreeMap<String, String>) -> Vec<&'a str> {
        params
            .keys()
            .filter(|k| !self.variables_read.contains(k.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// Reads a configuration file.
    pub fn from_file(
        path: &std::path::Path,
        params: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&path.display().to_string(), &text, params)
    }

    /// Makes the elements through `registry`. Every unknown class and bad argument is reported.
    pub fn build(&self, registry: &Registry) -> Result<Graph, ConfigErrors> {
        self.build_with_budget(registry, crate::args::DEFAULT_MEMORY_BUDGET)
    }

    /// [`Config::build`] with a memory budget of `bytes` for what the elements allocate when they are made
    /// (see [`Args::reserve`]); an element that would go past it is a configuration error.
    pub fn build_with_budget(
        &self,
        registry: &Registry,
        bytes: u64,
    ) -> Result<Graph, ConfigErrors> {
        let budget = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(bytes));
        let mut g = Graph::with_source(self.source.clone());
        let mut errors = Vec::new();
        for d in &self.elements {
            let Some(class) = registry.get(&d.class) else {
                let mut e = ConfigError::at(
                    Some(&self.source),
                    d.class_span,
                    format!("unknown element class `{}`", d.class),
                );
                if let Some(s) = registry.suggest(&d.class) {
                    e = e.with_help(format!("did you mean `{s}`?"));
                } else if !d.name.contains('@') {
                    e = e.with_help("`nf elements` lists the classes");
                } else {
                    e = e.with_help(format!("no element named `{}` is declared either", d.class));
                }
                errors.push(e);
                g.add_placeholder(&d.name, d.class_span);
                continue;
            };
            let mut args = Args::new(
                &d.class,
                d.args.clone(),
                Some(self.source.clone()),
                d.args_span,
            )
            .with_budget(budget.clone());
            match (class.constructor)(&mut args).and_then(|e| args.complete().map(|_| e)) {
                Ok(e) => {
                    g.add_boxed_at(&d.name, e, d.class_span);
                }
                Err(e) => {
                    errors.push(e);
                    g.add_placeholder(&d.name, d.class_span);
                }
            }
        }
        for c in &self.connections {
            g.connect_at(c.from, c.to, c.span);
        }
        if errors.is_empty() {
            Ok(g)
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct NodeRef {
    /// Node that edges *leave* (compound: its output pseudo-node).
    src: usize,
    /// Node that edges *enter* (compound: its input pseudo-node).
    dst: usize,
}

enum Node {
    Real(ElementDecl),
    Pseudo {
        owner: String,
        input: bool,
        span: Span,
    },
}

struct Scope {
    prefix: String,
    names: HashMap<String, (NodeRef, Span)>,
    classes: Vec<(String, ClassDef)>,
    vars: HashMap<String, String>,
    fixed: std::collections::HashSet<String>,
    /// (input pseudo, output pseudo) inside a compound.
    ports: Option<(usize, usize)>,
    depth: usize,
    /// The compound bodies being expanded, outermost first (a class that contains itself is an error).
    within: Vec<*const Body>,
}

/// The most elements a configuration may expand to (compound classes included), so that nested compounds
/// cannot multiply into more than a builder can hold.
pub const MAX_ELEMENTS: usize = 1 << 18;

struct Expander {
    src: Arc<SourceFile>,
    nodes: Vec<Node>,
    edges: Vec<ConnectionDecl>,
    errors: Vec<ConfigError>,
    anon: usize,
    /// Variables substituted somewhere.
    read: std::cell::RefCell<BTreeSet<String>>,
}

impl Expander {
    fn err(&self, span: Span, msg: impl Into<String>) -> ConfigError {
        ConfigError::at(Some(&self.src), span, msg)
    }

    fn body(&mut self, body: &Body, scope: &mut Scope) {
        for st in &body.stmts {
            if let Err(e) = self.stmt(st, scope) {
                self.errors.push(e);
            }
        }
    }

    fn stmt(&mut self, st: &Stmt, scope: &mut Scope) -> Result<(), ConfigError> {
        match st {
            Stmt::Require => Ok(()),
            Stmt::Define(text, span) => {
                for (a, sp) in lexer::split_args(text, span.start) {
                    let a = a.trim();
                    let Some(rest) = a.strip_prefix('$') else {
                        return Err(self.err(sp, "define() takes `$NAME value` pairs"));
                    };
                    let (name, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    if !scope.fixed.contains(name) {
                        let v = self.subst(value.trim(), sp, scope)?;
                        scope.vars.insert(name.to_string(), v);
                    }
                }
                Ok(())
            }
            Stmt::ElementClass(name, _span, def) => {
                scope.classes.push((name.clone(), def.clone()));
                Ok(())
            }
            Stmt::Decl(names, class) => {
                for (n, sp) in names {
                    self.declare(n, *sp, class, scope)?;
                }
                Ok(())
            }
            Stmt::Chain(eps) => {
                let mut prev: Option<(NodeRef, usize, Span)> = None;
                for ep in eps {
                    let r = self.endpoint(&ep.elem, scope)?;
                    if let Some((from, out_port, from_span)) = prev {
                        let in_port = ep.in_port.map_or(0, |p| p.0);
                        let Some(dst) = r.map(|r| r.dst) else {
                            return Err(self.err(
                                ep.span,
                                "`input` cannot receive connections inside its compound",
                            ));
                        };
                        self.edges.push(ConnectionDecl {
                            from: (from.src, out_port),
                            to: (dst, in_port),
                            span: from_span.to(ep.span),
                        });
                    } else if let Some((_, sp)) = ep.in_port {
                        return Err(self.err(
                            sp,
                            "an input port needs a connection arriving from the left",
                        ));
                    }
                    match r {
                        Some(r) => prev = Some((r, ep.out_port.map_or(0, |p| p.0), ep.span)),
                        None => {
                            // `output` ends a chain inside a compound.
                            prev = None;
                            if let Some((_, sp)) = ep.out_port {
                                return Err(self
                                    .err(sp, "`output` cannot send packets inside its compound"));
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Resolves an endpoint to a node; `None` for a compound's `output` pseudo-element used as destination.
    fn endpoint(&mut self, e: &ElemRef, scope: &mut Scope) -> Result<Option<NodeRef>, ConfigError> {
        match e {
            ElemRef::Name(n, sp) => {
                if let Some((r, _)) = scope.names.get(n) {
                    return Ok(Some(*r));
                }
                if let Some((pin, pout)) = scope.ports {
                    if n == "input" {
                        return Ok(Some(NodeRef {
                            src: pin,
                            dst: usize::MAX,
                        }));
                    }
                    if n == "output" {
                        return Ok(Some(NodeRef {
                            src: usize::MAX,
                            dst: pout,
                        }));
                    }
                }
                let c = ClassRef {
                    name: n.clone(),
                    span: *sp,
                    args: None,
                };
                let name = self.anon_name(&c.name, scope);
                self.instantiate(&name, &c, scope).map(Some)
            }
            ElemRef::Decl(n, sp, c) => self.declare(n, *sp, c, scope).map(Some),
            ElemRef::Anon(c) => {
                let name = self.anon_name(&c.name, scope);
                self.instantiate(&name, c, scope).map(Some)
            }
        }
    }

    fn anon_name(&mut self, class: &str, scope: &Scope) -> String {
        self.anon += 1;
        format!("{}{}@{}", scope.prefix, class, self.anon)
    }

    fn declare(
        &mut self,
        n: &str,
        sp: Span,
        c: &ClassRef,
        scope: &mut Scope,
    ) -> Result<NodeRef, ConfigError> {
        if n == "input" || n == "output" {
            return Err(self.err(
                sp,
                format!("`{n}` is reserved for the ports of compound elements"),
            ));
        }
        if let Some((_, first)) = scope.names.get(n) {
            let (l, c) = self.src.line_col(first.start);
            return Err(self
                .err(sp, format!("element `{n}` is declared twice"))
                .with_help(format!("first declared at line {l}, column {c}")));
        }
        let full = format!("{}{}", scope.prefix, n);
        let r = self.instantiate(&full, c, scope)?;
        scope.names.insert(n.to_string(), (r, sp));
        Ok(r)
    }

    fn find_class(scope: &Scope, name: &str) -> Option<ClassDef> {
        scope
            .classes
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
    }

    fn instantiate(
        &mut self,
        full: &str,
        c: &ClassRef,
        scope: &mut Scope,
    ) -> Result<NodeRef, ConfigError> {
        let mut class_name = c.name.clone();
        let mut def = Self::find_class(scope, &class_name);
        let mut hops = 0;
        while let Some(ClassDef::Synonym(target, _)) = &def {
            hops += 1;
            if hops > 16 {
                return Err(self.err(
                    c.span,
                    format!("element class `{}` is defined in terms of itself", c.name),
                ));
            }
            class_name = target.clone();
            def = Self::find_class(scope, &class_name);
        }
        let (args_text, args_span) = match &c.args {
            Some((t, sp)) => (t.clone(), *sp),
            None => (String::new(), Span::new(c.span.end, c.span.end)),
        };
        let mut args = Vec::new();
        for (t, sp) in lexer::split_args(&args_text, args_span.start) {
            args.push(RawArg {
                text: self.subst(&t, sp, scope)?,
                span: sp,
            });
        }
        match def {
            Some(ClassDef::Compound(body)) => self.expand_compound(full, c, &body, args, scope),
            _ => {
                let id = self.nodes.len();
                self.nodes.push(Node::Real(ElementDecl {
                    name: full.to_string(),
                    class: class_name,
                    class_span: c.span,
                    args,
                    args_span,
                }));
                Ok(NodeRef { src: id, dst: id })
            }
        }
    }

    fn expand_compound(
        &mut self,
        full: &str,
        c: &ClassRef,
        body: &Rc<Body>,
        args: Vec<RawArg>,
        scope: &mut Scope,
    ) -> Result<NodeRef, ConfigError> {
        if scope.within.contains(&Rc::as_ptr(body)) {
            return Err(self.err(
                c.span,
                format!("compound class `{}` contains itself", c.name),
            ));
        }
        if self.nodes.len() >= MAX_ELEMENTS {
            return Err(self.err(
                c.span,
                format!(
                    "the configuration expands to more than {MAX_ELEMENTS} elements (nested compound classes)"
                ),
            ));
        }
        if scope.depth > 32 {
            return Err(self.err(
                c.span,
                format!(
                    "compound `{}` nests more than 32 levels (recursive?)",
                    c.name
                ),
            ));
        }
        if args.len() != body.formals.len() {
            return Err(self.err(
                c.span,
                format!(
                    "compound class `{}` takes {} argument(s), {} given",
                    c.name,
                    body.formals.len(),
                    args.len()
                ),
            ));
        }
        let pin = self.nodes.len();
        self.nodes.push(Node::Pseudo {
            owner: full.to_string(),
            input: true,
            span: c.span,
        });
        let pout = self.nodes.len();
        self.nodes.push(Node::Pseudo {
            owner: full.to_string(),
            input: false,
            span: c.span,
        });
        let mut vars = scope.vars.clone();
        for ((f, _), a) in body.formals.iter().zip(args) {
            vars.insert(f.clone(), a.text);
        }
        let mut inner = Scope {
            prefix: format!("{full}/"),
            names: HashMap::new(),
            classes: scope.classes.clone(),
            vars,
            fixed: scope.fixed.clone(),
            ports: Some((pin, pout)),
            depth: scope.depth + 1,
            within: {
                let mut w = scope.within.clone();
                w.push(Rc::as_ptr(body));
                w
            },
        };
        self.body(body, &mut inner);
        Ok(NodeRef {
            src: pout,
            dst: pin,
        })
    }

    /// Substitutes `$NAME` and `${NAME}` in argument text.
    fn subst(&self, text: &str, span: Span, scope: &Scope) -> Result<String, ConfigError> {
        if !text.contains('$') {
            return Ok(text.to_string());
        }
        let mut out = String::with_capacity(text.len());
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'$' {
                let start = i;
                i += 1;
                let braced = b.get(i) == Some(&b'{');
                if braced {
                    i += 1;
                }
                let ns = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let name = &text[ns..i];
                if braced && b.get(i) == Some(&b'}') {
                    i += 1;
                }
                if name.is_empty() {
                    out.push('$');
                    continue;
                }
                match scope.vars.get(name) {
                    Some(v) => {
                        let mut read = self.read.borrow_mut();
                        if !read.contains(name) {
                            read.insert(name.to_string());
                        }
                        out.push_str(v)
                    }
                    None => {
                        let at = span.start + start;
                        return Err(ConfigError::at(
                            Some(&self.src),
                            Span::new(at, span.start + i),
                            format!("undefined variable `${name}`"),
                        )
                        .with_help(format!("set it on the command line (`{name}=...`) or with `define(${name} ...)`")));
                    }
                }
            } else {
                let ch = text[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
        Ok(out)
    }

    /// Splices compound pseudo-ports out and renumbers the real elements.
    fn finish(mut self) -> Result<Config, ConfigErrors> {
        let is_pseudo =
            |nodes: &[Node], i: usize| matches!(nodes.get(i), Some(Node::Pseudo { .. }));
        // Edges that touch `input`/`output` used in the wrong direction were marked with usize::MAX.
        let mut errors = Vec::new();
        let mut edges: Vec<ConnectionDecl> = Vec::new();
        for e in std::mem::take(&mut self.edges) {
            if e.from.0 == usize::MAX || e.to.0 == usize::MAX {
                errors.push(self.err(
                    e.span,
                    "`output` can only receive, and `input` only send, inside a compound",
                ));
            } else {
                edges.push(e);
            }
        }
        for p in 0..self.nodes.len() {
            if !is_pseudo(&self.nodes, p) {
                continue;
            }
            let (incoming, rest): (Vec<_>, Vec<_>) = edges.into_iter().partition(|e| e.to.0 == p);
            let (outgoing, rest): (Vec<_>, Vec<_>) = rest.into_iter().partition(|e| e.from.0 == p);
            edges = rest;
            for i in &incoming {
                let outs: Vec<_> = outgoing.iter().filter(|o| o.from.1 == i.to.1).collect();
                if outs.is_empty()
                    && let Node::Pseudo { owner, input, .. } = &self.nodes[p]
                {
                    let side = if *input { "input" } else { "output" };
                    errors.push(ConfigError::at(
                        Some(&self.src),
                        i.span,
                        format!(
                            "compound element `{owner}` has no {side} port {} inside",
                            i.to.1
                        ),
                    ));
                }
                for o in outs {
                    edges.push(ConnectionDecl {
                        from: i.from,
                        to: o.to,
                        span: i.span,
                    });
                }
            }
            for o in &outgoing {
                if !incoming.iter().any(|i| i.to.1 == o.from.1)
                    && let Node::Pseudo { owner, input, span } = &self.nodes[p]
                {
                    let side = if *input { "input" } else { "output" };
                    errors.push(ConfigError::at(
                        Some(&self.src),
                        *span,
                        format!(
                            "{side} port {} of compound element `{owner}` is not connected",
                            o.from.1
                        ),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut map = vec![usize::MAX; self.nodes.len()];
        let mut elements = Vec::new();
        for (i, n) in self.nodes.into_iter().enumerate() {
            if let Node::Real(d) = n {
                map[i] = elements.len();
                elements.push(d);
            }
        }
        let connections = edges
            .into_iter()
            .map(|e| ConnectionDecl {
                from: (map[e.from.0], e.from.1),
                to: (map[e.to.0], e.to.1),
                span: e.span,
            })
            .collect();
        Ok(Config {
            elements,
            connections,
            source: self.src,
            variables_read: self.read.into_inner(),
        })
    }
}
