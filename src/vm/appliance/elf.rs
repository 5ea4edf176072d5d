//! Just enough of ELF64 (little-endian, x86_64) for the appliance: a named
//! section of a kernel module (`.modinfo`), the program interpreter and
//! `DT_NEEDED` libraries of an executable or shared library, the notes of a
//! kernel (its PVH entry point), and an executable stripped to what its
//! program headers refer to.
//!
//! The input is a file on the host, but it is still parsed defensively:
//! every offset and size is bounds-checked, nothing panics.

use std::fmt;

use crate::bytes::{le_u16, le_u32, le_u64};

/// Why a file could not be read as ELF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ElfError(pub(super) String);

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A field that does not lie wholly inside the file.
fn truncated() -> ElfError {
    bad("truncated")
}

fn bad(what: impl Into<String>) -> ElfError {
    ElfError(what.into())
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const SHN_XINDEX: u16 = 0xffff;
/// More sections than any real file has; bounds the work on garbage.
const MAX_SECTIONS: u64 = 1 << 20;

/// A parsed ELF64 little-endian file.
pub(super) struct Elf<'a> {
    data: &'a [u8],
    phoff: u64,
    phnum: u64,
    shoff: u64,
    shnum: u64,
    shstrndx: u64,
}

/// What an executable needs from the dynamic linker.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Dynamic {
    /// `PT_INTERP`: the dynamic linker's absolute path.
    pub(super) interp: Option<String>,
    /// `DT_NEEDED` library names, in order.
    pub(super) needed: Vec<String>,
}

struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

impl<'a> Elf<'a> {
    /// Parses the ELF header of `data`.
    pub(super) fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        if data.get(..4) != Some(b"\x7fELF") {
            return Err(bad("not an ELF file"));
        }
        if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
            return Err(bad("not a 64-bit little-endian ELF file"));
        }
        if data.len() < 64 {
            return Err(bad("truncated ELF header"));
        }
        let mut elf = Elf {
            data,
            phoff: le_u64(data, 32).ok_or_else(truncated)?,
            phnum: u64::from(le_u16(data, 56).ok_or_else(truncated)?),
            shoff: le_u64(data, 40).ok_or_else(truncated)?,
            shnum: u64::from(le_u16(data, 60).ok_or_else(truncated)?),
            shstrndx: u64::from(le_u16(data, 62).ok_or_else(truncated)?),
        };
        if le_u16(data, 54).ok_or_else(truncated)? != 56 && elf.phnum != 0 {
            return Err(bad("unexpected program header size"));
        }
        if le_u16(data, 58).ok_or_else(truncated)? != 64 && elf.shoff != 0 {
            return Err(bad("unexpected section header size"));
        }
        // Extended numbering: the real counts are in section 0.
        if elf.shoff != 0 && (elf.shnum == 0 || elf.shstrndx == u64::from(SHN_XINDEX)) {
            let s0 = elf.shdr_at(0)?;
            if elf.shnum == 0 {
                elf.shnum = le_u64(data, s0 + 32).ok_or_else(truncated)?;
            }
            if elf.shstrndx == u64::from(SHN_XINDEX) {
                elf.shstrndx = u64::from(le_u32(data, s0 + 40).ok_or_else(truncated)?);
            }
        }
        if elf.shnum > MAX_SECTIONS {
            return Err(bad("too many sections"));
        }
        Ok(elf)
    }

    /// The contents of the first section called `name`, if any.
    pub(super) fn section(&self, name: &str) -> Result<Option<&'a [u8]>, ElfError> {
        if self.shoff == 0 || self.shnum == 0 {
            return Ok(None);
        }
        if self.shstrndx >= self.shnum {
            return Err(bad("section name table index out of range"));
        }
        let strtab = self.section_data(self.shstrndx)?;
        for i in 0..self.shnum {
            let sh = self.shdr_at(i)?;
            let name_off = usize_of(u64::from(le_u32(self.data, sh).ok_or_else(truncated)?))?;
            let sname = cstr_at(strtab, name_off)?;
            if sname == name.as_bytes() {
                return self.section_data(i).map(Some);
            }
        }
        Ok(None)
    }

    /// The program interpreter and `DT_NEEDED` entries (none for a static
    /// executable).
    pub(super) fn dynamic(&self) -> Result<Dynamic, ElfError> {
        let phdrs = self.phdrs()?;
        let mut out = Dynamic::default();
        if let Some(p) = phdrs.iter().find(|p| p.kind == PT_INTERP) {
            let bytes = slice(self.data, p.offset, p.filesz)?;
            let s = cstr_at(bytes, 0)?;
            out.interp = Some(utf8(s)?);
        }
        let Some(dynseg) = phdrs.iter().find(|p| p.kind == PT_DYNAMIC) else {
            return Ok(out);
        };
        let dynamic = slice(self.data, dynseg.offset, dynseg.filesz)?;
        let (mut strtab_addr, mut strsz, mut needed) = (None, None, Vec::new());
        for entry in dynamic.chunks_exact(16) {
            let tag = le_u64(entry, 0).ok_or_else(truncated)?;
            let val = le_u64(entry, 8).ok_or_else(truncated)?;
            match tag {
                DT_NULL => break,
                DT_NEEDED => needed.push(val),
                DT_STRTAB => strtab_addr = Some(val),
                DT_STRSZ => strsz = Some(val),
                _ => {}
            }
        }
        if needed.is_empty() {
            return Ok(out);
        }
        let addr = strtab_addr.ok_or_else(|| bad("DT_NEEDED without DT_STRTAB"))?;
        let size = strsz.ok_or_else(|| bad("DT_NEEDED without DT_STRSZ"))?;
        // DT_STRTAB is a virtual address: map it through the PT_LOAD segments.
        let load = phdrs
            .iter()
            .filter(|p| p.kind == PT_LOAD)
            .find(|p| addr >= p.vaddr && addr - p.vaddr < p.filesz)
            .ok_or_else(|| bad("DT_STRTAB outside every loaded segment"))?;
        let offset = load
            .offset
            .checked_add(addr - load.vaddr)
            .ok_or_else(|| bad("DT_STRTAB offset overflows"))?;
        let strtab = slice(self.data, offset, size)?;
        for off in needed {
            out.needed.push(utf8(cstr_at(strtab, usize_of(off)?)?)?);
        }
        Ok(out)
    }

    /// Whether a `PT_NOTE` segment holds a note called `name` of type `kind`.
    pub(super) fn has_note(&self, name: &[u8], kind: u32) -> Result<bool, ElfError> {
        for p in self.phdrs()?.iter().filter(|p| p.kind == PT_NOTE) {
            let mut notes = slice(self.data, p.offset, p.filesz)?;
            // Each note: namesz, descsz, type, then name and desc, each
            // padded to 4 bytes.
            while notes.len() >= 12 {
                let namesz = usize_of(u64::from(le_u32(notes, 0).ok_or_else(truncated)?))?;
                let descsz = usize_of(u64::from(le_u32(notes, 4).ok_or_else(truncated)?))?;
                let ntype = le_u32(notes, 8).ok_or_else(truncated)?;
                let name_end = 12usize
                    .checked_add(namesz)
                    .ok_or_else(|| bad("note name size overflows"))?;
                let note_name = notes
                    .get(12..name_end)
                    .ok_or_else(|| bad("truncated note"))?;
                let note_name = note_name.strip_suffix(&[0]).unwrap_or(note_name);
                if ntype == kind && note_name == name {
                    return Ok(true);
                }
                let next = align4(name_end)
                    .and_then(|d| d.checked_add(descsz))
                    .and_then(align4)
                    .ok_or_else(|| bad("note size overflows"))?;
                notes = notes.get(next..).unwrap_or_default();
            }
        }
        Ok(false)
    }

    /// The end of the last byte the ELF header, the program headers or a
    /// segment occupy in the file: all that loading the file reads.
    fn loaded_end(&self) -> Result<u64, ElfError> {
        let table = self
            .phnum
            .checked_mul(56)
            .and_then(|n| n.checked_add(self.phoff))
            .ok_or_else(|| bad("program header table overflows"))?;
        let mut end = table.max(64);
        for p in self.phdrs()? {
            let seg = p
                .offset
                .checked_add(p.filesz)
                .ok_or_else(|| bad("segment end overflows"))?;
            end = end.max(seg);
        }
        Ok(end)
    }

    fn phdrs(&self) -> Result<Vec<Phdr>, ElfError> {
        (0..self.phnum)
            .map(|i| {
                let at = i
                    .checked_mul(56)
                    .and_then(|o| o.checked_add(self.phoff))
                    .ok_or_else(|| bad("program header offset overflows"))?;
                let at = usize_of(at)?;
                Ok(Phdr {
                    kind: le_u32(self.data, at).ok_or_else(truncated)?,
                    offset: le_u64(self.data, at + 8).ok_or_else(truncated)?,
                    vaddr: le_u64(self.data, at + 16).ok_or_else(truncated)?,
                    filesz: le_u64(self.data, at + 32).ok_or_else(truncated)?,
                })
            })
            .collect()
    }

    /// The file offset of section header `i`.
    fn shdr_at(&self, i: u64) -> Result<usize, ElfError> {
        let at = i
            .checked_mul(64)
            .and_then(|o| o.checked_add(self.shoff))
            .ok_or_else(|| bad("section header offset overflows"))?;
        let at = usize_of(at)?;
        slice(self.data, at as u64, 64)?;
        Ok(at)
    }

    fn section_data(&self, i: u64) -> Result<&'a [u8], ElfError> {
        let sh = self.shdr_at(i)?;
        const SHT_NOBITS: u32 = 8;
        if le_u32(self.data, sh + 4).ok_or_else(truncated)? == SHT_NOBITS {
            return Ok(&[]);
        }
        slice(
            self.data,
            le_u64(self.data, sh + 24).ok_or_else(truncated)?,
            le_u64(self.data, sh + 32).ok_or_else(truncated)?,
        )
    }
}

/// `data` (an executable or shared library) cut after the last byte that
/// loading it reads, without section headers, when it carries debug
/// information (a `.debug_info` section); `None` otherwise. What is cut
/// (debug information, the symbol table, the section headers) is never
/// read by the kernel or the dynamic linker, which go by program headers.
pub(super) fn strip_debug(data: &[u8]) -> Result<Option<Vec<u8>>, ElfError> {
    let elf = Elf::parse(data)?;
    if elf.phnum == 0 {
        return Err(bad("no program headers"));
    }
    if elf.section(".debug_info")?.is_none() {
        return Ok(None);
    }
    let end = usize_of(elf.loaded_end()?)?;
    if end >= data.len() {
        return Ok(None);
    }
    let mut out = data[..end].to_vec();
    // e_shoff, then e_shnum and e_shstrndx: no section headers.
    out[40..48].fill(0);
    out[60..64].fill(0);
    Ok(Some(out))
}

fn align4(v: usize) -> Option<usize> {
    v.checked_add(3).map(|v| v & !3)
}

fn usize_of(v: u64) -> Result<usize, ElfError> {
    usize::try_from(v).map_err(|_| bad("offset out of range"))
}

fn slice(data: &[u8], offset: u64, size: u64) -> Result<&[u8], ElfError> {
    let end = offset
        .checked_add(size)
        .ok_or_else(|| bad("offset overflows"))?;
    data.get(usize_of(offset)?..usize_of(end)?)
        .ok_or_else(|| bad("truncated file (offset past the end)"))
}

fn cstr_at(data: &[u8], offset: usize) -> Result<&[u8], ElfError> {
    let rest = data
        .get(offset..)
        .ok_or_else(|| bad("string offset past its table"))?;
    let len = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| bad("unterminated string"))?;
    Ok(&rest[..len])
}

fn utf8(b: &[u8]) -> Result<String, ElfError> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("a name is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test binary itself: a dynamically linked x86_64 executable.
    fn self_exe() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn reads_interp_and_needed_of_a_real_executable() {
        let data = self_exe();
        let d = Elf::parse(&data).unwrap().dynamic().unwrap();
        if cfg!(target_feature = "crt-static") {
            return;
        }
        assert_eq!(d.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert!(d.needed.iter().any(|n| n == "libc.so.6"), "{:?}", d.needed);
    }

    #[test]
    fn finds_sections_by_name() {
        let data = self_exe();
        let elf = Elf::parse(&data).unwrap();
        assert!(elf.section(".text").unwrap().is_some_and(|s| !s.is_empty()));
        assert!(elf.section(".no-such-section").unwrap().is_none());
    }

    #[test]
    fn rejects_non_elf_and_never_panics_on_truncation() {
        assert!(Elf::parse(b"hello").is_err());
        let data = self_exe();
        let mut cuts: Vec<usize> = (0..200).collect();
        cuts.extend((1..64).map(|i| data.len() * i / 64));
        for cut in cuts {
            if let Ok(elf) = Elf::parse(&data[..cut]) {
                let _ = elf.dynamic();
                let _ = elf.section(".modinfo");
                let _ = elf.has_note(b"Xen", 18);
            }
            let _ = strip_debug(&data[..cut]);
        }
    }

    #[test]
    fn never_panics_on_corrupted_headers() {
        let orig = self_exe();
        for i in 0..4096usize {
            let mut data = orig[..orig.len().min(1 << 20)].to_vec();
            let at = (i * 7919) % 128;
            data[at] = data[at].wrapping_add((i as u8) | 1);
            if let Ok(elf) = Elf::parse(&data) {
                let _ = elf.dynamic();
                let _ = elf.section(".modinfo");
                let _ = elf.has_note(b"Xen", 18);
            }
            let _ = strip_debug(&data);
        }
    }

    #[test]
    fn finds_notes_by_name_and_type() {
        let data = self_exe();
        let elf = Elf::parse(&data).unwrap();
        // NT_GNU_ABI_TAG, from the C runtime's .note.ABI-tag.
        assert!(elf.has_note(b"GNU", 1).unwrap());
        assert!(!elf.has_note(b"GNU", 0x7777).unwrap());
        assert!(!elf.has_note(b"Xen", 18).unwrap());
    }

    #[test]
    fn a_stripped_executable_still_runs() {
        let data = self_exe();
        assert!(
            Elf::parse(&data)
                .unwrap()
                .section(".debug_info")
                .unwrap()
                .is_some(),
            "test binaries carry debug information"
        );
        let stripped = strip_debug(&data).unwrap().unwrap();
        assert!(stripped.len() < data.len());
        let elf = Elf::parse(&stripped).unwrap();
        assert!(
            elf.section(".text").unwrap().is_none(),
            "no section headers"
        );
        assert_eq!(
            elf.dynamic().unwrap(),
            Elf::parse(&data).unwrap().dynamic().unwrap()
        );
        assert_eq!(strip_debug(&stripped).unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("stripped");
        std::fs::write(&exe, &stripped).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The test harness lists its tests and exits 0. (A fork in another
        // test thread may hold the file open for writing for a moment.)
        let mut tries = 0;
        let out = loop {
            match std::process::Command::new(&exe)
                .args(["--list", "a_stripped_executable_still_runs"])
                .output()
            {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.unwrap(),
            }
        };
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("a_stripped_executable_still_runs"));
    }
}
