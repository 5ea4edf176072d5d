//! Reads arbitrary bytes as a partitioned disk (MBR or GPT); only panics fail.
#![no_main]

mod common;

use b9::disk::partition::{self, PartitionReader};
use b9::disk::raw::RawReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(file) = common::InputFile::new(data, "raw") else {
        return;
    };
    let Ok(disk) = RawReader::open(&file.0) else {
        return;
    };
    if let Ok(Some((_, parts))) = partition::read_table(&disk, &file.0) {
        for p in parts.iter().take(8) {
            if let Ok(found) = partition::find(&disk, &file.0, p.number) {
                common::exercise(&PartitionReader::new(&disk, &found));
            }
        }
    }
    for n in [0, 1, 4, 5, 128, 129] {
        let _ = partition::find(&disk, &file.0, n);
    }
});
