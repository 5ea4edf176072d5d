//! The kernel the appliance boots: the bzImage's own uncompressed kernel
//! where it can be booted directly.
//!
//! A bzImage decompresses itself in the guest before the kernel runs. Under
//! TCG that is slow: the XZ-compressed Debian kernel spends about 4 s of a
//! 9 s appliance start in its decompressor. An x86 kernel built with
//! `CONFIG_PVH` is, uncompressed, an ELF file with a PVH entry point (the
//! `XEN_ELFNOTE_PHYS32_ENTRY` note) that QEMU (4.0 and later) boots
//! directly from `-kernel`, with the same command line and initramfs. So
//! b9 decompresses the bzImage's payload once, on the host, and keeps the
//! ELF file next to the initramfs as `vmlinux-<hash of the bzImage>`.
//!
//! Payloads compressed with XZ, zstd or gzip are handled; any other
//! compression, or a kernel without a PVH entry point, boots as the
//! bzImage, as before (remembered in a `vmlinux-<hash>.none` file so the
//! next run does not try again). A kernel that is already an ELF file is
//! booted as it is.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::elf::Elf;
use super::{write_atomically, xz, ApplianceError};

/// `XEN_ELFNOTE_PHYS32_ENTRY`, the PVH entry point, in a note named "Xen".
const PVH_NOTE: u32 = 18;

/// The kernel file to boot for the bzImage `kernel`: a cached uncompressed
/// kernel in `cache_dir`, or `kernel` itself.
pub(super) fn bootable(kernel: &Path, cache_dir: &Path) -> Result<PathBuf, ApplianceError> {
    let image = std::fs::read(kernel).map_err(|source| ApplianceError::Read {
        path: kernel.to_path_buf(),
        source,
    })?;
    if image.starts_with(b"\x7fELF") {
        return Ok(kernel.to_path_buf());
    }
    let digest = Sha256::digest(&image);
    let key: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let target = cache_dir.join(format!("vmlinux-{key}"));
    let none = cache_dir.join(format!("vmlinux-{key}.none"));
    if target.is_file() {
        return Ok(target);
    }
    if none.is_file() {
        return Ok(kernel.to_path_buf());
    }
    let started = std::time::Instant::now();
    match extract(&image) {
        Ok(elf) => {
            write_atomically(cache_dir, &target, |out| out.write_all(&elf))?;
            tracing::debug!(
                vmlinux = %target.display(),
                bytes = elf.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "extracted the uncompressed kernel"
            );
            Ok(target)
        }
        Err(why) => {
            tracing::debug!("booting {} as it is: {why}", kernel.display());
            write_atomically(cache_dir, &none, |out| writeln!(out, "{why}"))?;
            Ok(kernel.to_path_buf())
        }
    }
}

/// The uncompressed kernel of a bzImage, if it has a PVH entry point.
pub(super) fn extract(image: &[u8]) -> Result<Vec<u8>, String> {
    let payload = payload(image)?;
    // Every payload ends with the uncompressed size (32 bits).
    let (packed, size) = payload
        .split_last_chunk::<4>()
        .ok_or("the payload is empty")?;
    let size = u32::from_le_bytes(*size) as usize;
    let capacity = size.min(256 << 20);
    let elf = if payload.starts_with(xz::MAGIC) {
        xz::decompress(packed)?
    } else if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut out = Vec::with_capacity(capacity);
        let mut input = packed;
        ruzstd::decoding::StreamingDecoder::new(&mut input)
            .map_err(|e| e.to_string())?
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())?;
        out
    } else if payload.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(capacity);
        flate2::read::GzDecoder::new(packed)
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())?;
        out
    } else {
        let magic: Vec<String> = payload.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(format!(
            "its payload is compressed with a method b9 does not decompress (magic {})",
            magic.join(" ")
        ));
    };
    if elf.len() != size {
        return Err(format!(
            "the payload decompressed to {} bytes, not the {size} it announces",
            elf.len()
        ));
    }
    let parsed = Elf::parse(&elf).map_err(|e| format!("the payload is not ELF: {e}"))?;
    if !parsed
        .has_note(b"Xen", PVH_NOTE)
        .map_err(|e| format!("the payload's notes: {e}"))?
    {
        return Err("the kernel has no PVH entry point (CONFIG_PVH)".into());
    }
    Ok(elf)
}

/// The compressed kernel inside a bzImage (boot protocol 2.08 and later:
/// `payload_offset` and `payload_length` in the setup header).
fn payload(image: &[u8]) -> Result<&[u8], String> {
    let u16_at = |at: usize| {
        image
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        image
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return Err("not a bzImage".into());
    }
    let version = u16_at(0x206).ok_or("truncated setup header")?;
    if version < 0x208 {
        return Err(format!("boot protocol {version:#x} is older than 2.08"));
    }
    let setup_sects = match image.get(0x1f1).ok_or("truncated setup header")? {
        0 => 4,
        n => usize::from(*n),
    };
    let offset = u32_at(0x248).ok_or("truncated setup header")?;
    let length = u32_at(0x24c).ok_or("truncated setup header")?;
    let start = (setup_sects + 1) * 512 + offset;
    image
        .get(start..start + length)
        .ok_or_else(|| "the payload lies past the end of the image".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A bzImage-like file: the setup header fields `payload` reads, then
    /// `payload` with its uncompressed size appended.
    fn bzimage(payload: &[u8], size: usize) -> Vec<u8> {
        let mut img = vec![0u8; 5 * 512];
        img[0x1f1] = 4;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        img[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(payload.len() as u32 + 4).to_le_bytes());
        img.extend_from_slice(&[0; 16]);
        img.extend_from_slice(payload);
        img.extend_from_slice(&(size as u32).to_le_bytes());
        img
    }

    #[test]
    fn finds_the_payload_through_the_setup_header() {
        let img = bzimage(b"\x1f\x8bpayload", 1);
        let p = payload(&img).unwrap();
        assert_eq!(p, b"\x1f\x8bpayload\x01\0\0\0");
        assert!(payload(&img[..img.len() - 1]).is_err());
        assert!(payload(b"short").is_err());
        let mut old = img.clone();
        old[0x206..0x208].copy_from_slice(&0x206u16.to_le_bytes());
        assert!(payload(&old).unwrap_err().contains("older"));
    }

    #[test]
    fn a_payload_without_a_pvh_note_or_of_unknown_compression_is_refused() {
        // gzip of this test binary: ELF, but no PVH note.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let exe = &exe[..exe.len().min(1 << 20)];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(exe).unwrap();
        let img = bzimage(&gz.finish().unwrap(), exe.len());
        let err = extract(&img).unwrap_err();
        assert!(err.contains("ELF") || err.contains("PVH"), "{err}");
        let err = extract(&bzimage(b"\x02\x21\x4c\x18lz4", 3)).unwrap_err();
        assert!(err.contains("02 21 4c 18"), "{err}");
        // A wrong announced size is caught.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"abc").unwrap();
        let err = extract(&bzimage(&gz.finish().unwrap(), 4)).unwrap_err();
        assert!(err.contains("not the 4"), "{err}");
    }
}
