//! A `CopyOnWrite` build image on a remote host (docs/PROTOCOL.md#helper-remote):
//! a qcow2 overlay names its backing file by a local path the host does not
//! have. The backing image is uploaded into a run volume and the overlay is
//! uploaded naming that volume's path on the host; the local overlay names
//! its local backing file again right after the upload and after the
//! download (`qemu-img rebase -u` in effect, done on the header).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::disk::qcow2;
use crate::disk::Format;
use crate::vm::backend::VmError;

/// The qcow2 magic.
const MAGIC: &[u8; 4] = b"QFI\xfb";
/// The longest backing file name qcow2 allows.
const MAX_NAME: usize = 1023;

/// A build image's backing file: the name its header records and the file
/// that name resolves to here (relative names against the image's
/// directory). `None` for an image without one.
pub fn of(image: &Path, format: Format) -> Result<Option<(String, PathBuf)>, VmError> {
    if format != Format::Qcow2 {
        return Ok(None);
    }
    let bad = |e: crate::disk::DiskError| VmError::Start(e.to_string());
    let Some((name, _)) = qcow2::backing_of(image).map_err(bad)? else {
        return Ok(None);
    };
    let file = image.parent().unwrap_or(Path::new("/")).join(&name);
    if file.extension().is_some_and(|e| e == "qcow2")
        && qcow2::backing_of(&file).map_err(bad)?.is_some()
    {
        return Err(VmError::Start(format!(
            "{} is backed by {}, itself an overlay: a remote libvirt host takes one backing image",
            image.display(),
            file.display()
        )));
    }
    Ok(Some((name, file)))
}

/// Makes the qcow2 image `image` name `name` as its backing file, written
/// where its header keeps the name (inside the first cluster).
pub fn point(image: &Path, name: &str) -> Result<(), VmError> {
    let io = |op: &'static str| {
        move |source| VmError::Io {
            op,
            path: image.to_path_buf(),
            source,
        }
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(io("open"))?;
    let mut header = [0u8; 24];
    file.read_exact_at(&mut header, 0).map_err(io("read"))?;
    let be64 = |at: usize| {
        header[at..at + 8]
            .iter()
            .fold(0u64, |n, &b| n << 8 | u64::from(b))
    };
    let be32 = |at: usize| {
        header[at..at + 4]
            .iter()
            .fold(0u32, |n, &b| n << 8 | u32::from(b))
    };
    let (offset, cluster_bits) = (be64(8), be32(20));
    let fits = offset != 0
        && name.len() <= MAX_NAME
        && (9..=21).contains(&cluster_bits)
        && offset + name.len() as u64 <= 1 << cluster_bits;
    if &header[..4] != MAGIC || !fits {
        return Err(VmError::Start(format!(
            "cannot make {} name {name} as its backing file (not a qcow2 overlay with room \
             for the name in its first cluster)",
            image.display()
        )));
    }
    file.write_all_at(name.as_bytes(), offset)
        .map_err(io("write"))?;
    let size = u32::try_from(name.len()).unwrap_or(u32::MAX);
    file.write_all_at(&size.to_be_bytes(), 16)
        .map_err(io("write"))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::disk::qcow2::Qcow2Image;

    #[test]
    fn an_overlay_names_another_backing_file_and_back() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("base.raw");
        std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
        let overlay = d.path().join("cow.qcow2");
        Qcow2Image::create(&overlay, 1 << 20, Some((&base, "raw"))).unwrap();
        let (name, file) = of(&overlay, Format::Qcow2).unwrap().unwrap();
        assert_eq!(file, base);
        let remote = "/home/somebody/a/much/longer/pool/path/b9-0123abcd-4242-7";
        point(&overlay, remote).unwrap();
        let (now, format) = qcow2::backing_of(&overlay).unwrap().unwrap();
        assert_eq!((now.as_str(), format.as_deref()), (remote, Some("raw")));
        point(&overlay, &name).unwrap();
        assert_eq!(of(&overlay, Format::Qcow2).unwrap().unwrap().1, base);
        assert_eq!(of(&base, Format::Raw).unwrap(), None);
        assert!(point(&base, remote).is_err());
    }
}
