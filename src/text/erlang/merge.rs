//! The structural order of Erlang terms and the `ErlangPropList` merge.

use std::cmp::Ordering;

use super::ErlTerm;

impl ErlTerm {
    fn rank(&self) -> u8 {
        match self {
            ErlTerm::String(_) => 0,
            ErlTerm::Float(_) => 1,
            ErlTerm::Integer(_) => 2,
            ErlTerm::Atom(_) => 3,
            ErlTerm::Char(_) => 4,
            ErlTerm::Binary(_) => 5,
            ErlTerm::List(_) => 6,
            ErlTerm::Tuple(_) => 7,
        }
    }

    /// The structural order of docs/COMPATIBILITY.md#erlang-merge (the original's derived `Ord`):
    /// String < Float < Integer < Atom < Char < Binary < List < Tuple, then
    /// the contents (strings by code point, lists and tuples
    /// lexicographically). It is a total order: `-0.0` equals `0.0`, and NaN
    /// (which [`parse`] never produces) equals itself and sorts after every
    /// other float.
    pub fn structural_cmp(&self, other: &ErlTerm) -> Ordering {
        match (self, other) {
            (ErlTerm::String(a), ErlTerm::String(b))
            | (ErlTerm::Atom(a), ErlTerm::Atom(b))
            | (ErlTerm::Binary(a), ErlTerm::Binary(b)) => a.cmp(b),
            (ErlTerm::Float(a), ErlTerm::Float(b)) => match (a.is_nan(), b.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
            },
            (ErlTerm::Integer(a), ErlTerm::Integer(b)) => a.cmp(b),
            (ErlTerm::Char(a), ErlTerm::Char(b)) => a.cmp(b),
            (ErlTerm::List(a), ErlTerm::List(b)) | (ErlTerm::Tuple(a), ErlTerm::Tuple(b)) => {
                for (x, y) in a.iter().zip(b) {
                    let o = x.structural_cmp(y);
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.len().cmp(&b.len())
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// Merges two terms like the original's `ErlangPropList` semigroup
/// (docs/COMPATIBILITY.md#erlang-merge), used by `ASTMerge`:
///
/// * list + list: both are split into pairs (2-tuples) and non-pairs; the
///   pairs are sorted by key ([`ErlTerm::structural_cmp`], stable) and
///   merge-joined, pairs with equal keys becoming `{key, merge(v1, v2)}`
///   (duplicate keys within one side are matched one-to-one in sorted
///   order). The result is a's non-pairs, a-only pairs, merged pairs, b's
///   non-pairs, b-only pairs.
/// * list + other appends, other + list prepends, otherwise `[a, b]`.
pub fn merge(a: ErlTerm, b: ErlTerm) -> ErlTerm {
    match (a, b) {
        (ErlTerm::List(l1), ErlTerm::List(l2)) => ErlTerm::List(merge_lists(l1, l2)),
        (ErlTerm::List(mut l1), t2) => {
            l1.push(t2);
            ErlTerm::List(l1)
        }
        (t1, ErlTerm::List(l2)) => {
            let mut items = Vec::with_capacity(l2.len() + 1);
            items.push(t1);
            items.extend(l2);
            ErlTerm::List(items)
        }
        (t1, t2) => ErlTerm::List(vec![t1, t2]),
    }
}

/// Splits a list into its `{key, value}` pairs and the other elements.
fn split_pairs(items: Vec<ErlTerm>) -> (Vec<(ErlTerm, ErlTerm)>, Vec<ErlTerm>) {
    let mut pairs = Vec::new();
    let mut others = Vec::new();
    for item in items {
        match item {
            ErlTerm::Tuple(t) if t.len() == 2 => {
                let mut it = t.into_iter();
                if let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
            }
            other => others.push(other),
        }
    }
    pairs.sort_by(|x, y| x.0.structural_cmp(&y.0));
    (pairs, others)
}

fn merge_lists(l1: Vec<ErlTerm>, l2: Vec<ErlTerm>) -> Vec<ErlTerm> {
    let (p1, n1) = split_pairs(l1);
    let (p2, n2) = split_pairs(l2);
    let pair = |k, v| ErlTerm::Tuple(vec![k, v]);
    let mut only1 = Vec::new();
    let mut merged = Vec::new();
    let mut only2 = Vec::new();
    let mut it1 = p1.into_iter().peekable();
    let mut it2 = p2.into_iter().peekable();
    while let (Some(x), Some(y)) = (it1.peek(), it2.peek()) {
        match x.0.structural_cmp(&y.0) {
            Ordering::Less => only1.extend(it1.next().map(|(k, v)| pair(k, v))),
            Ordering::Greater => only2.extend(it2.next().map(|(k, v)| pair(k, v))),
            Ordering::Equal => {
                if let (Some((_, v1)), Some((k, v2))) = (it1.next(), it2.next()) {
                    merged.push(pair(k, merge(v1, v2)));
                }
            }
        }
    }
    only1.extend(it1.map(|(k, v)| pair(k, v)));
    only2.extend(it2.map(|(k, v)| pair(k, v)));
    let mut out = n1;
    out.extend(only1);
    out.extend(merged);
    out.extend(n2);
    out.extend(only2);
    out
}
