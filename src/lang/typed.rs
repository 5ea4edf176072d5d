//! From untyped terms to typed values and back.
//!
//! [`Syntax`] is implemented for every type a build file can hold: primitives,
//! lists, pairs, and (through [`syntax_enum!`]) each EDSL type. Conversion
//! reports every problem it finds (unknown constructor with a did-you-mean,
//! wrong number of arguments, wrong kind of value) as a diagnostic and goes on
//! with the siblings, so one run shows all independent errors.

use std::fmt;
use std::ops::Deref;

use crate::diag::source::{SourceRef, Span};
use crate::diag::{did_you_mean, Diagnostic};
use crate::lang::term::{Term, TermKind};

/// A value with the span of the term it was read from.
///
/// Equality compares values only, so two parses of differently laid-out text
/// are equal when they mean the same.
#[derive(Clone, Debug)]
pub struct Node<T> {
    /// The value.
    pub value: T,
    /// Where it was written (empty for generated values).
    pub span: Span,
}

impl<T> Node<T> {
    /// A value without a place in a source.
    #[cfg(test)]
    pub fn new(value: T) -> Node<T> {
        Node {
            value,
            span: Span::default(),
        }
    }

    /// The same place with another value.
    pub fn with<U>(&self, value: U) -> Node<U> {
        Node {
            value,
            span: self.span,
        }
    }
}

impl<T> Deref for Node<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Node<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: fmt::Display> fmt::Display for Node<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

/// The conversion context: where diagnostics go.
pub struct Cx<'a> {
    /// The text being converted.
    pub source: &'a SourceRef,
    /// Problems found so far.
    pub diagnostics: &'a mut Vec<Diagnostic>,
    /// Which type a constructor name belongs to, if any (for "found `X`,
    /// which is a `T`" messages); the syntax that defines the types supplies it.
    pub owner_of: fn(&str) -> Option<&'static str>,
}

impl Cx<'_> {
    /// Records an error at `span`.
    pub fn error(&mut self, span: Span, diagnostic: Diagnostic) {
        let d = diagnostic.at(self.source, span);
        self.diagnostics.push(d);
    }

    /// Records "expected `ty`, found ..." for `term`.
    pub fn mismatch(&mut self, term: &Term, ty: &str) {
        let d = Diagnostic::error(format!("expected `{ty}`, found {}", term.describe()))
            .with_label(format!("expected `{ty}` here"));
        self.error(term.span, d);
    }
}

/// A type that can be read from and written as a term.
pub trait Syntax: Sized {
    /// The type's name as the original b9 spells it (`ArtifactGenerator`, `[String]`).
    fn type_name() -> String;
    /// Reads a value; on failure records diagnostics and returns `None`.
    fn from_term(term: &Term, cx: &mut Cx<'_>) -> Option<Self>;
    /// Writes the value as a term (without places or comments).
    fn to_term(&self) -> Term;
    /// A random value, for round-trip property tests.
    #[cfg(test)]
    fn sample(g: &mut crate::lang::typed::testgen::Gen, depth: u32) -> Self;
}

impl<T: Syntax> Syntax for Node<T> {
    fn type_name() -> String {
        T::type_name()
    }
    fn from_term(term: &Term, cx: &mut Cx<'_>) -> Option<Self> {
        T::from_term(term, cx).map(|value| Node {
            value,
            span: term.span,
        })
    }
    fn to_term(&self) -> Term {
        self.value.to_term()
    }
    #[cfg(test)]
    fn sample(g: &mut testgen::Gen, depth: u32) -> Self {
        Node::new(T::sample(g, depth))
    }
}

impl<T: Syntax> Syntax for Box<T> {
    fn type_name() -> String {
        T::type_name()
    }
    fn from_term(term: &Term, cx: &mut Cx<'_>) -> Option<Self> {
        T::from_term(term, cx).map(Box::new)
    }
    fn to_term(&self) -> Term {
        (**self).to_term()
    }
    #[cfg(test)]
    fn sample(g: &mut testgen::Gen, depth: u32) -> Self {
        Box::new(T::sample(g, depth))
    }
}

impl Syntax for String {
    fn type_name() -> String {
        "String".into()
    }
    fn from_term(term: &Term, cx: &mut Cx<'_>) -> Option<Self> {
        match &term.kind {
            TermKind::Str(s) => Some(s.clone()),
            // A Haskell String is a list of characters.
            TermKind::List { items, .. }
                if items.iter().all(|i| matches!(i.kind, TermKind::Char(_))) =>
            {
                Some(
                    items
                        .iter()
                        .filter_map(|i| match i.kind {
                            TermKind::Char(c) => Some(c),
                            _ => None,
                        })
                        .collect(),
                )
            }
            _ => {
                cx.mismatch(term, "String");
                None
            }
        }
    }
    fn to_term(&self) -> Term {
        Term::bare(TermKind::Str(self.clone()))
    }
    #[cfg(test)]
    fn sample(g: &mut testgen::Gen, _depth: u32) -> Self {
        g.string()
    }
}

impl Syntax for char {
    fn type_name() -> String {
        "Char".into()
    }
    fn from_term(term: &Term, cx: &mut Cx<'_>) -> Option<Self> {
        match &term.kind {
            TermKind::Char(c) => Some(*c),
            _ => {
                cx.mismatch(term, "Char");
                None
            }
        }
    }
    fn to_term(&self) -> Term {
        Term::bare(TermKind::Char(*self))
    }
    #[cfg(test)]
    fn sample(g: &mut testgen::Gen, _depth: u32) -> Self {
        g.string().chars().next().unwrap_or('\'')
    }
}

impl Syntax for i64 {
    fn type_name() -> String {
        "Int".into()
    }
    fn from_term(term: &Term, cx: &mut Cx<'_>) -> Option<Self> {
        match &term.kind {
            TermKind::Int(n) => {
                match i64::try_from(*n) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        let d = Diagnostic::error(format!("the number {n} does not fit in an `Int`"))
                        .with_note("an `Int` holds values from -9223372036854775808 to 9223372036854775807");
                        cx.error(term.span, d);
                        None
                    }
                }
            }
            _ => {
                cx.mismatch(term, "Int");
                None
            }
        }
    }
    fn to_term(&self) -> Term {
        Term::bare(TermKind::Int(i128::from(*self)))
    }
    #[cfg(test)]
    fn sample(g: &mut testgen::Gen, _depth: u32) -> Self {
        g.int()
    }
}

impl Syntax for i128 {
    fn type_name() -> String {
        "Integer".into()
    }
    fn from_term(term: &Term, cx: &mut Cx<'_>) -> Option<Self> {
        match &term.kind {
            TermKind::Int(n) => Some(*n),
            _ => {
                cx.mismatch(term, "Integer");
                None
            }
        }
    }
    fn to_term(&self) -> Term {
        Term::bare(TermKind::Int(*self))
    }
    #[cfg(test)]
    fn sample(g: &mut testgen::Gen, _depth: u32) -> Self {
        i128::from(g.int()) * 1_000_003
    }
}

impl Syntax for f64 {
    fn type_name() -> String {
        "Double".into()
    }
    fn from_term(term: &Term, cx: &mut Cx<'_>) -> Option<Self> {
        match &term.kind {
            TermKind::Float(x) => Some(*x),
            // Haskell's `read` accepts an integer literal as a Double.
            TermKind::Int(n) => Some(*n as f64),
            _ => {
                cx.mismatch(term, "Double");
                None
            }
        }
    }
    fn to_term(&self) -> Term {
        Term::bare(TermKind::Float(*self))
    }
    #[cfg(test)]
    fn sample(g: &mut testgen::Gen, _depth: u32) -> Self {
        g.int() as f64 / 64.0
    }
}

impl Syntax for bool {
    fn type_name() -> String {
        "Bool".into()
    }
    fn from_term(term: &Term, cx: &mut Cx<'_>) -> Option<Self> {
        match term.as_nullary() {
            Some("True") => Some(true),
            Some("False") => Some(false),
            _ => {
                cx.mismatch(term, "Bool");
                None
            }
        }
    }
    fn to_term(&self) -> Term {
        con(if *self { "True" } else { "False" }, Vec::new())
    }
    #[cfg(test)]
    fn sample(g: &mut testgen::Gen, _depth: u32) -> Self {
        g.below(2) == 0
    }
}

impl<T: Syntax> Syntax for Vec<T> {
    fn type_name() -> String {
        format!("[{}]", T::type_name())
    }
    fn from_term(term: &Term, cx: &mut Cx<'_>) -> Option<Self> {
        match term.as_list() {
            Some(items) => {
                let converted: Vec<Option<T>> = items.iter().map(|t| T::from_term(t, cx)).collect();
                converted.into_iter().collect()
            }
            _ => {
                cx.mismatch(term, &Self::type_name());
                None
            }
        }
    }
    fn to_term(&self) -> Term {
        Term::bare(TermKind::List {
            items: self.iter().map(Syntax::to_term).collect(),
            closing: Vec::new(),
        })
    }
    #[cfg(test)]
    fn sample(g: &mut testgen::Gen, depth: u32) -> Self {
        let n = if depth > 6 { 0 } else { g.below(4) };
        (0..n).map(|_| T::sample(g, depth + 1)).collect()
    }
}

impl<A: Syntax, B: Syntax> Syntax for (A, B) {
    fn type_name() -> String {
        format!("({}, {})", A::type_name(), B::type_name())
    }
    fn from_term(term: &Term, cx: &mut Cx<'_>) -> Option<Self> {
        match &term.kind {
            TermKind::Tuple { items, .. } if items.len() == 2 => {
                let a = A::from_term(&items[0], cx);
                let b = B::from_term(&items[1], cx);
                Some((a?, b?))
            }
            _ => {
                cx.mismatch(term, &Self::type_name());
                None
            }
        }
    }
    fn to_term(&self) -> Term {
        Term::bare(TermKind::Tuple {
            items: vec![self.0.to_term(), self.1.to_term()],
            closing: Vec::new(),
        })
    }
    #[cfg(test)]
    fn sample(g: &mut testgen::Gen, depth: u32) -> Self {
        (A::sample(g, depth + 1), B::sample(g, depth + 1))
    }
}

/// A constructor application term without place or comments.
pub fn con(name: &str, args: Vec<Term>) -> Term {
    Term::bare(TermKind::Con {
        name: name.to_string(),
        name_span: Span::default(),
        args,
    })
}

/// Gives the name of a field's type.
pub type TypeNameFn = fn() -> String;

/// One constructor of an EDSL type: its name and the names and types of its fields.
#[derive(Clone, Copy, Debug)]
pub struct ConstructorSpec {
    /// The constructor name.
    pub name: &'static str,
    /// `(field name, type name)` pairs in order.
    pub fields: &'static [(&'static str, TypeNameFn)],
}

impl ConstructorSpec {
    /// `Artifact InstanceId ArtifactAssembly`: the constructor with its field types.
    pub fn signature(&self) -> String {
        let mut s = self.name.to_string();
        for (_, ty) in self.fields {
            let ty = ty();
            if ty.contains(' ') && !ty.starts_with('[') && !ty.starts_with('(') {
                s.push_str(&format!(" ({ty})"));
            } else {
                s.push(' ');
                s.push_str(&ty);
            }
        }
        s
    }
}

/// Finds the constructor `term` names among `specs`, checks its arity, and
/// returns it with its arguments; records a diagnostic otherwise.
pub fn match_constructor<'t>(
    term: &'t Term,
    type_name: &str,
    specs: &'static [ConstructorSpec],
    cx: &mut Cx<'_>,
) -> Option<(&'static ConstructorSpec, &'t [Term])> {
    let one_of = || {
        let names: Vec<_> = specs.iter().map(|s| format!("`{}`", s.name)).collect();
        format!("`{type_name}` is one of: {}", names.join(", "))
    };
    let (name, name_span, args) = match &term.kind {
        TermKind::Con {
            name,
            name_span,
            args,
        } => (name, *name_span, args.as_slice()),
        TermKind::Record {
            name, name_span, ..
        } => (name, *name_span, &[][..]),
        _ => {
            let d = Diagnostic::error(format!("expected `{type_name}`, found {}", term.describe()))
                .with_label(format!("expected `{type_name}` here"))
                .with_note(one_of());
            cx.error(term.span, d);
            return None;
        }
    };
    let Some(spec) = specs.iter().find(|s| s.name == name.as_str()) else {
        let owner = (cx.owner_of)(name);
        let message = match owner {
            Some(owner) => format!("expected `{type_name}`, found `{name}`, which is a `{owner}`"),
            None => format!("unknown constructor `{name}`"),
        };
        let mut d = Diagnostic::error(message)
            .with_label(format!("expected `{type_name}` here"))
            .with_note(one_of());
        if let Some(best) = did_you_mean(name, specs.iter().map(|s| s.name)) {
            d = d.with_hint(format!("did you mean `{best}`?"));
        }
        cx.error(name_span, d);
        return None;
    };
    if let TermKind::Record { .. } = term.kind {
        let d = Diagnostic::error(format!(
            "`{name}` is not a record; write it as `{}`",
            spec.signature()
        ));
        cx.error(term.span, d);
        return None;
    }
    let arity = spec.fields.len();
    if args.len() != arity {
        let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
        let mut d = Diagnostic::error(format!(
            "`{name}` takes {arity} {}, but {} {} given",
            plural(arity),
            args.len(),
            if args.len() == 1 { "was" } else { "were" }
        ))
        .with_label(format!("this `{name}`"))
        .with_note(format!("expected: {}", spec.signature()));
        if args.len() > arity {
            let sibling = args[arity..].iter().find_map(|a| match &a.kind {
                TermKind::Con { name: n, .. } if (cx.owner_of)(n) == (cx.owner_of)(name) => {
                    Some(n.clone())
                }
                _ => None,
            });
            d = match sibling {
                Some(n) => d.with_hint(format!("is `{n}` a separate element? a `,` may be missing before it")),
                None => d.with_hint(
                    "an argument that is itself a constructor with arguments must be in parentheses, e.g. `(ImageSize 4 GB)`",
                ),
            };
        }
        cx.error(term.span, d);
        return None;
    }
    Some((spec, args))
}

/// Declares an EDSL type: a Rust enum whose variants are the original's
/// constructors (same names), with [`Syntax`] implemented from the same list.
macro_rules! syntax_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident $(<$g:ident>)? = $tyname:expr;
        {
            $(
                $(#[$vmeta:meta])*
                $var:ident $( ( $( $field:ident : $fty:ty ),* ) )?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        // The variants are the original language's constructor names.
        #[allow(
            non_camel_case_types,
            clippy::upper_case_acronyms,
            clippy::large_enum_variant,
            clippy::enum_variant_names
        )]
        pub enum $name $(<$g>)? {
            $(
                $(#[$vmeta])*
                $var $( ( $( $fty ),* ) )?
            ),*
        }

        impl $(<$g: $crate::lang::typed::Syntax>)? $name $(<$g>)? {
            /// The constructors of this type, as in the original b9.
            pub fn constructors() -> &'static [$crate::lang::typed::ConstructorSpec] {
                &[
                    $(
                        $crate::lang::typed::ConstructorSpec {
                            name: stringify!($var),
                            fields: &[ $( $( (stringify!($field), <$fty as $crate::lang::typed::Syntax>::type_name) ),* )? ],
                        }
                    ),*
                ]
            }
        }

        impl $(<$g: $crate::lang::typed::Syntax>)? $crate::lang::typed::Syntax for $name $(<$g>)? {
            fn type_name() -> String {
                $tyname
            }

            #[allow(unused_variables, unused_mut)]
            fn from_term(
                term: &$crate::lang::term::Term,
                cx: &mut $crate::lang::typed::Cx<'_>,
            ) -> Option<Self> {
                let ty = Self::type_name();
                let (spec, args) =
                    $crate::lang::typed::match_constructor(term, &ty, Self::constructors(), cx)?;
                let mut args = args.iter();
                match spec.name {
                    $(
                        stringify!($var) => {
                            $( $(
                                let $field = args
                                    .next()
                                    .and_then(|t| <$fty as $crate::lang::typed::Syntax>::from_term(t, cx));
                            )* )?
                            Some($name::$var $( ( $( $field? ),* ) )?)
                        }
                    )*
                    _ => None,
                }
            }

            fn to_term(&self) -> $crate::lang::term::Term {
                match self {
                    $(
                        $name::$var $( ( $( $field ),* ) )? => $crate::lang::typed::con(
                            stringify!($var),
                            vec![ $( $( $crate::lang::typed::Syntax::to_term($field) ),* )? ],
                        ),
                    )*
                }
            }

            #[cfg(test)]
            #[allow(unused_variables, unused_assignments, unused_mut)]
            fn sample(g: &mut $crate::lang::typed::testgen::Gen, depth: u32) -> Self {
                let count = Self::constructors().len();
                let mut pick = g.below(count);
                $(
                    if pick == 0 {
                        return $name::$var $( ( $(
                            <$fty as $crate::lang::typed::Syntax>::sample(g, depth + 1)
                        ),* ) )?;
                    }
                    pick -= 1;
                )*
                unreachable!("constructor index out of range")
            }
        }
    };
}
pub(crate) use syntax_enum;

/// A small deterministic random source for property tests.
#[cfg(test)]
pub mod testgen {
    /// xorshift64* state.
    pub struct Gen(u64);

    impl Gen {
        /// A generator from a seed.
        pub fn new(seed: u64) -> Gen {
            Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        /// The next 64 random bits.
        pub fn bits(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// A number below `n` (n > 0).
        pub fn below(&mut self, n: usize) -> usize {
            (self.bits() % n.max(1) as u64) as usize
        }

        /// A small signed number, sometimes negative.
        pub fn int(&mut self) -> i64 {
            self.below(2001) as i64 - 1000
        }

        /// A string with plain text, escapes, templates and odd characters.
        pub fn string(&mut self) -> String {
            const PIECES: [&str; 14] = [
                "web",
                "${host}",
                "/mnt/x",
                " ",
                "\"",
                "\\",
                "\n",
                "\t",
                "grüße",
                "\u{7f}",
                "\0",
                "$$",
                "1",
                "\u{1F600}",
            ];
            let n = self.below(4);
            (0..n).map(|_| PIECES[self.below(PIECES.len())]).collect()
        }
    }
}
