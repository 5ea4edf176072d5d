//! Where the nodes of a YAML document are: a tree of byte ranges, parallel to
//! the [`super::Value`] that [`super::parse`] reads from the same text, so a
//! path in the value (a key, an index) leads back to a place in the text.
//!
//! The positions come from a second reader (saphyr's event parser, which
//! reports a span for every event); serde_norway's reader keeps none. Both
//! read the same YAML, so the trees have the same shape; where they would
//! not (a construct one of them reads differently), a lookup stops at the
//! deepest node found, which is still a place in the right part of the text.

use saphyr_parser::{Event, Parser, Span as EventSpan};

/// One node of a document and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// Byte offsets `start..end` of the node (for a collection: its first
    /// token, a key or `-` or a bracket).
    pub span: (usize, usize),
    /// The nodes inside it.
    pub children: Children,
}

/// The nodes inside a collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Children {
    /// A scalar or an empty node.
    None,
    /// The items of a sequence, in order.
    Seq(Vec<Place>),
    /// The entries of a mapping, in text order: the key (as text, empty for a
    /// key that is not a scalar), the key's byte range, the value. A key given
    /// twice appears twice.
    Map(Vec<(String, (usize, usize), Place)>),
}

impl Place {
    /// The value of `key`: the last entry with that key (the one whose value
    /// the reader keeps).
    pub fn entry(&self, key: &str) -> Option<(&(usize, usize), &Place)> {
        match &self.children {
            Children::Map(entries) => entries
                .iter()
                .rev()
                .find(|(k, _, _)| k == key)
                .map(|(_, k, v)| (k, v)),
            _ => None,
        }
    }

    /// The `index`th item of a sequence.
    pub fn item(&self, index: usize) -> Option<&Place> {
        match &self.children {
            Children::Seq(items) => items.get(index),
            _ => None,
        }
    }
}

/// A collection being read: its anchor id (0: none), start offset and what
/// has been read of it.
struct Open {
    anchor: usize,
    start: usize,
    inside: Inside,
}

enum Inside {
    Seq(Vec<Place>),
    /// The entries, and a key read whose value has not come yet.
    Map(
        Vec<(String, (usize, usize), Place)>,
        Option<(String, (usize, usize))>,
    ),
}

impl Open {
    /// The pending key slot when this is a mapping waiting for a key.
    fn wants_key(&mut self) -> Option<&mut Option<(String, (usize, usize))>> {
        match &mut self.inside {
            Inside::Map(_, pending @ None) => Some(pending),
            _ => None,
        }
    }
}

/// The places of the first document of `text`; `None` when the text has no
/// document or does not read as YAML (the caller has already reported that).
pub fn locate(text: &str) -> Option<Place> {
    let lines = LineStarts::new(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: Vec<(usize, Place)> = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.ok()?;
        let at = lines.bytes(text, &span);
        let (place, anchor) = match event {
            Event::Scalar(value, _, anchor, _) => {
                let place = Place {
                    span: at,
                    children: Children::None,
                };
                // A scalar where a key is due is that key.
                if let Some(pending) = stack.last_mut().and_then(Open::wants_key) {
                    *pending = Some((value.into_owned(), at));
                    continue;
                }
                (place, anchor)
            }
            Event::Alias(id) => {
                let place = anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, p)| p.clone())
                    .unwrap_or(Place {
                        span: at,
                        children: Children::None,
                    });
                if let Some(pending) = stack.last_mut().and_then(Open::wants_key) {
                    *pending = Some((String::new(), at));
                    continue;
                }
                (place, 0)
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let inside = if matches!(event, Event::SequenceStart(..)) {
                    Inside::Seq(Vec::new())
                } else {
                    Inside::Map(Vec::new(), None)
                };
                stack.push(Open {
                    anchor,
                    start: at.0,
                    inside,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let open = stack.pop()?;
                let children = match open.inside {
                    Inside::Seq(items) => Children::Seq(items),
                    Inside::Map(entries, _) => Children::Map(entries),
                };
                let end = (open.start + 1).min(text.len()).max(open.start);
                let place = Place {
                    span: (open.start, end),
                    children,
                };
                (place, open.anchor)
            }
            Event::DocumentEnd | Event::StreamEnd => return None,
            Event::Nothing | Event::StreamStart | Event::DocumentStart(_) => continue,
        };
        if anchor != 0 {
            anchors.push((anchor, place.clone()));
        }
        match stack.last_mut().map(|o| &mut o.inside) {
            None => return Some(place),
            Some(Inside::Seq(items)) => items.push(place),
            Some(Inside::Map(entries, pending)) => match pending.take() {
                Some((key, key_at)) => entries.push((key, key_at, place)),
                // A collection as a key: kept as an unnamed key, its value next.
                None => *pending = Some((String::new(), place.span)),
            },
        }
    }
    None
}

/// Byte offsets of line starts, to turn saphyr's (line, character column)
/// markers into byte offsets.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(text: &str) -> LineStarts {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineStarts(starts)
    }

    /// The byte range of an event's span.
    fn bytes(&self, text: &str, span: &EventSpan) -> (usize, usize) {
        let start = self.byte(text, span.start.line(), span.start.col());
        let end = self.byte(text, span.end.line(), span.end.col()).max(start);
        (start, end)
    }

    /// The byte offset of 1-based `line`, 0-based character `col`.
    fn byte(&self, text: &str, line: usize, col: usize) -> usize {
        let start = self
            .0
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(text.len());
        let rest = text.get(start..).unwrap_or("");
        start + rest.char_indices().nth(col).map_or(rest.len(), |(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at<'t>(text: &'t str, p: &Place) -> &'t str {
        &text[p.span.0..p.span.1]
    }

    #[test]
    fn block_mappings_and_sequences_point_at_their_values() {
        let text = "#cloud-config\nruncmd: 5\nusers:\n  - name: bob\n    groups: [a, 7]\n";
        let root = locate(text).unwrap();
        let (key, runcmd) = root.entry("runcmd").unwrap();
        assert_eq!(&text[key.0..key.1], "runcmd");
        assert_eq!(at(text, runcmd), "5");
        let user = root.entry("users").unwrap().1.item(0).unwrap();
        assert_eq!(at(text, user.entry("name").unwrap().1), "bob");
        let groups = user.entry("groups").unwrap().1;
        assert_eq!(at(text, groups.item(1).unwrap()), "7");
    }

    #[test]
    fn offsets_are_bytes_after_multibyte_characters() {
        let text = "é: ü\nk: [\"ä\", 5]\n";
        let root = locate(text).unwrap();
        assert_eq!(at(text, root.entry("k").unwrap().1.item(1).unwrap()), "5");
    }

    #[test]
    fn a_repeated_key_is_found_at_its_last_value_and_aliases_at_their_anchor() {
        let text = "a: 1\nb: &x [1, 2]\na: 3\nc: *x\n";
        let root = locate(text).unwrap();
        assert_eq!(at(text, root.entry("a").unwrap().1), "3");
        let c = root.entry("c").unwrap().1;
        assert_eq!(at(text, c.item(1).unwrap()), "2");
    }

    #[test]
    fn text_that_is_not_yaml_has_no_places() {
        assert_eq!(locate("a: [1"), None);
        assert_eq!(locate(""), None);
    }
}
