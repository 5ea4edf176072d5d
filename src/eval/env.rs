//! Variable environments: immutable, cheap to extend and to share between the
//! thousands of instances one `Each` can produce.

use std::sync::Arc;

use crate::diag::source::{SourceRef, Span};

/// Where a binding was made.
#[derive(Clone, Debug)]
pub enum Origin {
    /// A built-in (`arg_N`, `projectRoot`, ...).
    Builtin,
    /// A binding in a build file.
    At(SourceRef, Span),
}

#[derive(Debug)]
struct Binding {
    name: String,
    value: String,
    origin: Origin,
    parent: Env,
}

/// A persistent map from variable names to values.
#[derive(Clone, Debug, Default)]
pub struct Env(Option<Arc<Binding>>);

impl Env {
    /// This environment plus one binding (the caller checks for rebinding).
    pub fn bind(&self, name: impl Into<String>, value: impl Into<String>, origin: Origin) -> Env {
        Env(Some(Arc::new(Binding {
            name: name.into(),
            value: value.into(),
            origin,
            parent: self.clone(),
        })))
    }

    fn find(&self, name: &str) -> Option<&Binding> {
        let mut cur = self.0.as_deref();
        while let Some(b) = cur {
            if b.name == name {
                return Some(b);
            }
            cur = b.parent.0.as_deref();
        }
        None
    }

    /// The value of a variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).map(|b| b.value.as_str())
    }

    /// The value and origin of a variable.
    pub fn lookup(&self, name: &str) -> Option<(&str, &Origin)> {
        self.find(name).map(|b| (b.value.as_str(), &b.origin))
    }

    /// All bindings, oldest first.
    pub fn bindings(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        let mut cur = self.0.as_deref();
        while let Some(b) = cur {
            out.push((b.name.as_str(), b.value.as_str()));
            cur = b.parent.0.as_deref();
        }
        out.reverse();
        out
    }

    /// The names of all variables, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.bindings().into_iter().map(|(n, _)| n).collect();
        names.sort_unstable();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_and_lookup_without_touching_the_parent() {
        let base = Env::default().bind("a", "1", Origin::Builtin);
        let child = base.bind("b", "2", Origin::Builtin);
        assert_eq!(child.get("a"), Some("1"));
        assert_eq!(child.get("b"), Some("2"));
        assert_eq!(base.get("b"), None);
        assert_eq!(child.bindings(), vec![("a", "1"), ("b", "2")]);
        assert_eq!(child.names(), vec!["a", "b"]);
    }
}
