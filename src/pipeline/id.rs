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
    let c = crate::civil::Civil::from_unix(unix_secs);
    format!(
        "{:04}-{:02}-{:02}-{:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
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
