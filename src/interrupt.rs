//! Ctrl-C during work that leaves files behind (a block cache's build): while a [`catch`]
//! guard lives, SIGINT only sets a flag the work checks ([`requested`]), so it can stop and
//! remove its temporary files; the guard's drop restores the signal's default.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C was pressed while a guard was held.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Holds SIGINT back while it lives (Unix; elsewhere Ctrl-C ends the process, and the next
/// build removes what it left).
pub struct Guard {
    #[cfg(unix)]
    previous: libc::sighandler_t,
}

#[cfg(unix)]
extern "C" fn on_interrupt(_: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Starts holding Ctrl-C back.
pub fn catch() -> Guard {
    REQUESTED.store(false, Ordering::SeqCst);
    #[cfg(unix)]
    {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let previous = unsafe { libc::signal(libc::SIGINT, on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t) };
        Guard { previous }
    }
    #[cfg(not(unix))]
    Guard {}
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: puts back the handler that was there before.
        unsafe {
            libc::signal(libc::SIGINT, self.previous);
        }
    }
}
