//! The YAML reader: serde_norway's events built into [`Value`]s with the
//! original's rules (see [`super`]).

use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde_norway::value::{Tag, TaggedValue};
use serde_norway::Mapping;
use std::fmt;

use super::Value;

/// How deeply serde_norway lets sequences and mappings nest; deeper input
/// fails with its "recursion limit exceeded", which [`YamlError`] rewords.
pub(super) const MAX_DEPTH: usize = 128;

/// A YAML syntax error: message and 1-based line/column in the parsed text (when known).
#[derive(Clone, Debug, PartialEq)]
pub struct YamlError {
    /// What went wrong, without the position.
    pub message: String,
    /// 1-based line of the error, when known.
    pub line: Option<usize>,
    /// 1-based column of the error, when known.
    pub column: Option<usize>,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{line}:{column}: {}", self.message),
            (Some(line), None) => write!(f, "{line}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for YamlError {}

impl YamlError {
    fn from_serde(err: &serde_norway::Error) -> Self {
        let mut message = err.to_string();
        let (line, column) = match err.location() {
            Some(loc) => {
                let at = format!(" at line {} column {}", loc.line(), loc.column());
                if let Some(i) = message.find(&at) {
                    message.replace_range(i..i + at.len(), "");
                }
                (Some(loc.line()), Some(loc.column()))
            }
            None => (None, None),
        };
        if message == "recursion limit exceeded" {
            message = format!("nested too deeply (more than {MAX_DEPTH} levels)");
        }
        YamlError {
            message,
            line,
            column,
        }
    }
}

/// Parses one YAML document. Empty text (or only comments) gives `Null`.
///
/// Duplicate keys: the last value wins, at the first key's position. See the
/// module documentation for how plain scalars resolve.
pub fn parse(text: &str) -> Result<Value, YamlError> {
    // serde_norway is not expected to panic on any input; this is a safety net
    // so that a bug there cannot take the whole build down.
    let result = std::panic::catch_unwind(|| {
        let de = serde_norway::Deserializer::from_str(text);
        Loader {
            input: text,
            key: false,
        }
        .deserialize(de)
    });
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(YamlError::from_serde(&e)),
        Err(_) => Err(YamlError {
            message: "internal error in the YAML reader".to_string(),
            line: None,
            column: None,
        }),
    }
}

/// Parses a cloud-config document: a leading `#cloud-config\n` (exactly those
/// 14 characters) is stripped first (docs/COMPATIBILITY.md#cloud-config).
///
/// Since that line is a YAML comment, the text is parsed whole, which gives the
/// same value and keeps error positions relative to `text` as given.
pub fn parse_cloud_config(text: &str) -> Result<Value, YamlError> {
    parse(text)
}

/// Builds a [`Value`] from serde_norway's event deserializer (see the module
/// documentation for how it differs from `Value`'s own `Deserialize`).
#[derive(Clone, Copy)]
struct Loader<'de> {
    /// The whole input, to tell plain scalars from quoted ones.
    input: &'de str,
    /// Whether the node being read is a mapping key.
    key: bool,
}

impl<'de> Loader<'de> {
    fn value(self) -> Self {
        Loader { key: false, ..self }
    }

    /// Whether `s`, a slice borrowed from the input, was written as a plain
    /// scalar without a tag (not quoted, no `!tag` before it).
    fn is_plain_untagged(self, s: &str) -> bool {
        let base = self.input.as_ptr() as usize;
        let start = (s.as_ptr() as usize).wrapping_sub(base);
        let end = start.wrapping_add(s.len());
        if start > self.input.len() || end > self.input.len() {
            return false;
        }
        let (Some(before), Some(after)) = (self.input.get(..start), self.input.get(end..)) else {
            return false;
        };
        let prev = before.chars().next_back();
        if matches!(prev, Some('\'' | '"')) && after.starts_with(prev.unwrap_or(' ')) {
            return false;
        }
        // Look back over anchors for a tag (`!!str yes`, `!t &a yes`).
        let mut rest = before;
        loop {
            rest = rest.trim_end_matches([' ', '\t', '\r', '\n']);
            let tok_start = rest
                .rfind(|c: char| c.is_whitespace() || "[]{},".contains(c))
                .map_or(0, |i| i + 1);
            let tok = rest.get(tok_start..).unwrap_or("");
            if tok.starts_with('!') {
                return false;
            }
            if tok.starts_with('&') && tok.len() > 1 {
                rest = rest.get(..tok_start).unwrap_or("");
                continue;
            }
            return true;
        }
    }
}

/// The `Data.Yaml` boolean words other than `true`/`false` (which serde_norway
/// resolves itself), in the casings it accepts.
fn yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

impl<'de> DeserializeSeed<'de> for Loader<'de> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Loader<'de> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Number(u.into()))
    }

    fn visit_i128<E: de::Error>(self, i: i128) -> Result<Value, E> {
        Ok(match i64::try_from(i) {
            Ok(i) => Value::Number(i.into()),
            Err(_) => Value::Number((i as f64).into()),
        })
    }

    fn visit_u128<E: de::Error>(self, u: u128) -> Result<Value, E> {
        Ok(match u64::try_from(u) {
            Ok(u) => Value::Number(u.into()),
            Err(_) => Value::Number((u as f64).into()),
        })
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Number(f.into()))
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Value, E> {
        if !self.key {
            if let Some(b) = yaml11_bool(s) {
                if self.is_plain_untagged(s) {
                    return Ok(Value::Bool(b));
                }
            }
        }
        Ok(Value::String(s.to_owned()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.value())? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Mapping::new();
        let key_loader = Loader { key: true, ..self };
        while let Some(k) = map.next_key_seed(key_loader)? {
            let v = map.next_value_seed(self.value())?;
            // An existing key keeps its position and takes the new value.
            m.insert(k, v);
        }
        Ok(Value::Mapping(m))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, contents): (String, _) = data.variant()?;
        let value = contents.newtype_variant_seed(self)?;
        let tag = if tag.is_empty() { "!".to_string() } else { tag };
        Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}
