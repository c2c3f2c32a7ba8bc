//! The `gpumf` command: a thin layer over the library that reports errors for people.

mod cli;

fn main() -> std::process::ExitCode {
    // Before any thread starts: it may set an environment variable.
    gpumf::gpu::quiet_headless_drivers();
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
