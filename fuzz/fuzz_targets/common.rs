//! Shared by the fuzz targets: the input as a temporary file.

use std::io::Write;
use std::path::PathBuf;

/// A temporary file holding the input, removed when dropped.
pub struct InputFile(pub PathBuf);

impl InputFile {
    /// Writes `data` to a fresh file in the temp directory.
    pub fn new(data: &[u8], ext: &str) -> Option<InputFile> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "b9-fuzz-{}-{}.{ext}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = std::fs::File::create(&path).ok()?;
        file.write_all(data).ok()?;
        Some(InputFile(path))
    }
}

impl Drop for InputFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads a few ranges of an opened image; errors are fine, panics are not.
pub fn exercise(image: &dyn b9::disk::capability::ImageReader) {
    let size = image.size();
    if let Ok(extents) = image.data_extents() {
        for e in extents.iter().take(8) {
            let mut buf = vec![0u8; e.len.min(1 << 20) as usize];
            let _ = image.read_at(&mut buf, e.start);
        }
    }
    let mut buf = vec![0u8; 200_000];
    for off in [0, size / 2, size.saturating_sub(1000), size.saturating_add(10)] {
        let _ = image.read_at(&mut buf, off);
    }
    let _ = image.read_at(&mut buf[..1], u64::MAX);
}
