//! The merge of two YAML values (what `ASTMerge` does).

use super::Value;

/// Merges two YAML values (docs/COMPATIBILITY.md#yaml-merge), rules checked in this order:
///
/// 1. mapping + mapping: union of keys; keys in both are merged recursively;
///    `a`'s keys in `a`'s order, then `b`-only keys in `b`'s order;
/// 2. sequence + sequence: concatenation;
/// 3. sequence + other: `b` appended;
/// 4. other + sequence: `a` prepended;
/// 5. string + string: string concatenation;
/// 6. anything else (also tagged values): the two-element sequence `[a, b]`.
pub fn merge(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Mapping(mut ma), Value::Mapping(mb)) => {
            for (k, vb) in mb {
                match ma.get_mut(&k) {
                    Some(va) => {
                        let old = std::mem::take(va);
                        *va = merge(old, vb);
                    }
                    None => {
                        ma.insert(k, vb);
                    }
                }
            }
            Value::Mapping(ma)
        }
        (Value::Sequence(mut sa), Value::Sequence(sb)) => {
            sa.extend(sb);
            Value::Sequence(sa)
        }
        (Value::Sequence(mut sa), b) => {
            sa.push(b);
            Value::Sequence(sa)
        }
        (a, Value::Sequence(sb)) => {
            let mut s = Vec::with_capacity(sb.len() + 1);
            s.push(a);
            s.extend(sb);
            Value::Sequence(s)
        }
        (Value::String(mut sa), Value::String(sb)) => {
            sa.push_str(&sb);
            Value::String(sa)
        }
        (a, b) => Value::Sequence(vec![a, b]),
    }
}
