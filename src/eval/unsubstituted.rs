//! Warnings for variable references that b9 leaves as written: a `${host}`
//! or `$host` naming a bound variable inside a string that is never
//! substituted (docs/COMPATIBILITY.md#substitution), such as the text of
//! `FromString`. The string is used as written, so the reference almost
//! certainly reaches the output by mistake.
//!
//! The positions are every string of an instance that the evaluator does not
//! interpolate (`eval::subst`, `content::render`): `FromString`,
//! `FromByteString`, `RenderBase64Binary`, `FromURL`, the path of
//! `RenderBase64BinaryFile`, `ASTString`, `ASTObj` keys, `YamlObject` and
//! `MkCloudConfigYaml` literals, the strings, atoms and binaries of Erlang
//! literals, and the words of a `VmImagesWithFixup` post-fix script. Text
//! after `$` that is not a reference (`$$`, `$(`, a name nothing binds)
//! does not warn; nor do the contents of `NoConversion` files, which are
//! verbatim by request.

use crate::diag::source::SourceRef;
use crate::diag::Diagnostic;
use crate::eval::env::Env;
use crate::eval::expand::{Instance, WriterInput};
use crate::eval::subst::inner_span;
use crate::lang::syntax::*;
use crate::lang::typed::Node;
use crate::text::template;

/// A kind of string b9 does not substitute, with what to write instead.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    FromString,
    FromByteString,
    Base64Binary,
    Base64File,
    Url,
    AstString,
    AstKey,
    Yaml,
    Erlang,
    PostFix,
}

/// A host file whose contents are substituted, as the hints write it.
const EXPANDED_FILE: &str = "(Source ExpandVariables \"FILE\")";

impl Place {
    /// The position, as the warning names it.
    fn what(self) -> &'static str {
        match self {
            Place::FromString => "`FromString` text",
            Place::FromByteString => "`FromByteString` bytes",
            Place::Base64Binary => "`RenderBase64Binary` bytes",
            Place::Base64File => "the path of `RenderBase64BinaryFile`",
            Place::Url => "a `FromURL` address",
            Place::AstString => "`ASTString` text",
            Place::AstKey => "an `ASTObj` key",
            Place::Yaml => "a YAML literal",
            Place::Erlang => "an Erlang literal",
            Place::PostFix => "the post-fix script of `VmImagesWithFixup`",
        }
    }

    /// How to get the value substituted, or what to write instead.
    fn hint(self) -> String {
        match self {
            Place::FromString | Place::FromByteString => format!(
                "{} is written as is; put the text in a file and use `FromTextFile {EXPANDED_FILE}`, whose contents are substituted",
                self.what()
            ),
            Place::AstString => format!(
                "`ASTString` is not substituted; use `ASTEmbed (FromTextFile {EXPANDED_FILE})` for a substituted string, or `ASTParse {EXPANDED_FILE}` for a substituted YAML or Erlang value"
            ),
            Place::AstKey => format!(
                "`ASTObj` keys are not substituted; write the entry in a file read with `ASTParse {EXPANDED_FILE}` and combine it with `ASTMerge`"
            ),
            Place::Yaml | Place::Erlang => format!(
                "{}s are not substituted; put the value in a file read with `ASTParse {EXPANDED_FILE}`",
                capitalised(self.what())
            ),
            Place::Base64Binary | Place::Base64File | Place::Url => format!(
                "{} is used as written and b9 has no substituted form of it; write the value itself",
                capitalised(self.what())
            ),
            Place::PostFix => "the post-fix script runs on the host as written, where the shell reads `$name` as its own variable; write the value itself, or do the step in the `VmScript`, whose `Run`, `In` and `As` words are substituted".into(),
        }
    }
}

/// `text` with its first letter upper-case (after a leading article).
fn capitalised(text: &str) -> String {
    let text = text
        .strip_prefix("a ")
        .or_else(|| text.strip_prefix("an "))
        .unwrap_or(text);
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Adds a warning to `out` for each reference to a bound variable in a
/// string of `inst` that b9 does not substitute.
pub fn instance(inst: &Instance, out: &mut Vec<Diagnostic>) {
    let mut scan = Scan {
        source: &inst.source,
        env: &inst.env,
        instance: &inst.id.value,
        out,
    };
    for w in &inst.writers {
        if let WriterInput::Content(c) = &w.input {
            scan.content(c);
        }
    }
    if let ArtifactAssembly::VmImagesWithFixup(_, _, fixup) = &inst.assembly.value {
        scan.script(fixup);
    }
}

struct Scan<'a> {
    source: &'a SourceRef,
    env: &'a Env,
    instance: &'a str,
    out: &'a mut Vec<Diagnostic>,
}

impl Scan<'_> {
    /// Warns about each bound reference in `s`.
    fn string(&mut self, s: &Node<String>, place: Place) {
        if !s.contains('$') {
            return;
        }
        for (name, start, end) in template::references(s) {
            let Some(value) = self.env.get(name) else {
                continue;
            };
            let d = Diagnostic::warning(format!(
                "`{}` in {} is not substituted",
                &s[start..end],
                place.what()
            ))
            .at(self.source, inner_span(self.source, s, start, end))
            .with_label(format!(
                "written as is, although `{name}` is bound (to {value:?} in `{}`)",
                self.instance
            ))
            .with_hint(place.hint());
            self.out.push(d);
        }
    }

    fn content(&mut self, c: &Node<Content>) {
        use Content::*;
        match &c.value {
            RenderErlang(ast) => self.ast(ast),
            RenderYamlObject(ast) => self.ast(ast),
            RenderCloudConfig(ast) => self.ast(ast),
            FromByteString(s) => self.string(s, Place::FromByteString),
            FromString(s) => self.string(s, Place::FromString),
            RenderBase64BinaryFile(p) => self.string(p, Place::Base64File),
            RenderBase64Binary(s) => self.string(s, Place::Base64Binary),
            FromURL(u) => self.string(u, Place::Url),
            FromTextFile(_) => {}
        }
    }

    fn ast<A: Literal>(&mut self, ast: &Node<Ast<A>>) {
        match &ast.value {
            Ast::ASTObj(entries) => {
                for e in entries.iter() {
                    self.string(&e.0, Place::AstKey);
                    self.ast(&e.1);
                }
            }
            Ast::ASTArr(items) | Ast::ASTMerge(items) => items.iter().for_each(|i| self.ast(i)),
            Ast::ASTEmbed(content) => self.content(&content.with((*content.value).clone())),
            Ast::ASTString(s) => self.string(s, Place::AstString),
            Ast::AST(literal) => literal.value.strings(self),
            Ast::ASTInt(_) | Ast::ASTParse(_) => {}
        }
    }

    fn erlang(&mut self, t: &Node<SimpleErlangTerm>) {
        use SimpleErlangTerm::*;
        match &t.value {
            ErlString(s) | ErlAtom(s) | ErlBinary(s) => self.string(s, Place::Erlang),
            ErlList(items) | ErlTuple(items) => items.iter().for_each(|i| self.erlang(i)),
            ErlFloat(_) | ErlNatural(_) | ErlChar(_) => {}
        }
    }

    fn script(&mut self, s: &Node<Script>) {
        use Script::*;
        match &s.value {
            Run(cmd, args) => {
                self.string(cmd, Place::PostFix);
                args.iter().for_each(|a| self.string(a, Place::PostFix));
            }
            In(word, steps) | As(word, steps) => {
                self.string(word, Place::PostFix);
                steps.iter().for_each(|s| self.script(s));
            }
            Begin(steps) | IgnoreErrors(_, steps) | Verbosity(_, steps) => {
                steps.iter().for_each(|s| self.script(s));
            }
            NoOP => {}
        }
    }
}

/// The literal types of an `AST`: where their strings are.
trait Literal {
    /// Scans the literal's strings.
    fn strings(&self, scan: &mut Scan<'_>);
}

impl Literal for YamlObject {
    fn strings(&self, scan: &mut Scan<'_>) {
        let YamlObject::YamlObject(text) = self;
        scan.string(text, Place::Yaml);
    }
}

impl Literal for CloudConfigYaml {
    fn strings(&self, scan: &mut Scan<'_>) {
        self.yaml.value.strings(scan);
    }
}

impl Literal for ErlangPropList {
    fn strings(&self, scan: &mut Scan<'_>) {
        let ErlangPropList::ErlangPropList(term) = self;
        scan.erlang(term);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::source::Source;
    use crate::eval::expand::{expand, BuildVars};

    /// The warnings for a build file, as `line:col message` plus hints.
    fn warnings(text: &str) -> Vec<String> {
        let file = crate::lang::parse(Source::new("t.b9", text)).expect("test file parses");
        let vars = BuildVars {
            args: vec!["demo".into()],
            project_root: "/p".into(),
            build_dir: "/p/b".into(),
            build_date: "2024-01-01-00:00:00".into(),
            build_id: "1234".into(),
        };
        let (instances, errors) = expand(&[file], &vars);
        assert!(errors.is_empty(), "{errors:?}");
        let mut out = Vec::new();
        for inst in &instances {
            instance(inst, &mut out);
        }
        out.iter()
            .map(|d| {
                assert!(!d.is_error());
                format!("{} {}", d.position().unwrap_or_default(), d.message)
            })
            .collect()
    }

    fn seed(content: &str) -> String {
        format!(
            "Let [(\"host\", \"web\")] [Sources [FromContent \"f\" ({content})] [Artifact (IID \"x\") (CloudInit [CI_DIR] \"out\")]]"
        )
    }

    #[test]
    fn from_string_reference_is_located_inside_the_literal() {
        let w = warnings(&seed("FromString \"id: ${host}\\n$host $$host\""));
        assert_eq!(
            w,
            [
                "t.b9:1:66 `${host}` in `FromString` text is not substituted",
                "t.b9:1:75 `$host` in `FromString` text is not substituted"
            ]
        );
    }

    #[test]
    fn unbound_names_and_shell_syntax_do_not_warn() {
        assert!(warnings(&seed("FromString \"$HOME $(id) ${x:-y} $other $$host $1\"")).is_empty());
        assert!(warnings(&seed("FromTextFile (Source ExpandVariables \"$host\")")).is_empty());
    }

    #[test]
    fn every_unsubstituted_position_warns() {
        let cases = [
            ("FromByteString \"$host\"", "`FromByteString` bytes"),
            ("RenderBase64Binary \"$host\"", "`RenderBase64Binary` bytes"),
            ("RenderBase64BinaryFile \"$host.bin\"", "the path of `RenderBase64BinaryFile`"),
            ("FromURL \"http://$host/\"", "a `FromURL` address"),
            ("RenderYamlObject (ASTString \"$host\")", "`ASTString` text"),
            ("RenderYamlObject (ASTObj [(\"$host\", ASTInt 1)])", "an `ASTObj` key"),
            ("RenderYamlObject (AST (YamlObject \"a: $host\"))", "a YAML literal"),
            (
                "RenderCloudConfig (AST (MkCloudConfigYaml {fromCloudConfigYaml = YamlObject \"a: $build_id\"}))",
                "a YAML literal",
            ),
            (
                "RenderErlang (AST (ErlangPropList (ErlList [ErlTuple [ErlAtom \"$host\", ErlBinary \"$arg_1\"]])))",
                "an Erlang literal",
            ),
            (
                "RenderYamlObject (ASTMerge [ASTArr [ASTEmbed (FromString \"$instance_id\")]])",
                "`FromString` text",
            ),
        ];
        for (content, what) in cases {
            let w = warnings(&seed(content));
            assert!(!w.is_empty(), "{content}");
            for line in &w {
                assert!(
                    line.contains(&format!("in {what} is not substituted")),
                    "{content}: {line}"
                );
            }
        }
        let erlang = warnings(&seed(cases[8].0));
        assert_eq!(erlang.len(), 2, "atom and binary: {erlang:?}");
    }

    #[test]
    fn post_fix_script_words_warn_but_the_vm_script_does_not() {
        let text = "Let [(\"host\", \"web\")] [Artifact (IID \"x\") (VmImagesWithFixup [] \
                    (VmScript X86_64 [] (Run \"echo\" [\"$host\"])) \
                    (In \"/$host\" [Run \"cp\" [\"$1\", \"/out/${host}.img\"]]))]";
        let w = warnings(text);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().all(|l| l.contains("the post-fix script")), "{w:?}");
    }
}
