//! The `valencefs` binary (also `mount.valencefs` through a symlink): parse, run, exit with a named code.

fn main() -> std::process::ExitCode {
    valencefs::cli::run(valencefs::cli::parse())
}
