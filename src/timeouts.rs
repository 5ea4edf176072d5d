//! The time limit of one run, computed once from b9.conf
//! (`default_timeout_seconds` times `timeout_factor`) and handed to
//! everything that waits: downloads, VM runs and post-fix scripts.
//!
//! A `timeout_factor` of 0 (which the original's configuration accepts)
//! would make every limit zero; b9 warns and uses 1 (`docs/OUTPUTS.md`).

use std::time::Duration;

use crate::config::B9Config;

/// The time limits of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The limit of each download, VM run and post-fix script; `None` = none.
    pub limit: Option<Duration>,
}

impl Timeouts {
    /// The limits `config` asks for, and a warning when its factor is 0.
    pub fn from_config(config: &B9Config) -> (Timeouts, Option<String>) {
        let warning = (config.timeout_factor == Some(0)).then(|| {
            "timeout_factor: 0 would allow no time at all; b9 uses the factor 1 \
             (for downloads, VM runs and post-fix scripts)"
                .to_string()
        });
        let factor = config.timeout_factor.unwrap_or(1).max(1);
        let limit = config
            .default_timeout_seconds
            .map(|s| Duration::from_secs(s.saturating_mul(factor)));
        (Timeouts { limit }, warning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_zero_is_one_with_a_warning() {
        let mut c = B9Config {
            default_timeout_seconds: Some(10),
            timeout_factor: Some(0),
            ..B9Config::default()
        };
        let (t, w) = Timeouts::from_config(&c);
        assert_eq!(t.limit, Some(Duration::from_secs(10)));
        assert!(w.is_some());
        c.timeout_factor = Some(3);
        assert_eq!(
            Timeouts::from_config(&c),
            (
                Timeouts {
                    limit: Some(Duration::from_secs(30))
                },
                None
            )
        );
        c.default_timeout_seconds = None;
        assert_eq!(Timeouts::from_config(&c).0.limit, None);
    }
}
