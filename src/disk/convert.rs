//! Copying an image into a new one of any format: only allocated, non-zero
//! data is read and written, so the output stays sparse; reading and writing
//! overlap on two threads; a progress bar shows on a terminal.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::disk::capability::{Extent, ImageReader, ImageWriter};
use crate::disk::error::DiskError;

/// Unit of zero detection: a run of this many zero bytes is not written.
pub const GRAIN: u64 = 64 * 1024;

/// Bytes read per request.
const CHUNK: u64 = 1024 * 1024;

/// Chunks in flight between the reader and the writer thread. Few and small
/// buffers stay in the CPU caches between the read and the write (measured:
/// 1 MiB x 2 is the fastest here).
const QUEUE: usize = 2;

/// What a copy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Bytes read from the source (its allocated data).
    pub read: u64,
    /// Bytes written to the destination (the non-zero part of it).
    pub written: u64,
}

/// A chunk read from the source: where it starts, its buffer, and the
/// byte ranges of the buffer that hold non-zero grains.
struct Chunk {
    offset: u64,
    buf: Vec<u8>,
    runs: Vec<(usize, usize)>,
}

/// Copies the first `size` bytes of `reader` into `writer` (which must have
/// been created with a virtual size of at least `size`), then finishes it.
///
/// A reader thread fills a small pool of reusable buffers and finds their
/// non-zero runs; this thread writes them in order and hands the buffers back.
/// An error on either thread ends both; the first Ctrl-C or SIGTERM ends the
/// copy with [`DiskError::Interrupted`] (the caller removes the output).
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
    let bar = crate::progress::bar(total, label);
    let mut writer = writer;
    let (full_tx, full_rx) = sync_channel::<Chunk>(QUEUE);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(QUEUE + 2);
    for _ in 0..QUEUE + 2 {
        // Cannot fail: the channel has room for every buffer.
        let _ = free_tx.send(Vec::with_capacity(CHUNK as usize));
    }
    let producer_bar = bar.clone();
    // The first Ctrl-C/SIGTERM (where the caller's token watches for them)
    // stops the copy.
    crate::interrupt::arm();
    let cancel = crate::interrupt::current();
    let result = std::thread::scope(|scope| {
        let producer = scope.spawn(move || -> Result<u64, DiskError> {
            let _watch = crate::interrupt::inherit(cancel.as_ref());
            let mut read = 0;
            for e in &extents {
                let mut pos = e.start;
                let end = e.start + e.len;
                while pos < end {
                    if crate::interrupt::cancelled() {
                        return Err(DiskError::Interrupted);
                    }
                    // Chunks end on grain boundaries so zero runs line up.
                    let chunk_end = ((pos / GRAIN + CHUNK / GRAIN) * GRAIN).min(end);
                    // The writer is gone (it failed): stop, it reports why.
                    let Ok(mut buf) = free_rx.recv() else {
                        return Ok(read);
                    };
                    buf.resize((chunk_end - pos) as usize, 0);
                    reader.read_at(&mut buf, pos)?;
                    read += buf.len() as u64;
                    producer_bar.inc(buf.len() as u64);
                    let runs = non_zero_runs(pos, &buf);
                    let chunk = Chunk {
                        offset: pos,
                        buf,
                        runs,
                    };
                    if full_tx.send(chunk).is_err() {
                        return Ok(read);
                    }
                    pos = chunk_end;
                }
            }
            Ok(read)
        });
        let written = write_chunks(full_rx, free_tx, writer.as_mut());
        let read = producer.join().unwrap_or_else(|_| {
            Err(DiskError::Invalid(
                "the image reader thread panicked".into(),
            ))
        });
        // A side the other one stopped returns Ok, so an error is the cause;
        // the reader's (an interruption, a read error) is reported first.
        Ok::<_, DiskError>(CopyStats {
            read: read?,
            written: written?,
        })
    });
    bar.finish_and_clear();
    let stats = result?;
    writer.finish()?;
    Ok(stats)
}

/// The writer's side of [`copy`]: writes the non-zero runs of every chunk in
/// order and hands the buffers back. On the first error it returns, and
/// dropping both channel ends stops the reader thread wherever it waits.
fn write_chunks(
    full: Receiver<Chunk>,
    free: SyncSender<Vec<u8>>,
    writer: &mut dyn ImageWriter,
) -> Result<u64, DiskError> {
    let mut written = 0;
    for chunk in full.iter() {
        for &(a, b) in &chunk.runs {
            writer.write_at(chunk.offset + a as u64, &chunk.buf[a..b])?;
            written += (b - a) as u64;
        }
        // Cannot fail while the reader waits for buffers.
        let _ = free.send(chunk.buf);
    }
    Ok(written)
}

/// The ranges of a chunk read at `offset` that hold non-zero grains, merged.
fn non_zero_runs(offset: u64, buf: &[u8]) -> Vec<(usize, usize)> {
    let grain = GRAIN as usize;
    let first_boundary = ((GRAIN - offset % GRAIN) % GRAIN) as usize;
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut a = 0;
    let mut b = if first_boundary == 0 {
        grain
    } else {
        first_boundary
    };
    while a < buf.len() {
        let end = b.min(buf.len());
        if !is_zero(&buf[a..end]) {
            match runs.last_mut() {
                Some(last) if last.1 == a => last.1 = end,
                _ => runs.push((a, end)),
            }
        }
        a = end;
        b = end + grain;
    }
    runs
}

/// True if every byte is zero. Looks at the first bytes first (data rarely
/// starts with a run of zeros) and stops at the first non-zero block.
pub fn is_zero(b: &[u8]) -> bool {
    let head = b.len().min(64);
    if b[..head].iter().any(|&x| x != 0) {
        return false;
    }
    b[head..].chunks(4096).all(|block| {
        let mut words = block.chunks_exact(16);
        let mut acc = 0u128;
        for w in words.by_ref() {
            let mut word = [0u8; 16];
            word.copy_from_slice(w);
            acc |= u128::from_ne_bytes(word);
        }
        acc == 0 && words.remainder().iter().all(|&x| x == 0)
    })
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
        let g = GRAIN as usize;
        assert_eq!(non_zero_runs(GRAIN, &buf), vec![(0, 2 * g), (3 * g, 4 * g)]);
    }

    #[test]
    fn unaligned_start_cuts_on_grain_boundaries() {
        let mut buf = vec![0u8; GRAIN as usize];
        buf[GRAIN as usize - 1] = 9;
        let g = GRAIN as usize;
        assert_eq!(non_zero_runs(100, &buf), vec![(g - 100, g)]);
    }

    /// A disk of `.0` bytes, all data; reads at offset `.1` and beyond fail.
    struct Ones(u64, u64);

    impl ImageReader for Ones {
        fn size(&self) -> u64 {
            self.0
        }

        fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
            if offset >= self.1 {
                return Err(DiskError::Invalid("read failed".into()));
            }
            buf.fill(1);
            Ok(())
        }

        fn data_extents(&self) -> Result<Vec<Extent>, DiskError> {
            Ok(vec![Extent {
                start: 0,
                len: self.0,
            }])
        }
    }

    /// A writer whose disk is full after `.0` writes.
    struct Full(usize);

    impl ImageWriter for Full {
        fn write_at(&mut self, _: u64, _: &[u8]) -> Result<(), DiskError> {
            if self.0 == 0 {
                return Err(DiskError::Io {
                    op: "cannot write",
                    path: "out".into(),
                    source: std::io::Error::from_raw_os_error(28),
                });
            }
            self.0 -= 1;
            Ok(())
        }

        fn finish(self: Box<Self>) -> Result<(), DiskError> {
            Ok(())
        }
    }

    /// Runs a copy on a thread; its result, or a panic if it hangs.
    fn copy_within_a_minute(reader: Ones, writer: Full) -> Result<CopyStats, DiskError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(copy(&reader, Box::new(writer), reader.0, "t"));
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("the copy hung")
    }

    #[test]
    fn an_error_on_either_side_ends_the_copy() {
        let size = 64 * CHUNK;
        let e = copy_within_a_minute(Ones(size, size), Full(3)).unwrap_err();
        assert!(e.to_string().contains("No space left on device"), "{e}");
        let e = copy_within_a_minute(Ones(size, 5 * CHUNK), Full(usize::MAX)).unwrap_err();
        assert_eq!(e.to_string(), "read failed");
        let stats = copy_within_a_minute(Ones(size, size), Full(usize::MAX)).unwrap();
        assert_eq!((stats.read, stats.written), (size, size));
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
