//! Cancellation. The caller owns a [`CancelToken`] and hands it to a long
//! operation (a build, an image command, a transfer); while the operation
//! runs, the places that can stop cleanly (VM runs, image converts and
//! creates, transfers, waiting for a farm host) poll [`cancelled`]: they
//! stop, clean up and fail with "interrupted".
//!
//! The library installs no signal handler by itself. The CLI's token is
//! [`CancelToken::on_signals`]: Ctrl-C or SIGTERM cancel it, and a second
//! one ends the process at once with status 130, as an impatient user
//! expects. Its handlers are installed when a long operation that stops
//! cleanly first begins ([`arm`]); until then a signal ends b9 the usual way (nothing is in flight
//! that needs cleaning up).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The exit status after a second signal (128 + SIGINT, as shells report).
const FORCED_EXIT: i32 = 130;

/// The flag Ctrl-C and SIGTERM set, once the handlers are installed.
static SIGNALLED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The tokens of the operations running now.
static ACTIVE: Mutex<Vec<CancelToken>> = Mutex::new(Vec::new());

/// A cancellation token: cheap to clone, every clone cancels the same
/// operations. The default token is never cancelled unless
/// [`cancel`](CancelToken::cancel) is called.
///
/// ```
/// let token = b9::CancelToken::new();
/// let other = token.clone();
/// other.cancel();
/// assert!(token.is_cancelled());
/// ```
#[derive(Clone, Debug, Default)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
    /// Ctrl-C and SIGTERM cancel it (handlers installed when watched).
    signals: bool,
}

impl CancelToken {
    /// A token only [`cancel`](CancelToken::cancel) cancels.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// A token Ctrl-C and SIGTERM cancel, as in the `b9` executable. The
    /// handlers are installed for the whole process when an operation given
    /// this token first begins a VM run, an image write or a transfer; from then on a second signal ends the process
    /// with status 130. All such tokens share one flag.
    pub fn on_signals() -> CancelToken {
        CancelToken {
            flag: Arc::clone(SIGNALLED.get_or_init(Arc::default)),
            signals: true,
        }
    }

    /// Cancels the operations watching this token.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

/// Installs the Ctrl-C and SIGTERM handlers that set `flag` (once).
fn install_handlers(flag: &Arc<AtomicBool>) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it sees the flag as the previous signal
            // left it: the second signal ends the process.
            let installed = signal_hook::flag::register_conditional_shutdown(
                sig,
                FORCED_EXIT,
                Arc::clone(flag),
            )
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(flag)));
            if let Err(e) = installed {
                tracing::warn!("cannot catch signal {sig}: {e}");
            }
        }
    });
}

/// `token` watched while the guard lives: [`cancelled`] reports it.
pub(crate) struct Watch(Arc<AtomicBool>);

/// Watches `token` until the guard is dropped.
pub(crate) fn watch(token: &CancelToken) -> Watch {
    active().push(token.clone());
    Watch(Arc::clone(&token.flag))
}

/// Called where a long operation that stops cleanly begins: installs the
/// signal handlers of a watched [`CancelToken::on_signals`] token.
pub(crate) fn arm() {
    if let Some(t) = active().iter().find(|t| t.signals) {
        install_handlers(&t.flag);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut active = active();
        if let Some(i) = active.iter().position(|t| Arc::ptr_eq(&t.flag, &self.0)) {
            active.swap_remove(i);
        }
    }
}

fn active() -> std::sync::MutexGuard<'static, Vec<CancelToken>> {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// True once a token of a running operation was cancelled (false where no
/// operation watches one, such as in the guest agent). Installs nothing.
pub(crate) fn cancelled() -> bool {
    active().iter().any(CancelToken::is_cancelled)
}
