//! Graphs of elements, built in code (a typed builder) or from a configuration ([`crate::Config::build`]).
//!
//! ```
//! use nf_core::{Graph, Router, elements::standard::{Counter, Discard, InfiniteSource}};
//! let mut g = Graph::new();
//! let src = g.add("src", InfiniteSource::udp_flows(64, 10).limit(1000).stop(true));
//! let c = g.add("c", Counter::new());
//! let d = g.add("d", Discard::new());
//! g.chain(&[src.id(), c.id(), d.id()]);
//! let mut r = Router::new(g).unwrap();
//! r.run().unwrap();
//! assert_eq!(r.element(c).unwrap().count(), 1000);
//! ```

use crate::element::Element;
use crate::error::{SourceFile, Span};
use std::marker::PhantomData;
use std::sync::Arc;

/// A typed handle to an element added with [`Graph::add`]; [`crate::Router::element`] gives it back typed.
pub struct ElementId<T> {
    index: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for ElementId<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ElementId<T> {}
impl<T> std::fmt::Debug for ElementId<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ElementId({})", self.index)
    }
}

impl<T> ElementId<T> {
    /// The element's index in the graph.
    pub fn id(&self) -> usize {
        self.index
    }
}

pub(crate) struct GraphNode {
    pub(crate) name: String,
    pub(crate) element: Option<Box<dyn Element>>,
    pub(crate) span: Option<Span>,
}

/// A connection from an output port to an input port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Source element index and output port.
    pub from: (usize, usize),
    /// Destination element index and input port.
    pub to: (usize, usize),
    /// Where it was written, for configurations.
    pub span: Option<Span>,
}

/// Elements and their connections, not yet checked. [`crate::Router::new`] checks and runs it.
#[derive(Default)]
pub struct Graph {
    pub(crate) nodes: Vec<GraphNode>,
    pub(crate) edges: Vec<Edge>,
    pub(crate) source: Option<Arc<SourceFile>>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field(
                "elements",
                &self
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("edges", &self.edges)
            .finish()
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with_source(src: Arc<SourceFile>) -> Self {
        Graph {
            source: Some(src),
            ..Default::default()
        }
    }

    /// Adds an element; the handle connects it and reads it back after the run.
    pub fn add<E: Element>(&mut self, name: &str, e: E) -> ElementId<E> {
        let index = self.add_boxed(name, Box::new(e));
        ElementId {
            index,
            _t: PhantomData,
        }
    }

    /// Adds a boxed element; returns its index.
    pub fn add_boxed(&mut self, name: &str, e: Box<dyn Element>) -> usize {
        self.nodes.push(GraphNode {
            name: name.to_string(),
            element: Some(e),
            span: None,
        });
        self.nodes.len() - 1
    }

    pub(crate) fn add_boxed_at(&mut self, name: &str, e: Box<dyn Element>, span: Span) -> usize {
        self.nodes.push(GraphNode {
            name: name.to_string(),
            element: Some(e),
            span: Some(span),
        });
        self.nodes.len() - 1
    }

    pub(crate) fn add_placeholder(&mut self, name: &str, span: Span) {
        self.nodes.push(GraphNode {
            name: name.to_string(),
            element: None,
            span: Some(span),
        });
    }

    /// Connects output `out` of element `from` to input `inp` of element `to` (indices from [`ElementId::id`]).
    pub fn connect(&mut self, from: usize, out: usize, to: usize, inp: usize) {
        self.edges.push(Edge {
            from: (from, out),
            to: (to, inp),
            span: None,
        });
    }

    pub(crate) fn connect_at(&mut self, from: (usize, usize), to: (usize, usize), span: Span) {
        self.edges.push(Edge {
            from,
            to,
            span: Some(span),
        });
    }

    /// Connects output 0 of each element to input 0 of the next.
    pub fn chain(&mut self, ids: &[usize]) {
        for w in ids.windows(2) {
            self.connect(w[0], 0, w[1], 0);
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if the graph has no element.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Index of the element called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The connections.
    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }
}
