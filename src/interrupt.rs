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

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The exit status after a second signal (128 + SIGINT, as shells report).
const FORCED_EXIT: i32 = 130;

/// The flag Ctrl-C and SIGTERM set, once the handlers are installed.
static SIGNALLED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

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

thread_local! {
    /// The token of the API call this thread works for.
    static CURRENT: RefCell<Option<CancelToken>> = const { RefCell::new(None) };
}

/// `token` watched on this thread while the guard lives; the token watched
/// before comes back when it is dropped.
pub(crate) struct Watch(Option<CancelToken>);

/// Watches `token` on this thread until the guard is dropped: [`cancelled`]
/// reports it here, and threads the library spawns for the work take it
/// along ([`current`], [`inherit`]).
pub(crate) fn watch(token: &CancelToken) -> Watch {
    Watch(CURRENT.with(|c| c.replace(Some(token.clone()))))
}

impl Drop for Watch {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// The token watched on this thread, for a thread spawned for the same work.
pub(crate) fn current() -> Option<CancelToken> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Watches `token` (from [`current`] on the spawning thread) on this one.
pub(crate) fn inherit(token: Option<&CancelToken>) -> Option<Watch> {
    token.map(watch)
}

/// Called where a long operation that stops cleanly begins: installs the
/// signal handlers if this thread watches a [`CancelToken::on_signals`]
/// token.
pub(crate) fn arm() {
    if let Some(t) = current().filter(|t| t.signals) {
        install_handlers(&t.flag);
    }
}

/// True once the token this thread watches was cancelled (false where none
/// is watched, such as in the guest agent). Installs nothing.
pub(crate) fn cancelled() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(CancelToken::is_cancelled))
}
