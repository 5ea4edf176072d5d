//! YAML values that remember where each part came from: a `.b9` AST node, or
//! a place in a YAML file. Merged like [`crate::text::yaml::merge`], so a
//! part of a merged cloud-config is found at the source it came from.

use crate::diag::source::{SourceRef, Span};
use crate::diag::Location;
use crate::text::yaml::locate::Place;
use crate::text::yaml::Value;

/// A YAML value with the place of each of its parts.
#[derive(Clone, Debug)]
pub struct Located {
    /// Where this value comes from.
    pub at: Location,
    /// The value, with its parts located.
    pub shape: Shape,
}

/// A located value's kind.
#[derive(Clone, Debug)]
pub enum Shape {
    /// A scalar (or a tagged value).
    Scalar(Value),
    /// A sequence.
    Seq(Vec<Located>),
    /// A mapping, in order: key, where the key is, value.
    Map(Vec<(Value, Location, Located)>),
}

/// One step of a path into a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

impl Located {
    /// `value`, every part of it at `at` (a literal or rendered text).
    pub fn whole(value: Value, at: &Location) -> Located {
        let shape = match value {
            Value::Sequence(items) => {
                Shape::Seq(items.into_iter().map(|v| Located::whole(v, at)).collect())
            }
            Value::Mapping(m) => Shape::Map(
                m.into_iter()
                    .map(|(k, v)| (k, at.clone(), Located::whole(v, at)))
                    .collect(),
            ),
            v => Shape::Scalar(v),
        };
        Located {
            at: at.clone(),
            shape,
        }
    }

    /// `value` read from a text, its parts found through `place` (from
    /// [`crate::text::yaml::locate`]) in `source`; `origin` maps a byte offset
    /// of the text read to one of `source` (they differ when `${var}` were
    /// expanded). Parts without a place take their parent's.
    pub fn from_text(
        value: Value,
        place: Option<&Place>,
        source: &SourceRef,
        origin: &dyn Fn(usize) -> usize,
        parent: &Location,
    ) -> Located {
        let here = |span: (usize, usize)| {
            let (start, end) = (origin(span.0), origin(span.1));
            Location {
                source: source.clone(),
                span: Span::new(start, end.max(start)),
            }
        };
        let at = place.map_or_else(|| parent.clone(), |p| here(p.span));
        let shape = match value {
            Value::Sequence(items) => Shape::Seq(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let p = place.and_then(|p| p.item(i));
                        Located::from_text(v, p, source, origin, &at)
                    })
                    .collect(),
            ),
            Value::Mapping(m) => Shape::Map(
                m.into_iter()
                    .map(|(k, v)| {
                        let entry = place.and_then(|p| p.entry(&key_text(&k)));
                        let key_at = entry.map_or_else(|| at.clone(), |(k, _)| here(*k));
                        let v = Located::from_text(v, entry.map(|(_, p)| p), source, origin, &at);
                        (k, key_at, v)
                    })
                    .collect(),
            ),
            v => Shape::Scalar(v),
        };
        Located { at, shape }
    }

    /// The plain value.
    pub fn value(&self) -> Value {
        match &self.shape {
            Shape::Scalar(v) => v.clone(),
            Shape::Seq(items) => Value::Sequence(items.iter().map(Located::value).collect()),
            Shape::Map(entries) => Value::Mapping(
                entries
                    .iter()
                    .map(|(k, _, v)| (k.clone(), v.value()))
                    .collect(),
            ),
        }
    }

    /// The deepest part on `path` (the part itself when the whole path
    /// exists) and, when the path ends at a mapping key, where that key is.
    pub fn find(&self, path: &[Step]) -> (&Located, Option<&Location>) {
        let mut here = self;
        let mut key = None;
        for step in path {
            let next = match (step, &here.shape) {
                (Step::Index(i), Shape::Seq(items)) => items.get(*i).map(|v| (v, None)),
                (Step::Key(k), Shape::Map(entries)) => entries
                    .iter()
                    .find(|(name, _, _)| key_text(name) == *k)
                    .map(|(_, at, v)| (v, Some(at))),
                _ => None,
            };
            match next {
                Some((v, k)) => {
                    here = v;
                    key = k;
                }
                None => return (here, None),
            }
        }
        (here, key)
    }

    /// The top-level keys with where each is (none unless a mapping).
    pub fn keys(&self) -> impl Iterator<Item = (String, &Location)> {
        let entries = match &self.shape {
            Shape::Map(entries) => entries.as_slice(),
            _ => &[],
        };
        entries.iter().map(|(k, at, _)| (key_text(k), at))
    }
}

/// The text a mapping key is looked up by.
pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        _ => String::new(),
    }
}

/// [`crate::text::yaml::merge`] of two located values, each part kept where
/// it came from (docs/COMPATIBILITY.md#yaml-merge); the rules and their order
/// are the same, so `merge(a, b).value() == yaml::merge(a.value(), b.value())`.
pub fn merge(a: Located, b: Located) -> Located {
    let at = a.at.clone();
    let shape = match (a.shape, b.shape) {
        (Shape::Map(mut ma), Shape::Map(mb)) => {
            for (k, kat, vb) in mb {
                match ma.iter_mut().find(|(name, _, _)| *name == k) {
                    Some((_, _, va)) => {
                        let old = std::mem::replace(va, Located::whole(Value::Null, &at));
                        *va = merge(old, vb);
                    }
                    None => ma.push((k, kat, vb)),
                }
            }
            Shape::Map(ma)
        }
        (Shape::Seq(mut sa), Shape::Seq(sb)) => {
            sa.extend(sb);
            Shape::Seq(sa)
        }
        (Shape::Seq(mut sa), shape) => {
            sa.push(Located { at: b.at, shape });
            Shape::Seq(sa)
        }
        (shape, Shape::Seq(sb)) => {
            let mut s = Vec::with_capacity(sb.len() + 1);
            s.push(Located {
                at: a.at.clone(),
                shape,
            });
            s.extend(sb);
            Shape::Seq(s)
        }
        (Shape::Scalar(Value::String(mut sa)), Shape::Scalar(Value::String(sb))) => {
            sa.push_str(&sb);
            Shape::Scalar(Value::String(sa))
        }
        (sa, sb) => Shape::Seq(vec![
            Located {
                at: a.at,
                shape: sa,
            },
            Located {
                at: b.at,
                shape: sb,
            },
        ]),
    };
    Located { at, shape }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::source::Source;
    use crate::text::yaml;

    fn from(text: &str) -> (Located, SourceRef) {
        let source = Source::new("f.yaml", text);
        let value = yaml::parse(text).unwrap();
        let place = yaml::locate::locate(text);
        let whole = Location {
            source: source.clone(),
            span: Span::new(0, 0),
        };
        let v = Located::from_text(value, place.as_ref(), &source, &|o| o, &whole);
        (v, source)
    }

    fn line_col(l: &Location) -> String {
        l.line_col().to_string()
    }

    #[test]
    fn a_path_leads_to_the_line_and_column_of_its_value() {
        let (v, _) = from("#cloud-config\nruncmd: 5\nusers:\n  - name: bob\n    groups: 7\n");
        let (runcmd, key) = v.find(&[Step::Key("runcmd".into())]);
        assert_eq!(line_col(&runcmd.at), "2:9");
        assert_eq!(line_col(key.unwrap()), "2:1");
        let path = [
            Step::Key("users".into()),
            Step::Index(0),
            Step::Key("groups".into()),
        ];
        assert_eq!(line_col(&v.find(&path).0.at), "5:13");
        // A path that goes on past the document stops at its deepest part.
        let (deep, key) = v.find(&[Step::Key("users".into()), Step::Index(3)]);
        assert_eq!(line_col(&deep.at), "4:3");
        assert!(key.is_none());
    }

    #[test]
    fn merged_parts_stay_at_their_sources() {
        let (a, _) = from("packages: [nginx]\nruncmd:\n  - a\n");
        let (b, _) = from("runcmd: [b]\nfqdn: x\n");
        let m = merge(a.clone(), b.clone());
        assert_eq!(m.value(), yaml::merge(a.value(), b.value()));
        let second = m.find(&[Step::Key("runcmd".into()), Step::Index(1)]).0;
        assert_eq!(second.at.source.text(), "runcmd: [b]\nfqdn: x\n");
        assert_eq!(line_col(&second.at), "1:10");
        let (_, fqdn) = m.find(&[Step::Key("fqdn".into())]);
        assert_eq!(line_col(fqdn.unwrap()), "2:1");
    }

    #[test]
    fn merge_agrees_with_the_yaml_merge_on_every_rule() {
        let texts = [
            "{a: 1, b: [x]}",
            "[1, 2]",
            "s",
            "5",
            "~",
            "{b: [y], c: 2}",
            "t",
        ];
        for x in texts {
            for y in texts {
                let (a, _) = from(x);
                let (b, _) = from(y);
                let merged = merge(a.clone(), b.clone()).value();
                assert_eq!(merged, yaml::merge(a.value(), b.value()), "{x} + {y}");
            }
        }
    }
}
