//! The text descriptor: written embedded in every extent b9 makes (in the
//! form `qemu-img create -f vmdk -o adapter_type=lsilogic` writes it), and
//! parsed, defensively, from embedded descriptors and descriptor files.

/// Sectors per cylinder in the geometry qemu records for SCSI adapters
/// (`lsilogic`, `buslogic`, `legacyESX`): 255 heads × 63 sectors.
const SECTORS_PER_CYLINDER: u64 = 255 * 63;

/// Largest descriptor b9 reads, in bytes.
pub(crate) const MAX_DESCRIPTOR: u64 = 1 << 20;

/// Most extents a descriptor file may list (a 8 TiB twoGbMaxExtent disk has 4096).
pub(crate) const MAX_EXTENTS: usize = 8192;

/// The descriptor text of a single-extent sparse disk, as qemu writes it for
/// `adapter_type=lsilogic`.
pub(crate) fn render(create_type: &str, sectors: u64, file_name: &str, cid: u32) -> String {
    let cylinders = sectors / SECTORS_PER_CYLINDER;
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"{create_type}\"\n\
         \n\
         # Extent description\n\
         RW {sectors} SPARSE \"{file_name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.virtualHWVersion = \"4\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"255\"\n\
         ddb.geometry.sectors = \"63\"\n\
         ddb.adapterType = \"lsilogic\"\n\
         ddb.toolsVersion = \"2147483647\"\n"
    )
}

/// Access of an extent line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// `RW`
    ReadWrite,
    /// `RDONLY`
    ReadOnly,
    /// `NOACCESS`
    None,
}

/// Type of an extent line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExtentType {
    /// `FLAT` or `VMFS`: plain bytes in a file at an offset.
    Flat,
    /// `SPARSE`: a hosted sparse extent (`KDMV`).
    Sparse,
    /// `ZERO`: reads as zeros, no file.
    Zero,
}

/// One parsed extent line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExtentLine {
    /// Access mode.
    pub access: Access,
    /// Size in sectors.
    pub sectors: u64,
    /// Type.
    pub kind: ExtentType,
    /// File name as written (empty for ZERO).
    pub file: String,
    /// Offset in sectors into the file (FLAT only).
    pub offset: u64,
}

/// A parsed descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Descriptor {
    /// `createType`, unquoted.
    pub create_type: Option<String>,
    /// `parentCID` (lowercased).
    pub parent_cid: Option<String>,
    /// `parentFileNameHint`, if any.
    pub parent_hint: Option<String>,
    /// The extent lines in order.
    pub extents: Vec<ExtentLine>,
}

/// Why a descriptor cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Malformed text.
    Bad(String),
    /// Well-formed, but names something b9 does not read.
    Unsupported(String),
}

impl From<&str> for ParseError {
    fn from(s: &str) -> Self {
        ParseError::Bad(s.to_string())
    }
}

/// Parses descriptor text (up to the first NUL). Errors name the problem.
pub(crate) fn parse(bytes: &[u8]) -> Result<Descriptor, ParseError> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text = std::str::from_utf8(&bytes[..end])
        .map_err(|e| ParseError::Bad(format!("not UTF-8 text (at byte {})", e.valid_up_to())))?;
    let mut d = Descriptor::default();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_ascii_whitespace().next().unwrap_or("");
        if matches!(first, "RW" | "RDONLY" | "NOACCESS") {
            if d.extents.len() >= MAX_EXTENTS {
                return Err(ParseError::Unsupported(format!(
                    "more than {MAX_EXTENTS} extents"
                )));
            }
            d.extents.push(parse_extent(line).map_err(|e| match e {
                ParseError::Bad(m) => ParseError::Bad(format!("line {}: {m}", n + 1)),
                ParseError::Unsupported(m) => {
                    ParseError::Unsupported(format!("line {}: {m}", n + 1))
                }
            })?);
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = unquote(v.trim());
            match k.trim() {
                "createType" => d.create_type = Some(v.to_string()),
                "parentCID" => d.parent_cid = Some(v.to_ascii_lowercase()),
                "parentFileNameHint" => d.parent_hint = Some(v.to_string()),
                _ => {}
            }
        }
    }
    Ok(d)
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

/// `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`
fn parse_extent(line: &str) -> Result<ExtentLine, ParseError> {
    let mut rest = line;
    let mut word = || -> Option<&str> {
        let t = rest.trim_start();
        let end = t.find(char::is_whitespace).unwrap_or(t.len());
        let (w, r) = t.split_at(end);
        rest = r;
        if w.is_empty() {
            None
        } else {
            Some(w)
        }
    };
    let access = match word() {
        Some("RW") => Access::ReadWrite,
        Some("RDONLY") => Access::ReadOnly,
        _ => Access::None,
    };
    let sectors = word()
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or("extent size is not a number")?;
    let kind = match word() {
        Some("FLAT") | Some("VMFS") => ExtentType::Flat,
        Some("SPARSE") => ExtentType::Sparse,
        Some("ZERO") => ExtentType::Zero,
        Some(other) => {
            return Err(ParseError::Unsupported(format!(
                "extent type {other:?} is not supported"
            )))
        }
        None => return Err("extent line has no type".into()),
    };
    let mut ext = ExtentLine {
        access,
        sectors,
        kind,
        file: String::new(),
        offset: 0,
    };
    if kind == ExtentType::Zero {
        return Ok(ext);
    }
    let t = rest.trim_start();
    let inner = t
        .strip_prefix('"')
        .ok_or("extent file name is not quoted")?;
    let close = inner
        .find('"')
        .ok_or("extent file name has no closing quote")?;
    ext.file = inner[..close].to_string();
    let after = inner[close + 1..].trim();
    if !after.is_empty() {
        ext.offset = after
            .split_ascii_whitespace()
            .next()
            .and_then(|w| w.parse::<u64>().ok())
            .ok_or("extent offset is not a number")?;
    }
    if ext.file.is_empty() {
        return Err("extent file name is empty".into());
    }
    Ok(ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_qemu() {
        let d = render("monolithicSparse", 20480, "s.vmdk", 0x1887e112);
        assert_eq!(
            d,
            "# Disk DescriptorFile\nversion=1\nCID=1887e112\nparentCID=ffffffff\n\
             createType=\"monolithicSparse\"\n\n# Extent description\nRW 20480 SPARSE \"s.vmdk\"\n\n\
             # The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n\
             ddb.geometry.cylinders = \"1\"\nddb.geometry.heads = \"255\"\n\
             ddb.geometry.sectors = \"63\"\nddb.adapterType = \"lsilogic\"\n\
             ddb.toolsVersion = \"2147483647\"\n"
        );
        // qemu: 1 TiB gives 133674 cylinders.
        assert!(render("x", (1u64 << 40) / 512, "a", 0).contains("cylinders = \"133674\""));
    }

    #[test]
    fn parses_own_output_and_flat() {
        let d = parse(render("streamOptimized", 2048, "a b.vmdk", 1).as_bytes()).unwrap();
        assert_eq!(d.create_type.as_deref(), Some("streamOptimized"));
        assert_eq!(d.parent_cid.as_deref(), Some("ffffffff"));
        assert_eq!(
            d.extents,
            vec![ExtentLine {
                access: Access::ReadWrite,
                sectors: 2048,
                kind: ExtentType::Sparse,
                file: "a b.vmdk".into(),
                offset: 0
            }]
        );
        let d = parse(
            b"# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRDONLY 100 FLAT \"x-flat.vmdk\" 7\nRW 5 ZERO\n\0junk",
        )
        .unwrap();
        assert_eq!(d.extents.len(), 2);
        assert_eq!(d.extents[0].offset, 7);
        assert_eq!(d.extents[0].access, Access::ReadOnly);
        assert_eq!(d.extents[1].kind, ExtentType::Zero);
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(parse(b"RW x SPARSE \"a\"").is_err());
        assert!(parse(b"RW 1 SESPARSE \"a\"").is_err());
        assert!(parse(b"RW 1 FLAT a").is_err());
        assert!(parse(b"RW 1 FLAT \"a").is_err());
        assert!(parse(b"RW 1 FLAT \"a\" z").is_err());
        assert!(parse(b"RW 1 FLAT \"\"").is_err());
        assert!(parse(b"RW").is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
    }
}
