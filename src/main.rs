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
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
