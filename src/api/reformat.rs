//! `b9 reformat`: build files rewritten in the canonical layout.

use std::path::Path;

use super::config::write_atomically;
use super::error::Error;
use crate::lang;

/// A build file after [`reformat`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reformatted {
    /// The file's text in canonical layout (comments kept).
    pub text: String,
    /// Whether the file was rewritten (it was not in canonical layout).
    pub changed: bool,
}

/// Parses the build file at `path` and writes it back in canonical layout,
/// only when that changes it (atomically: a reader sees the old or the new
/// text). A file that does not parse is left untouched and its problems
/// are the error.
pub fn reformat(path: &Path) -> Result<Reformatted, Error> {
    let (file, document) = lang::parse_file_with_document(path).map_err(Error::input)?;
    let text = lang::print::print_document(&document);
    let changed = text != file.source.text();
    if changed {
        write_atomically(path, &text)
            .map_err(|e| Error::failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(Reformatted { text, changed })
}
