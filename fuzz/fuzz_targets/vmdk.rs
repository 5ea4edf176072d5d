//! Opens arbitrary bytes as a VMDK and reads it; only panics fail.
#![no_main]

use std::io::Write;

use b9::disk::vmdk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vmdk::sniff(data);
    let Ok(mut file) = tempfile_in_tmp() else {
        return;
    };
    if file.1.write_all(data).is_err() {
        return;
    }
    let Ok(image) = vmdk::open(&file.0) else {
        let _ = std::fs::remove_file(&file.0);
        return;
    };
    let size = image.size();
    if let Ok(extents) = image.data_extents() {
        for e in extents.iter().take(8) {
            let mut buf = vec![0u8; e.len.min(1 << 20) as usize];
            let _ = image.read_at(&mut buf, e.start);
        }
    }
    let mut buf = vec![0u8; 200_000];
    for off in [0, size / 2, size.saturating_sub(1000), size + 10] {
        let _ = image.read_at(&mut buf, off);
    }
    let _ = image.read_at(&mut buf[..1], u64::MAX);
    let _ = std::fs::remove_file(&file.0);
});

/// A fresh file in the temp directory (no dependency on `tempfile`).
fn tempfile_in_tmp() -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "b9-fuzz-vmdk-{}-{}.vmdk",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}
