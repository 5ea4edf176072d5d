//! The shared libraries an executable needs: its program interpreter
//! (`PT_INTERP`) and its `DT_NEEDED` libraries, recursively, found in the
//! standard library directories the way the dynamic linker would without
//! an `ld.so.cache`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::elf::Elf;
use super::ApplianceError;

/// Where libraries are looked for, in order.
pub(super) const SEARCH_DIRS: [&str; 6] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// One library as it goes into the appliance.
#[derive(Debug, Clone)]
pub(super) struct Library {
    /// The absolute path the dynamic linker asks for (stored there as a
    /// regular file, whatever symlinks lead to it on the host).
    pub(super) path: String,
    /// The file's contents (symlinks followed).
    pub(super) data: Vec<u8>,
}

/// The libraries `exe` (with contents `data`) needs, in the order found.
pub(super) fn needed(exe: &Path, data: &[u8]) -> Result<Vec<Library>, ApplianceError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    // (wanted name or absolute path, the file that wants it)
    let mut queue = requests(exe, data)?;
    let mut i = 0;
    while let Some((name, wanted_by)) = queue.get(i).cloned() {
        i += 1;
        let Some(found) = find(&name) else {
            return Err(ApplianceError::LibraryNotFound {
                name,
                needed_by: wanted_by,
                dirs: SEARCH_DIRS.join(", "),
            });
        };
        if !seen.insert(found.clone()) {
            continue;
        }
        let data = std::fs::read(&found).map_err(|source| ApplianceError::Read {
            path: PathBuf::from(&found),
            source,
        })?;
        queue.extend(requests(Path::new(&found), &data)?);
        out.push(Library { path: found, data });
    }
    Ok(out)
}

/// The interpreter and libraries the ELF file `data` asks for.
fn requests(path: &Path, data: &[u8]) -> Result<Vec<(String, PathBuf)>, ApplianceError> {
    let dynamic =
        Elf::parse(data)
            .and_then(|e| e.dynamic())
            .map_err(|e| ApplianceError::BadElf {
                path: path.to_path_buf(),
                what: e.to_string(),
            })?;
    Ok(dynamic
        .interp
        .into_iter()
        .chain(dynamic.needed)
        .map(|n| (n, path.to_path_buf()))
        .collect())
}

/// The absolute path under which `name` is found: itself when it holds a
/// `/`, else the first search directory holding a 64-bit ELF file of
/// that name.
fn find(name: &str) -> Option<String> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| name.to_string());
    }
    SEARCH_DIRS
        .iter()
        .map(|dir| format!("{dir}/{name}"))
        .find(|p| is_elf64(Path::new(p)))
}

/// Whether `path` (symlinks followed) is a 64-bit little-endian ELF file,
/// as the dynamic linker skips libraries of another class.
fn is_elf64(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 6];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == *b"\x7fELF\x02\x01")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_libc_and_the_loader_for_a_dynamic_executable() {
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(&exe).unwrap();
        let libs = needed(&exe, &data).unwrap();
        let paths: Vec<_> = libs.iter().map(|l| l.path.as_str()).collect();
        assert!(paths.contains(&"/lib64/ld-linux-x86-64.so.2"), "{paths:?}");
        assert!(paths.iter().any(|p| p.ends_with("/libc.so.6")), "{paths:?}");
        // Each once, and all real contents.
        let unique: BTreeSet<_> = paths.iter().collect();
        assert_eq!(unique.len(), paths.len());
        assert!(libs.iter().all(|l| l.data.starts_with(b"\x7fELF")));
    }

    #[test]
    fn a_missing_library_names_it_and_who_needs_it() {
        assert!(find("libdoes-not-exist-b9.so.7").is_none());
        assert_eq!(find("/no/such/ld.so"), None);
    }
}
