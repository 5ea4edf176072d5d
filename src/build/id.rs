//! Build ids and build dates.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// A stable 64-bit hash of a text (of the rendered configuration).
pub fn config_hash(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    digest
        .iter()
        .take(8)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// The build id: `%08X-%08X` of the config hash and a random number when
/// build directories are unique, `%08X` of the config hash alone when they
/// are predictable (`-u`).
pub fn build_id(config_hash: u64, unique: bool) -> String {
    if unique {
        // RandomState is seeded from the operating system's randomness.
        let mut h = RandomState::new().build_hasher();
        h.write_u128(now_nanos());
        format!("{config_hash:08X}-{:08X}", h.finish())
    } else {
        format!("{config_hash:08X}")
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A UNIX time as a build date: UTC, `YYYY-MM-DD-HH:MM:SS`.
pub fn build_date(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}-{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_the_original_format() {
        assert_eq!(build_date(0), "1970-01-01-00:00:00");
        assert_eq!(build_date(1_681_914_705), "2023-04-19-14:31:45");
        assert_eq!(build_date(951_782_400), "2000-02-29-00:00:00");
    }

    #[test]
    fn ids_are_predictable_only_with_u() {
        let h = config_hash("[global]\n");
        assert_eq!(build_id(h, false), build_id(h, false));
        assert_eq!(build_id(h, false), format!("{h:08X}"));
        let a = build_id(h, true);
        assert!(a.starts_with(&format!("{h:08X}-")));
        assert_ne!(a, build_id(h, true));
    }
}
