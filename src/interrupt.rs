//! Ctrl-C during work that leaves files behind (a block cache's build): while a [`catch`]
//! guard lives, SIGINT only sets a flag the work checks ([`requested`]), so it can stop and
//! remove its temporary files; the guard's drop puts back the handler that was there. A
//! process that ignores SIGINT (a shell's background job does: the terminal's Ctrl-C is meant
//! for the foreground) keeps ignoring it.

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

/// Starts holding Ctrl-C back (where SIGINT is not ignored).
pub fn catch() -> Guard {
    REQUESTED.store(false, Ordering::SeqCst);
    #[cfg(unix)]
    {
        if ignored() {
            return Guard { previous: libc::SIG_IGN };
        }
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let previous = unsafe { libc::signal(libc::SIGINT, on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t) };
        Guard { previous }
    }
    #[cfg(not(unix))]
    Guard {}
}

/// Whether SIGINT is ignored now (read without changing it).
#[cfg(unix)]
fn ignored() -> bool {
    // SAFETY: a null new action only reads the current one into `current`.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGINT, std::ptr::null(), &mut current) == 0 && current.sa_sigaction == libc::SIG_IGN
    }
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// Set in the child process of [`a_process_that_ignores_ctrl_c_keeps_ignoring_it`].
    const CHILD: &str = "GPUMF_TEST_SIGINT_IGNORED";

    /// Signal dispositions belong to the process, and other tests take the guard, so the test
    /// runs in a child (this test binary again, only this test) that starts with SIGINT
    /// ignored, as a shell's background job does.
    #[test]
    fn a_process_that_ignores_ctrl_c_keeps_ignoring_it() {
        if std::env::var_os(CHILD).is_some() {
            assert!(ignored(), "the child starts with SIGINT ignored");
            let guard = catch();
            // SAFETY: SIGINT is ignored (or caught by the guard's flag-only handler).
            unsafe { libc::raise(libc::SIGINT) };
            assert!(!requested(), "an ignored Ctrl-C reached the work");
            assert!(ignored(), "the guard replaced the ignored disposition");
            drop(guard);
            assert!(ignored(), "the guard's drop changed the ignored disposition");
            return;
        }
        let mut child = std::process::Command::new(std::env::current_exe().expect("the test binary"));
        child.args(["--exact", "interrupt::tests::a_process_that_ignores_ctrl_c_keeps_ignoring_it", "--test-threads", "1"]).env(CHILD, "1");
        // SAFETY: between fork and exec the child only calls signal(2), which is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut child, || {
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                Ok(())
            });
        }
        let out = child.output().expect("the child test runs");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && said.contains("1 passed"), "child: {:?}\n{said}{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
}
