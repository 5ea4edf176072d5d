//! Rendering `Content` (docs/COMPATIBILITY.md#ast) to bytes in an instance's environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

use crate::content::ast::AstTarget;
use crate::content::error::ContentError;
use crate::content::url;
use crate::diag::source::Source;
use crate::eval::env::Env;
use crate::lang::syntax::{Ast, Content, SourceFile, SourceFileConversion};
use crate::text::template::{self, Piece};
use crate::text::{erlang, yaml};

/// What rendering needs from the build: variables, where relative paths
/// start, and the download time limit.
pub struct Renderer<'a> {
    /// The instance's variables.
    pub env: &'a Env,
    /// Relative source paths are resolved here (the working directory).
    pub cwd: &'a Path,
    /// Time limit of a `FromURL` download.
    pub url_timeout: Option<Duration>,
}

impl Renderer<'_> {
    /// The bytes of a content.
    pub fn content(&self, c: &Content) -> Result<Vec<u8>, ContentError> {
        use Content::*;
        Ok(match c {
            RenderErlang(ast) => erlang::render(&eval_ast(ast, self)?).into_bytes(),
            RenderYamlObject(ast) => yaml::render(&eval_ast(ast, self)?).into_bytes(),
            RenderCloudConfig(ast) => yaml::render_cloud_config(&eval_ast(ast, self)?).into_bytes(),
            FromByteString(s) => latin1(s),
            FromString(s) => s.as_bytes().to_vec(),
            FromTextFile(file) => self.source_file(file)?,
            RenderBase64BinaryFile(path) => {
                let p = self.cwd.join(&path.value);
                let bytes =
                    std::fs::read(&p).map_err(|source| ContentError::Read { path: p, source })?;
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into_bytes()
            }
            RenderBase64Binary(s) => base64::engine::general_purpose::STANDARD
                .encode(latin1(s))
                .into_bytes(),
            FromURL(u) => url::download(u, self.url_timeout)?,
        })
    }

    /// The contents of a `Source conversion path`: the path is interpolated
    /// when read, the text expanded with `ExpandVariables`.
    pub fn source_file(&self, file: &SourceFile) -> Result<Vec<u8>, ContentError> {
        let SourceFile::Source(conv, path) = file;
        let path = self.expand(&path.value, "a source file path")?;
        let expand = matches!(conv.value, SourceFileConversion::ExpandVariables);
        self.read(&self.cwd.join(path), expand)
    }

    /// Reads a host file, expanding `${var}` in it when asked.
    pub fn read(&self, path: &Path, expand: bool) -> Result<Vec<u8>, ContentError> {
        let bytes = std::fs::read(path).map_err(|source| ContentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if !expand {
            return Ok(bytes);
        }
        let text = String::from_utf8(bytes).map_err(|_| ContentError::NotText {
            path: path.to_path_buf(),
        })?;
        let origin = path.display().to_string();
        self.expand_in(&text, &origin).map(String::into_bytes)
    }

    /// A string with `${var}` replaced; `what` names it in errors.
    pub fn expand(&self, text: &str, what: &str) -> Result<String, ContentError> {
        self.expand_in(text, what)
    }

    fn expand_in(&self, text: &str, origin: &str) -> Result<String, ContentError> {
        let position = |offset: usize| {
            let lc = Source::new(PathBuf::from(origin), text).line_col(offset);
            (lc.line, lc.column)
        };
        let pieces = template::parse(text).map_err(|e| {
            let (line, column) = position(e.start);
            ContentError::Template {
                origin: origin.to_string(),
                line,
                column,
                message: e.message,
            }
        })?;
        template::render(&pieces, |n| self.env.get(n)).map_err(|piece| {
            let (name, start) = match piece {
                Piece::Var { name, start, .. } => (name.as_str(), *start),
                Piece::Text(_) => ("", 0),
            };
            let (line, column) = position(start);
            ContentError::Template {
                origin: origin.to_string(),
                line,
                column,
                message: format!("undefined variable `{name}`"),
            }
        })
    }
}

/// Evaluates an `AST` in the renderer's environment.
fn eval_ast<A: AstTarget>(ast: &Ast<A>, r: &Renderer<'_>) -> Result<A::Value, ContentError> {
    Ok(match ast {
        Ast::ASTObj(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for e in entries.iter() {
                out.push((e.0.value.clone(), eval_ast(&e.1, r)?));
            }
            A::object(out)
        }
        Ast::ASTArr(items) => {
            let values: Result<Vec<_>, _> = items.iter().map(|i| eval_ast(i, r)).collect();
            A::array(values?)
        }
        Ast::ASTMerge(items) => {
            let mut values = items.iter().map(|i| eval_ast(i, r));
            let first = values.next().ok_or(ContentError::EmptyMerge)??;
            values.try_fold(first, |acc, v| Ok::<_, ContentError>(A::merge(acc, v?)))?
        }
        Ast::ASTEmbed(content) => {
            let bytes = r.content(&content.value)?;
            A::string(String::from_utf8_lossy(&bytes).into_owned())
        }
        Ast::ASTString(s) => A::string(s.value.clone()),
        Ast::ASTInt(n) => A::int(n.value),
        Ast::ASTParse(file) => {
            let bytes = r.source_file(file)?;
            let SourceFile::Source(_, path) = &file.value;
            let origin = path.value.clone();
            let text = String::from_utf8(bytes).map_err(|_| ContentError::NotText {
                path: origin.clone().into(),
            })?;
            A::parse(&text, &origin)?
        }
        Ast::AST(literal) => literal.literal()?,
    })
}

/// A Haskell lazy ByteString literal: each character truncated to 8 bits.
fn latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| (u32::from(c) & 0xff) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytestrings_truncate_characters_to_bytes() {
        assert_eq!(latin1("a\u{ff}\u{100}"), vec![b'a', 0xff, 0x00]);
    }
}
