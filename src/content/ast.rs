//! The literal types of `AST` trees (YAML values, Erlang terms) and their
//! operations; [`crate::content::render`] evaluates a tree with them.

use crate::content::error::ContentError;
use crate::lang::syntax::{CloudConfigYaml, ErlangPropList, SimpleErlangTerm, YamlObject};
use crate::text::erlang::{self, ErlTerm};
use crate::text::yaml::{self, Value};

/// A literal type of `AST`, with the value type it evaluates to and that
/// type's operations.
pub trait AstTarget {
    /// The evaluated value.
    type Value;
    /// `ASTObj`: a mapping / proplist.
    fn object(entries: Vec<(String, Self::Value)>) -> Self::Value;
    /// `ASTArr`: a sequence / list.
    fn array(items: Vec<Self::Value>) -> Self::Value;
    /// One step of `ASTMerge`.
    fn merge(a: Self::Value, b: Self::Value) -> Self::Value;
    /// `ASTString`, and the text of `ASTEmbed`.
    fn string(s: String) -> Self::Value;
    /// `ASTInt`.
    fn int(n: i64) -> Self::Value;
    /// `ASTParse`: a file's text; `origin` names it in errors.
    fn parse(text: &str, origin: &str) -> Result<Self::Value, ContentError>;
    /// `AST literal`.
    fn literal(&self) -> Result<Self::Value, ContentError>;
}

fn yaml_error(origin: &str, e: yaml::YamlError) -> ContentError {
    ContentError::Yaml {
        origin: origin.to_string(),
        line: e.line,
        column: e.column,
        message: e.message,
    }
}

/// A YAML literal type: how its text is read.
pub trait YamlLiteral {
    /// Parses the literal's text.
    fn read(&self) -> Result<Value, yaml::YamlError>;
}

impl YamlLiteral for YamlObject {
    fn read(&self) -> Result<Value, yaml::YamlError> {
        let YamlObject::YamlObject(text) = self;
        yaml::parse(text)
    }
}

impl YamlLiteral for CloudConfigYaml {
    fn read(&self) -> Result<Value, yaml::YamlError> {
        let YamlObject::YamlObject(text) = &self.yaml.value;
        yaml::parse_cloud_config(text)
    }
}

impl<T: YamlLiteral> AstTarget for T {
    type Value = Value;
    fn object(entries: Vec<(String, Value)>) -> Value {
        let mut map = serde_norway::Mapping::new();
        for (k, v) in entries {
            // Duplicate keys: the last value wins, at the first key's place.
            map.insert(Value::String(k), v);
        }
        Value::Mapping(map)
    }
    fn array(items: Vec<Value>) -> Value {
        Value::Sequence(items)
    }
    fn merge(a: Value, b: Value) -> Value {
        yaml::merge(a, b)
    }
    fn string(s: String) -> Value {
        Value::String(s)
    }
    fn int(n: i64) -> Value {
        Value::Number(n.into())
    }
    fn parse(text: &str, origin: &str) -> Result<Value, ContentError> {
        yaml::parse(text).map_err(|e| yaml_error(origin, e))
    }
    fn literal(&self) -> Result<Value, ContentError> {
        self.read()
            .map_err(|e| yaml_error("a YamlObject literal", e))
    }
}

impl AstTarget for ErlangPropList {
    type Value = ErlTerm;
    fn object(entries: Vec<(String, ErlTerm)>) -> ErlTerm {
        ErlTerm::List(
            entries
                .into_iter()
                .map(|(k, v)| ErlTerm::Tuple(vec![ErlTerm::Atom(k), v]))
                .collect(),
        )
    }
    fn array(items: Vec<ErlTerm>) -> ErlTerm {
        ErlTerm::List(items)
    }
    fn merge(a: ErlTerm, b: ErlTerm) -> ErlTerm {
        erlang::merge(a, b)
    }
    fn string(s: String) -> ErlTerm {
        ErlTerm::String(s)
    }
    fn int(n: i64) -> ErlTerm {
        ErlTerm::Integer(i128::from(n))
    }
    fn parse(text: &str, origin: &str) -> Result<ErlTerm, ContentError> {
        erlang::parse(text).map_err(|e| ContentError::Erlang {
            origin: origin.to_string(),
            line: e.line,
            column: e.column,
            message: e.message,
        })
    }
    fn literal(&self) -> Result<ErlTerm, ContentError> {
        let ErlangPropList::ErlangPropList(term) = self;
        Ok(erl_term(&term.value))
    }
}

/// A build-file Erlang literal as a term.
pub fn erl_term(t: &SimpleErlangTerm) -> ErlTerm {
    use SimpleErlangTerm::*;
    match t {
        ErlString(s) => ErlTerm::String(s.value.clone()),
        ErlFloat(x) => ErlTerm::Float(x.value),
        ErlNatural(n) => ErlTerm::Integer(n.value),
        ErlAtom(a) => ErlTerm::Atom(a.value.clone()),
        ErlChar(c) => ErlTerm::Char(c.value),
        ErlBinary(b) => ErlTerm::Binary(b.value.clone()),
        ErlList(items) => ErlTerm::List(items.iter().map(|i| erl_term(i)).collect()),
        ErlTuple(items) => ErlTerm::Tuple(items.iter().map(|i| erl_term(i)).collect()),
    }
}
