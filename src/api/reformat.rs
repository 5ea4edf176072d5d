//! `b9 reformat`: build files rewritten in the canonical layout.

use std::io::Write;
use std::path::Path;

use super::config::write_atomically;
use super::error::Error;
use crate::diag::Diagnostic;
use crate::lang;

/// Parses each file, writes it back in canonical layout (only when it
/// changed, atomically) and writes it to `out`. A file that does not parse
/// is left untouched; the problems of all files are in the error.
pub fn reformat(files: &[impl AsRef<Path>], out: &mut dyn Write) -> Result<(), Error> {
    let mut problems = Vec::new();
    for path in files {
        let path = path.as_ref();
        match lang::parse_file_with_document(path) {
            Ok((file, document)) => {
                let text = lang::print::print_document(&document);
                if text != file.source.text() {
                    if let Err(e) = write_atomically(path, &text) {
                        problems.push(Diagnostic::error(format!(
                            "cannot write {}: {e}",
                            path.display()
                        )));
                        continue;
                    }
                }
                if let Err(e) = out.write_all(text.as_bytes()) {
                    problems.push(Diagnostic::error(format!(
                        "cannot print {}: {e}",
                        path.display()
                    )));
                }
            }
            Err(mut d) => problems.append(&mut d),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::input(problems))
    }
}
