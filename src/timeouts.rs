//! The time limit of one run, computed once by the CLI from b9.conf
//! (`default_timeout_seconds` times `timeout_factor`) and handed to
//! everything that waits: downloads, VM runs and post-fix scripts.
//!
//! A `timeout_factor` of 0 (which the original's configuration accepts)
//! would make every limit zero; b9 warns and uses 1 (`docs/OUTPUTS.md`).

use std::time::Duration;

/// The time limits of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The limit of each download, VM run and post-fix script; `None` = none.
    pub limit: Option<Duration>,
}

impl Timeouts {
    /// The limits b9.conf's `default_timeout_seconds` and `timeout_factor`
    /// ask for, and a warning when the factor is 0.
    pub fn new(seconds: Option<u64>, factor: Option<u64>) -> (Timeouts, Option<String>) {
        let warning = (factor == Some(0)).then(|| {
            "timeout_factor: 0 would allow no time at all; b9 uses the factor 1 \
             (for downloads, VM runs and post-fix scripts)"
                .to_string()
        });
        let factor = factor.unwrap_or(1).max(1);
        let limit = seconds.map(|s| Duration::from_secs(s.saturating_mul(factor)));
        (Timeouts { limit }, warning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_zero_is_one_with_a_warning() {
        let (t, w) = Timeouts::new(Some(10), Some(0));
        assert_eq!(t.limit, Some(Duration::from_secs(10)));
        assert!(w.is_some());
        assert_eq!(
            Timeouts::new(Some(10), Some(3)),
            (
                Timeouts {
                    limit: Some(Duration::from_secs(30))
                },
                None
            )
        );
        assert_eq!(Timeouts::new(None, Some(3)).0.limit, None);
    }
}
