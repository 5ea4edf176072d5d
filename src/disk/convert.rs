//! Copying an image into a new one of any format: only allocated, non-zero
//! data is read and written, so the output stays sparse; reading and writing
//! overlap on two threads; a progress bar shows on a terminal.

use std::io::IsTerminal;
use std::sync::mpsc::sync_channel;

use crate::disk::error::DiskError;
use crate::disk::image::{Extent, ImageReader, ImageWriter};

/// Unit of zero detection: a run of this many zero bytes is not written.
pub const GRAIN: u64 = 64 * 1024;

/// Bytes read per request.
const CHUNK: u64 = 2 * 1024 * 1024;

/// Chunks in flight between the reader and the writer thread.
const QUEUE: usize = 8;

/// What a copy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Bytes read from the source (its allocated data).
    pub read: u64,
    /// Bytes written to the destination (the non-zero part of it).
    pub written: u64,
}

/// Copies the first `size` bytes of `reader` into `writer` (which must have
/// been created with a virtual size of at least `size`), then finishes it.
pub fn copy(
    reader: &dyn ImageReader,
    writer: Box<dyn ImageWriter>,
    size: u64,
    label: &str,
) -> Result<CopyStats, DiskError> {
    let extents: Vec<Extent> = reader
        .data_extents()?
        .into_iter()
        .filter_map(|e| {
            let end = (e.start + e.len).min(size);
            (end > e.start).then(|| Extent {
                start: e.start,
                len: end - e.start,
            })
        })
        .collect();
    let total: u64 = extents.iter().map(|e| e.len).sum();
    let bar = progress_bar(total, label);
    let mut writer = writer;
    let (tx, rx) = sync_channel::<(u64, Vec<u8>)>(QUEUE);
    let mut stats = CopyStats::default();
    let producer_bar = bar.clone();
    let read_result = std::thread::scope(|scope| {
        let producer = scope.spawn(move || -> Result<u64, DiskError> {
            let mut read = 0;
            for e in &extents {
                let mut pos = e.start;
                let end = e.start + e.len;
                while pos < end {
                    // Chunks end on grain boundaries so zero runs line up.
                    let chunk_end = ((pos / GRAIN + CHUNK / GRAIN) * GRAIN).min(end);
                    let mut buf = vec![0u8; (chunk_end - pos) as usize];
                    reader.read_at(&mut buf, pos)?;
                    read += buf.len() as u64;
                    producer_bar.inc(buf.len() as u64);
                    for (offset, data) in non_zero_runs(pos, buf) {
                        if tx.send((offset, data)).is_err() {
                            return Ok(read);
                        }
                    }
                    pos = chunk_end;
                }
            }
            Ok(read)
        });
        let mut write_error = None;
        for (offset, data) in rx {
            if write_error.is_some() {
                continue;
            }
            match writer.write_at(offset, &data) {
                Ok(()) => stats.written += data.len() as u64,
                Err(e) => write_error = Some(e),
            }
        }
        let read = producer.join().unwrap_or_else(|_| {
            Err(DiskError::Invalid(
                "the image reader thread panicked".into(),
            ))
        });
        match write_error {
            Some(e) => Err(e),
            None => read,
        }
    });
    stats.read = read_result?;
    writer.finish()?;
    bar.finish_and_clear();
    Ok(stats)
}

/// Splits a chunk read at `offset` into its non-zero runs, grain by grain.
fn non_zero_runs(offset: u64, buf: Vec<u8>) -> Vec<(u64, Vec<u8>)> {
    let grain = GRAIN as usize;
    let first_boundary = ((GRAIN - offset % GRAIN) % GRAIN) as usize;
    let mut cuts = vec![0];
    let mut at = if first_boundary == 0 {
        grain
    } else {
        first_boundary
    };
    while at < buf.len() {
        cuts.push(at);
        at += grain;
    }
    cuts.push(buf.len());
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        if is_zero(&buf[a..b]) {
            continue;
        }
        match runs.last_mut() {
            Some(last) if last.1 == a => last.1 = b,
            _ => runs.push((a, b)),
        }
    }
    if runs.len() == 1 && runs[0] == (0, buf.len()) {
        return vec![(offset, buf)];
    }
    runs.into_iter()
        .map(|(a, b)| (offset + a as u64, buf[a..b].to_vec()))
        .collect()
}

/// True if every byte is zero.
pub fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(16);
    let mut acc = 0u128;
    for c in chunks.by_ref() {
        let mut word = [0u8; 16];
        word.copy_from_slice(c);
        acc |= u128::from_ne_bytes(word);
    }
    acc == 0 && chunks.remainder().iter().all(|&x| x == 0)
}

fn progress_bar(total: u64, label: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_grains_are_skipped_and_runs_merged() {
        let mut buf = vec![0u8; 4 * GRAIN as usize];
        buf[10] = 1;
        buf[GRAIN as usize + 5] = 2;
        buf[3 * GRAIN as usize] = 3;
        let runs = non_zero_runs(GRAIN, buf);
        let spans: Vec<(u64, usize)> = runs.iter().map(|(o, d)| (*o, d.len())).collect();
        assert_eq!(
            spans,
            vec![(GRAIN, 2 * GRAIN as usize), (4 * GRAIN, GRAIN as usize)]
        );
    }

    #[test]
    fn unaligned_start_cuts_on_grain_boundaries() {
        let mut buf = vec![0u8; GRAIN as usize];
        buf[GRAIN as usize - 1] = 9;
        let runs = non_zero_runs(100, buf);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].0, GRAIN);
        assert_eq!(runs[0].1.len(), 100);
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; 1000]));
        let mut b = [0u8; 1000];
        b[999] = 1;
        assert!(!is_zero(&b));
        b[999] = 0;
        b[3] = 1;
        assert!(!is_zero(&b));
    }
}
