//! Opens arbitrary bytes as a qcow2 image (through imago) and reads it,
//! and reads its backing-file header fields; only panics fail.
#![no_main]

mod common;

use b9::disk::qcow2;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(file) = common::InputFile::new(data, "qcow2") else {
        return;
    };
    let _ = qcow2::backing_of(&file.0);
    if let Ok(image) = qcow2::Qcow2Image::open(&file.0, false) {
        common::exercise(&image);
    }
});
