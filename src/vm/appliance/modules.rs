//! Kernel modules: finding them under a modules directory, reading their
//! dependencies from their own `.modinfo` section (the Debian packages ship
//! no `modules.dep`), ordering them dependencies first, and decompressing
//! `.ko.xz` / `.ko.zst` / `.ko.gz`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::elf::Elf;
use super::ApplianceError;

/// One module as it goes into the appliance.
#[derive(Debug, Clone)]
pub(super) struct Module {
    /// The file name stem (`nls_iso8859-1`), as in `/b9/modules/<name>.ko`.
    pub(super) name: String,
    /// The uncompressed `.ko`.
    pub(super) data: Vec<u8>,
    /// The normalized names of the appliance's modules that must be loaded
    /// before this one (its dependencies and soft pre-dependencies found).
    pub(super) after: Vec<String>,
}

/// A module's name with `-` and `_` made equal (as the kernel does).
pub(super) fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The modules found under `<modules_dir>/kernel`, by normalized name, and
/// the normalized names of the modules built into the kernel.
pub(super) struct Index {
    dir: PathBuf,
    files: HashMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

/// The suffixes of module files this reader understands.
const SUFFIXES: [&str; 4] = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

impl Index {
    /// Walks `modules_dir/kernel` and reads `modules_dir/modules.builtin`.
    pub(super) fn scan(modules_dir: &Path) -> Result<Self, ApplianceError> {
        let mut files = HashMap::new();
        let root = modules_dir.join("kernel");
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|source| ApplianceError::Read {
                path: dir.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| ApplianceError::Read {
                    path: dir.clone(),
                    source,
                })?;
                let path = entry.path();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir {
                    stack.push(path);
                } else if let Some(stem) = module_stem(&path) {
                    // The first one found wins; a tree has each name once.
                    files.entry(normalize(&stem)).or_insert(path);
                }
            }
        }
        let builtin_path = modules_dir.join("modules.builtin");
        let builtin = match std::fs::read_to_string(&builtin_path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| module_stem(Path::new(l.trim())))
                .map(|s| normalize(&s))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(source) => {
                return Err(ApplianceError::Read {
                    path: builtin_path,
                    source,
                })
            }
        };
        Ok(Index {
            dir: modules_dir.to_path_buf(),
            files,
            builtin,
        })
    }

    /// `wanted` and everything they depend on, dependencies first. Built-in
    /// modules are skipped; soft dependencies that name nothing found (often
    /// an alias such as `crypto-crc32c`) are ignored. When `release` is
    /// given, each module's `vermagic` must be for it.
    pub(super) fn resolve(
        &self,
        wanted: &[&str],
        release: Option<&str>,
    ) -> Result<Vec<Module>, ApplianceError> {
        let mut r = Resolver {
            index: self,
            release,
            state: BTreeMap::new(),
            out: Vec::new(),
        };
        for name in wanted {
            r.visit(name, true)?;
        }
        Ok(r.out)
    }
}

struct Resolver<'a> {
    index: &'a Index,
    release: Option<&'a str>,
    /// Normalized name -> done (true) or being visited (false).
    state: BTreeMap<String, bool>,
    out: Vec<Module>,
}

impl Resolver<'_> {
    fn visit(&mut self, name: &str, required: bool) -> Result<(), ApplianceError> {
        let key = normalize(name);
        if self.state.contains_key(&key) || self.index.builtin.contains(&key) {
            // Done, on the current path (a cycle: the kernel's own loader
            // would fail too; leave the order to the retrying agent), or
            // built in.
            return Ok(());
        }
        let Some(path) = self.index.files.get(&key) else {
            if required {
                return Err(ApplianceError::ModuleNotFound {
                    name: name.to_string(),
                    dir: self.index.dir.clone(),
                });
            }
            return Ok(());
        };
        self.state.insert(key.clone(), false);
        let data = read_module(path)?;
        let info = ModInfo::parse(&data).map_err(|what| ApplianceError::BadModule {
            path: path.clone(),
            what,
        })?;
        if let (Some(release), Some(vermagic)) = (self.release, &info.vermagic) {
            let built_for = vermagic.split_whitespace().next().unwrap_or_default();
            if built_for != release {
                return Err(ApplianceError::ModuleRelease {
                    path: path.clone(),
                    built_for: built_for.to_string(),
                    release: release.to_string(),
                });
            }
        }
        for dep in &info.depends {
            self.visit(dep, true)?;
        }
        for dep in &info.soft_pre {
            self.visit(dep, false)?;
        }
        let stem = module_stem(path).unwrap_or_else(|| key.clone());
        // Those loaded before it: visited to the end (not built in, found,
        // not on the current path of a cycle).
        let after = (info.depends.iter().chain(&info.soft_pre))
            .map(|d| normalize(d))
            .filter(|d| self.state.get(d) == Some(&true))
            .collect();
        self.out.push(Module {
            name: stem,
            data,
            after,
        });
        self.state.insert(key, true);
        for dep in &info.soft_post {
            self.visit(dep, false)?;
        }
        Ok(())
    }
}

/// The file name of `path` without its module suffix, if it is a module.
fn module_stem(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    SUFFIXES
        .iter()
        .find_map(|s| file.strip_suffix(s))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Reads a module file, decompressing it by its suffix.
pub(super) fn read_module(path: &Path) -> Result<Vec<u8>, ApplianceError> {
    let raw = std::fs::read(path).map_err(|source| ApplianceError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path.to_string_lossy();
    let bad = |what: String| ApplianceError::Decompress {
        path: path.to_path_buf(),
        what,
    };
    if name.ends_with(".xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut raw.as_slice(), &mut out).map_err(|e| bad(e.to_string()))?;
        Ok(out)
    } else if name.ends_with(".zst") {
        zstd_decompress(&raw).map_err(bad)
    } else if name.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| bad(e.to_string()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Decodes every zstd frame of `data`.
fn zstd_decompress(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let mut dec =
            ruzstd::decoding::StreamingDecoder::new(&mut data).map_err(|e| e.to_string())?;
        dec.read_to_end(&mut out).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// What the appliance needs of a module's `.modinfo`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct ModInfo {
    /// `depends=`: modules that must be loaded first.
    pub(super) depends: Vec<String>,
    /// `softdep=pre: ...`: modules (or aliases) to load first if present.
    pub(super) soft_pre: Vec<String>,
    /// `softdep=post: ...`: modules (or aliases) to load after.
    pub(super) soft_post: Vec<String>,
    /// `vermagic=`: the release the module was built for, then flags.
    pub(super) vermagic: Option<String>,
}

impl ModInfo {
    /// Reads the `.modinfo` section of the module `data`.
    pub(super) fn parse(data: &[u8]) -> Result<Self, String> {
        let elf = Elf::parse(data).map_err(|e| e.to_string())?;
        let section = elf
            .section(".modinfo")
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no .modinfo section: not a kernel module".to_string())?;
        Ok(Self::parse_section(section))
    }

    /// Reads the NUL-separated `key=value` strings of a `.modinfo` section.
    pub(super) fn parse_section(section: &[u8]) -> Self {
        let mut info = ModInfo::default();
        for entry in section.split(|&b| b == 0) {
            let entry = String::from_utf8_lossy(entry);
            let Some((key, value)) = entry.split_once('=') else {
                continue;
            };
            match key {
                "depends" => info.depends.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
                "softdep" => {
                    let mut target = None;
                    for word in value.split_whitespace() {
                        match word {
                            "pre:" => target = Some(true),
                            "post:" => target = Some(false),
                            w => match target {
                                Some(true) => info.soft_pre.push(w.to_string()),
                                Some(false) => info.soft_post.push(w.to_string()),
                                None => {}
                            },
                        }
                    }
                }
                "vermagic" => info.vermagic = Some(value.to_string()),
                _ => {}
            }
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_depends_softdep_and_vermagic() {
        let s = b"license=GPL\0depends=jbd2,mbcache,crc16\0softdep=pre: crypto-crc32c post: a b\0vermagic=6.1.0-56-amd64 SMP preempt \0name=ext4\0";
        let i = ModInfo::parse_section(s);
        assert_eq!(i.depends, ["jbd2", "mbcache", "crc16"]);
        assert_eq!(i.soft_pre, ["crypto-crc32c"]);
        assert_eq!(i.soft_post, ["a", "b"]);
        assert_eq!(i.vermagic.as_deref(), Some("6.1.0-56-amd64 SMP preempt "));
        assert!(ModInfo::parse_section(b"depends=\0").depends.is_empty());
    }

    #[test]
    fn stems_and_normalization() {
        assert_eq!(
            module_stem(Path::new("a/nls_iso8859-1.ko")).as_deref(),
            Some("nls_iso8859-1")
        );
        assert_eq!(module_stem(Path::new("x.ko.zst")).as_deref(), Some("x"));
        assert_eq!(module_stem(Path::new("x.o")), None);
        assert_eq!(module_stem(Path::new(".ko")), None);
        assert_eq!(normalize("nls_iso8859-1"), "nls_iso8859_1");
    }

    #[test]
    fn decompresses_xz_zstd_and_gzip() {
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 9) as u8)
            .collect();
        let dir = tempfile::tempdir().unwrap();

        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut data.as_slice(), &mut xz).unwrap();
        let zst = ruzstd::encoding::compress_to_vec(
            data.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        for (name, bytes) in [("m.ko.xz", xz), ("m.ko.zst", zst), ("m.ko.gz", gz)] {
            let p = dir.path().join(name);
            std::fs::write(&p, &bytes).unwrap();
            assert_eq!(read_module(&p).unwrap(), data, "{name}");
            std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
            let err = read_module(&p).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
