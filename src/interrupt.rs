//! Ctrl-C and SIGTERM. The first one sets a flag that long operations (a VM
//! run, a transfer) watch: they stop, clean up and fail with "interrupted".
//! A second one ends b9 at once with status 130, as an impatient user
//! expects. The handlers are installed on first use; until then a signal
//! ends b9 the usual way (nothing is in flight that needs cleaning up).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The exit status after a second signal (128 + SIGINT, as shells report).
const FORCED_EXIT: i32 = 130;

/// The flag, once the handlers are installed.
static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The flag, with the handlers installed.
pub fn flag() -> &'static Arc<AtomicBool> {
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it sees the flag as the previous signal
            // left it: the second signal ends the process.
            let installed = signal_hook::flag::register_conditional_shutdown(
                sig,
                FORCED_EXIT,
                Arc::clone(&flag),
            )
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&flag)));
            if let Err(e) = installed {
                tracing::warn!("cannot catch signal {sig}: {e}");
            }
        }
        flag
    })
}

/// True once Ctrl-C or SIGTERM was received (installs the handlers).
pub fn requested() -> bool {
    flag().load(Ordering::Relaxed)
}

/// True once Ctrl-C or SIGTERM was received, if the handlers are installed;
/// false without installing them (for code that also runs where nobody
/// watches signals, such as the guest agent).
pub fn pending() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::Relaxed))
}
