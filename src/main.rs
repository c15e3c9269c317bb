//! The `valencefs` binary (also `mount.valencefs` through a symlink): parse, run, exit with a named code.

fn main() -> std::process::ExitCode {
    // While the process still has one thread: see its doc.
    valencefs::cli::take_env_passphrase();
    valencefs::cli::run(valencefs::cli::parse())
}
