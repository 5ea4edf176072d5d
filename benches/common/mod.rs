//! What every benchmark shares: timing a command, and the best of
//! alternating runs of two commands.

#![allow(dead_code)]

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

/// The best of `n` alternating runs of two commands (so both meet the same
/// machine state: page cache, write-back, other load).
pub fn best_pair(
    n: usize,
    mut a: impl FnMut() -> Result<Duration, String>,
    mut b: impl FnMut() -> Result<Duration, String>,
) -> Result<(Duration, Duration), String> {
    let verbose = std::env::var_os("B9_BENCH_VERBOSE").is_some();
    let (mut best_a, mut best_b) = (Duration::MAX, Duration::MAX);
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
        best_a = best_a.min(ta);
        best_b = best_b.min(tb);
    }
    Ok((best_a, best_b))
}
