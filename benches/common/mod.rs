//! What every benchmark shares: timing a command, alternating runs of two
//! commands with their best and median times, the ratio line, and a sparse
//! input image.

#![allow(dead_code)]

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs a command and returns its wall time. Dirty pages of earlier runs are
/// written back first (untimed), so no run pays for another's write-back.
pub fn time(cmd: &mut Command) -> Result<Duration, String> {
    let _ = Command::new("sync").status();
    let start = Instant::now();
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let t = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(t)
}

/// The times of alternating runs of two commands `a` and `b`.
pub struct Rounds {
    a: Vec<Duration>,
    b: Vec<Duration>,
}

impl Rounds {
    /// The shortest time of each command.
    pub fn best(&self) -> (Duration, Duration) {
        (least(&self.a), least(&self.b))
    }

    /// The median time of each command.
    pub fn median(&self) -> (Duration, Duration) {
        (middle(&self.a), middle(&self.b))
    }
}

fn least(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or(Duration::MAX)
}

fn middle(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted
        .get(sorted.len() / 2)
        .copied()
        .unwrap_or(Duration::MAX)
}

/// `n` alternating runs of two commands (so both meet the same machine
/// state: page cache, write-back, other load).
pub fn alternate(
    n: usize,
    mut a: impl FnMut() -> Result<Duration, String>,
    mut b: impl FnMut() -> Result<Duration, String>,
) -> Result<Rounds, String> {
    let verbose = std::env::var_os("B9_BENCH_VERBOSE").is_some();
    let mut rounds = Rounds {
        a: Vec::with_capacity(n),
        b: Vec::with_capacity(n),
    };
    for _ in 0..n {
        let ta = a()?;
        let tb = b()?;
        if verbose {
            eprintln!(
                "  run: {:.3} s / {:.3} s",
                ta.as_secs_f64(),
                tb.as_secs_f64()
            );
        }
        rounds.a.push(ta);
        rounds.b.push(tb);
    }
    Ok(rounds)
}

/// Prints one comparison: the best times of b9 and `tool`, the ratio
/// b9/`tool` of the best and of the median times, and whether the best
/// ratio is within `target`.
pub fn report(name: &str, rounds: &Rounds, tool: &str, target: f64) {
    let (b9, other) = rounds.best();
    let (b9_median, other_median) = rounds.median();
    let ratio = b9.as_secs_f64() / other.as_secs_f64();
    let median = b9_median.as_secs_f64() / other_median.as_secs_f64();
    println!(
        "{name:24} b9 {:7.3} s   {tool} {:7.3} s   b9/{tool} = {ratio:.2} best, {median:.2} median ({})",
        b9.as_secs_f64(),
        other.as_secs_f64(),
        if ratio <= target { "met" } else { "MISSED" }
    );
}

/// A sparse file of `size` bytes with `data` bytes in 1 MiB pieces at
/// pseudo-random places.
pub fn make_sparse(path: &Path, size: u64, data: u64) -> Result<(), String> {
    let f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    f.set_len(size).map_err(|e| e.to_string())?;
    let piece = 1u64 << 20;
    let slots = size / piece;
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut buf = vec![0u8; piece as usize];
    let mut used = std::collections::BTreeSet::new();
    while (used.len() as u64) * piece < data {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let slot = seed % slots;
        if !used.insert(slot) {
            continue;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i as u64 ^ slot).wrapping_mul(2654435761) as u8 | 1;
        }
        f.write_all_at(&buf, slot * piece)
            .map_err(|e| e.to_string())?;
    }
    f.sync_all().map_err(|e| e.to_string())
}
