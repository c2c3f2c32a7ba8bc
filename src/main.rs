//! The `gpumf` command: a thin layer over the library that reports errors for people.

mod cli;

fn main() -> std::process::ExitCode {
    // Before any thread starts: it may set an environment variable.
    gpumf::gpu::quiet_headless_drivers();
    // Output piped into `head` ends the process quietly, as with other command-line tools,
    // rather than in a panic at the next print.
    #[cfg(unix)]
    // SAFETY: no other thread runs yet; this restores the signal's default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // A panic anywhere (a bug) ends the command as an error with its message, as any other
    // failure does, rather than as an abort.
    match std::panic::catch_unwind(cli::run) {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
        Err(panic) => {
            let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            eprintln!("error: internal error (a bug in gpumf, please report it): {message}");
            std::process::ExitCode::from(3)
        }
    }
}
