//! The progress bar of long byte copies (`b9 image convert`, `b9 push`,
//! `b9 pull`): bytes done of the total, rate and time left, on stderr only
//! when it is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `total` bytes labelled `label`; hidden when stderr is not a
/// terminal.
pub fn bar(total: u64, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar
}

/// The bar of one transfer whose size is known only once it starts: made on
/// the first [`Transfer::update`], cleared when dropped. Never shown when
/// `visible` is false (`-q`).
pub struct Transfer {
    label: String,
    visible: bool,
    bar: Option<ProgressBar>,
}

impl Transfer {
    /// A transfer labelled `label` (e.g. `pushing base-os`).
    pub fn new(label: impl Into<String>, visible: bool) -> Transfer {
        Transfer {
            label: label.into(),
            visible,
            bar: None,
        }
    }

    /// `done` of `total` bytes are transferred.
    pub fn update(&mut self, done: u64, total: u64) {
        let (label, visible) = (&self.label, self.visible);
        let bar = self.bar.get_or_insert_with(|| {
            if visible {
                bar(total, label)
            } else {
                ProgressBar::hidden()
            }
        });
        bar.set_length(total.max(done));
        bar.set_position(done);
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
