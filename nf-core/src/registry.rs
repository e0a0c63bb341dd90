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

    /// Registers class `E` under its name, with its doc line and its `configure`.
    pub fn add<E: crate::element::ElementClass>(&mut self) {
        self.register(E::NAME, E::DOC, E::configure);
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

/// The edit distance between two names, a swap of neighbours counting as one edit (the optimal string
/// alignment distance: `LIMTI` is one edit from `LIMIT`), for "did you mean".
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j - 1] + cost)
                .min(rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}
