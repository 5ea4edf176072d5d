//! The kernel release of a kernel image: from an x86 bzImage's setup header
//! (`kernel_version` at 0x20E points to the version string, 0x200 bytes
//! on).

use std::io::Read;
use std::path::Path;

use super::ApplianceError;

/// How far into the image the version string may be looked for.
const HEAD: u64 = 64 << 10;

/// The release (`6.1.0-56-amd64`) of the bzImage at `path`, or `None` when
/// it is not a bzImage with a version string.
pub(super) fn release(path: &Path) -> Result<Option<String>, ApplianceError> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(HEAD).read_to_end(&mut head))
        .map_err(|source| ApplianceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(release_of(&head))
}

/// The release in the first bytes of a bzImage.
fn release_of(head: &[u8]) -> Option<String> {
    if head.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = head.get(0x20E..0x210)?;
    let ptr = usize::from(u16::from_le_bytes([ptr[0], ptr[1]])) + 0x200;
    let rest = head.get(ptr..)?;
    let end = rest.iter().position(|&b| b == 0 || b == b' ')?;
    let release = std::str::from_utf8(&rest[..end]).ok()?;
    (!release.is_empty()).then(|| release.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_string_through_the_setup_header() {
        let mut img = vec![0u8; 0x1000];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20E..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        let v = b"6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        img[0x500..0x500 + v.len()].copy_from_slice(v);
        assert_eq!(release_of(&img).as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(release_of(&img[..0x400]), None);
        img[0x202] = b'X';
        assert_eq!(release_of(&img), None);
        assert_eq!(release_of(b""), None);
    }
}
