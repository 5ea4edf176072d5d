//! Opens arbitrary bytes as a VMDK and reads it; only panics fail.
#![no_main]

mod common;

use b9::disk::vmdk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vmdk::sniff(data);
    let Some(file) = common::InputFile::new(data, "vmdk") else {
        return;
    };
    if let Ok(image) = vmdk::open(&file.0) {
        common::exercise(image.as_ref());
    }
});
