//! `b9 reformat`: rewrite build files in the canonical layout.

use std::io::Write;
use std::path::Path;

use crate::diag::Diagnostic;
use crate::lang;

/// Parses each file, writes it back in canonical layout (only when it
/// changed, atomically) and prints it. A file that does not parse is left
/// untouched; its problems are returned.
pub fn reformat(files: &[impl AsRef<Path>], out: &mut impl Write) -> Result<(), Vec<Diagnostic>> {
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
        Err(problems)
    }
}

/// Writes a file through a temporary sibling and a rename, keeping its mode.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.b9-tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
