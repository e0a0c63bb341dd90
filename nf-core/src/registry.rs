//! The registry of element classes that configurations may name. Crates extend it with their own
//! `register(&mut Registry)`.

use crate::args::Args;
use crate::element::Element;
use crate::error::ConfigError;
use std::collections::BTreeMap;

/// Makes an element from its arguments.
pub type Constructor =
    Box<dyn Fn(&mut Args) -> Result<Box<dyn Element>, ConfigError> + Send + Sync>;

/// One registered class.
pub struct ClassInfo {
    /// Class name.
    pub name: String,
    /// One-line documentation (shown by `nf elements`).
    pub doc: String,
    /// The constructor.
    pub constructor: Constructor,
}

impl std::fmt::Debug for ClassInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassInfo")
            .field("name", &self.name)
            .field("doc", &self.doc)
            .finish()
    }
}

/// Element classes by name.
#[derive(Debug, Default)]
pub struct Registry {
    classes: BTreeMap<String, ClassInfo>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding nf-core's standard elements.
    pub fn standard() -> Self {
        let mut r = Self::new();
        crate::elements::register(&mut r);
        r
    }

    /// Registers a class. The constructor reads its arguments from `args`; arguments it leaves unread are
    /// reported as errors, so a constructor need not call [`Args::complete`].
    pub fn register<E, F>(&mut self, name: &str, doc: &str, f: F)
    where
        E: Element,
        F: Fn(&mut Args) -> Result<E, ConfigError> + Send + Sync + 'static,
    {
        self.register_boxed(
            name,
            doc,
            Box::new(move |a| f(a).map(|e| Box::new(e) as Box<dyn Element>)),
        );
    }

    /// Registers a class with a constructor that returns a boxed element.
    pub fn register_boxed(&mut self, name: &str, doc: &str, constructor: Constructor) {
        self.classes.insert(
            name.to_string(),
            ClassInfo {
                name: name.to_string(),
                doc: doc.to_string(),
                constructor,
            },
        );
    }

    /// The class called `name`.
    pub fn get(&self, name: &str) -> Option<&ClassInfo> {
        self.classes.get(name)
    }

    /// Every class, by name.
    pub fn classes(&self) -> impl Iterator<Item = &ClassInfo> {
        self.classes.values()
    }

    /// Makes an element of class `name` from argument strings (for code that builds graphs by class name).
    pub fn make(&self, name: &str, args: &[&str]) -> Result<Box<dyn Element>, ConfigError> {
        let c = self
            .get(name)
            .ok_or_else(|| ConfigError::new(format!("unknown element class `{name}`")))?;
        let mut a = Args::from_strs(name, args);
        let e = (c.constructor)(&mut a)?;
        a.complete()?;
        Ok(e)
    }

    /// The registered name closest to `name`, if one is close (for "did you mean").
    pub fn suggest(&self, name: &str) -> Option<&str> {
        let lname = name.to_ascii_lowercase();
        self.classes
            .keys()
            .map(|k| (edit_distance(&lname, &k.to_ascii_lowercase()), k))
            .filter(|(d, k)| *d <= (k.len() / 3).max(1))
            .min()
            .map(|(_, k)| k.as_str())
    }
}

/// Levenshtein distance between two names (for "did you mean").
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
