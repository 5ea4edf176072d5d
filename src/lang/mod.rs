//! The `.b9` build language: lexer, term parser, typed syntax, printer.
//!
//! `parse` turns a text into a typed [`syntax::ArtifactGenerator`] with spans and
//! keeps the untyped [`term::Document`] (with comments) for `b9 reformat`.
//! Every syntax and type error is reported as a [`Diagnostic`].

pub mod lexer;
pub mod print;
pub mod syntax;
pub mod term;
pub mod typed;

use std::path::Path;

use crate::diag::source::SourceRef;
use crate::diag::Diagnostic;
use syntax::ArtifactGenerator;
use term::Document;
use typed::{Cx, Node, Syntax};

/// A parsed build file.
#[derive(Debug)]
pub struct BuildFile {
    /// The text it came from.
    pub source: SourceRef,
    /// The typed generator.
    pub generator: Node<ArtifactGenerator>,
}

/// Parses a build file's text; `Err` holds every problem found. The untyped
/// document is dropped once typed: a large file's terms are not kept while
/// it is evaluated.
pub fn parse(source: SourceRef) -> Result<BuildFile, Vec<Diagnostic>> {
    parse_with_document(source).map(|(file, _)| file)
}

/// [`parse`], also returning the untyped document with its comments (what
/// `b9 reformat` prints).
pub fn parse_with_document(source: SourceRef) -> Result<(BuildFile, Document), Vec<Diagnostic>> {
    let document = term::parse_document(source.text()).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| {
                let mut d = Diagnostic::error(e.message).at(&source, e.span);
                if let Some(h) = e.hint {
                    d = d.with_hint(h);
                }
                d
            })
            .collect::<Vec<_>>()
    })?;
    let generator = decode::<Node<ArtifactGenerator>>(&document.term, &source)?;
    let mut diagnostics = Vec::new();
    check_yaml_literals(&source, &document.term, &mut diagnostics);
    if diagnostics.is_empty() {
        Ok((BuildFile { source, generator }, document))
    } else {
        Err(diagnostics)
    }
}

/// Reads and parses the build file `path`, taken from the directory `dir`
/// when it is relative (and named as given, as relative paths in build
/// files are).
pub fn parse_file_in(dir: &Path, path: &Path) -> Result<BuildFile, Vec<Diagnostic>> {
    parse(read_build_file(dir, path)?)
}

/// [`parse_with_document`] of a file on disk.
pub fn parse_file_with_document(path: &Path) -> Result<(BuildFile, Document), Vec<Diagnostic>> {
    parse_with_document(read_build_file(Path::new(""), path)?)
}

/// The build file `path`, taken from `dir` when relative, named as given.
fn read_build_file(dir: &Path, path: &Path) -> Result<SourceRef, Vec<Diagnostic>> {
    crate::diag::read_source_in(dir, path, "build file").map_err(|e| vec![e])
}

/// Decodes a term of `source` as a `T` of the typed syntax: the one way a
/// Haskell term becomes a value (build files, and the `.b9si` fields that are
/// syntax types). `Err` holds every problem found, located in `source`.
pub fn decode<T: Syntax>(term: &term::Term, source: &SourceRef) -> Result<T, Vec<Diagnostic>> {
    let mut diagnostics = Vec::new();
    let mut cx = Cx {
        source,
        diagnostics: &mut diagnostics,
        owner_of: syntax::constructor_owner,
    };
    match T::from_term(term, &mut cx) {
        Some(value) if diagnostics.is_empty() => Ok(value),
        _ => Err(diagnostics),
    }
}

/// `YamlObject "..."` literals are parsed when the file is loaded, as the
/// original does; a YAML error points into the literal.
fn check_yaml_literals(source: &SourceRef, term: &term::Term, out: &mut Vec<Diagnostic>) {
    use term::TermKind;
    match &term.kind {
        TermKind::Con { name, args, .. } => {
            if let (true, [arg]) = (name == "YamlObject", args.as_slice()) {
                if let TermKind::Str(text) = &arg.kind {
                    if let Err(e) = crate::text::yaml::parse(text) {
                        let d =
                            Diagnostic::error(format!("invalid YAML in `YamlObject` literal: {e}"));
                        out.push(d.at(source, arg.span));
                    }
                }
            }
            args.iter()
                .for_each(|a| check_yaml_literals(source, a, out));
        }
        TermKind::Record { fields, .. } => fields
            .iter()
            .for_each(|(_, _, v)| check_yaml_literals(source, v, out)),
        TermKind::List { items, .. } | TermKind::Tuple { items, .. } => items
            .iter()
            .for_each(|i| check_yaml_literals(source, i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::source::Source;
    use proptest::prelude::*;

    fn print_generator(g: &ArtifactGenerator) -> String {
        print::print_document(&Document {
            term: g.to_term(),
            trailing: Vec::new(),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// print -> parse gives the same typed value, and printing is idempotent.
        #[test]
        fn printed_generators_parse_back_equal(seed in any::<u64>()) {
            let mut g = typed::testgen::Gen::new(seed);
            let generator = ArtifactGenerator::sample(&mut g, 0);
            let text = print_generator(&generator);
            // The typed layer only: YAML literals here are random text.
            let source = Source::new("generated.b9", text.clone());
            let doc = term::parse_document(&text).map_err(|e| TestCaseError::fail(format!("{text}\n{e:?}")))?;
            let typed = decode::<Node<ArtifactGenerator>>(&doc.term, &source).map_err(|diagnostics| {
                let msgs: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
                TestCaseError::fail(format!("{text}\n{}", msgs.join("\n")))
            })?;
            prop_assert_eq!(&typed.value, &generator, "{}", text);
            prop_assert_eq!(print::print_document(&doc), text);
        }
    }

    #[test]
    fn type_errors_name_position_expected_constructors_and_near_miss() {
        let src = Source::new("x.b9", "Artifact (IID \"x\")\n  (VmImage [] NoVmScript)\n");
        let errs = parse(src).unwrap_err();
        assert_eq!(errs.len(), 1);
        let text = errs[0].to_string();
        assert_eq!(errs[0].position().as_deref(), Some("x.b9:2:4"));
        assert!(text.contains("unknown constructor `VmImage`"), "{text}");
        assert!(
            text.contains(
                "`ArtifactAssembly` is one of: `CloudInit`, `VmImages`, `VmImagesWithFixup`"
            ),
            "{text}"
        );
        assert!(text.contains("did you mean `VmImages`?"), "{text}");
    }

    #[test]
    fn several_independent_errors_in_one_run() {
        let src = Source::new(
            "x.b9",
            "Let [] [ Artifact (IID \"a\") (CloudInit [CI_ISO] 3)\n, Artifact (IID \"b\")\n, Artifac (IID \"c\") EmptyArtifact\n, Artifact (IID \"d\") (CloudInit [CI_ISO, Raw] \"d\") ]",
        );
        let errs = parse(src).unwrap_err();
        let positions: Vec<_> = errs.iter().filter_map(|e| e.position()).collect();
        assert_eq!(
            positions,
            ["x.b9:1:49", "x.b9:2:3", "x.b9:3:3", "x.b9:4:42"],
            "{errs:#?}"
        );
        assert!(errs[0]
            .message
            .contains("expected `String`, found an integer"));
        assert!(errs[1]
            .message
            .contains("`Artifact` takes 2 arguments, but 1 was given"));
        assert!(errs[1].notes[0].contains("Artifact InstanceId ArtifactAssembly"));
        assert!(errs[2].hints[0].contains("did you mean `Artifact`?"));
        assert!(
            errs[3]
                .message
                .contains("found `Raw`, which is a `ImageType`"),
            "{}",
            errs[3].message
        );
    }

    #[test]
    fn yaml_literals_are_checked_at_load() {
        let src = Source::new("y.b9", "Artifact (IID \"x\") (CloudInit [] \"o\")");
        assert!(parse(src).is_ok());
        let src = Source::new(
            "y.b9",
            "Sources [FromContent \"u\" (RenderYamlObject (AST (YamlObject \"a: [1\")))] [EmptyArtifact]",
        );
        let errs = parse(src).unwrap_err();
        assert!(errs[0].message.contains("invalid YAML"), "{}", errs[0]);
        assert_eq!(errs[0].position().as_deref(), Some("y.b9:1:61"));
    }
}
