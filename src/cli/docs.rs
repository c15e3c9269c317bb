//! Man pages and shell completions generated from the clap definitions, so help, pages and completions never drift.
//!
//! `valencefs generate man DIR` writes the section 8 pages (the committed `man/` copies are checked by
//! `tests/man_pages.rs`); `valencefs generate completions SHELL DIR` writes a completion script.
//! `packaging/build-deb.sh` runs both on the binary it packages, so a package never describes another build. The
//! hand-written valencefs(5) and valencefs-format(7) live in `man/` only.

use super::{Cli, Code, HelperCli};
use clap::CommandFactory;
use roff::{bold, roman, Roff};
use std::path::Path;

const SECTION: &str = "8";
const MANUAL: &str = "System Administration";

/// Every exit code with the meaning scripts and mount(8) see (numbers from `Code`, so they cannot drift).
const EXIT_CODES: &[(Code, &str)] = &[
    (Code::Ok, "success"),
    (
        Code::Failure,
        "anything else (I/O error, daemon failure, error while flushing at unmount)",
    ),
    (Code::Usage, "bad command line or unknown mount option"),
    (
        Code::Config,
        "config file missing, invalid, or (init) already exists; bad redundancy; too few disks",
    ),
    (Code::WrongPassphrase, "the passphrase opens no keyslot"),
    (
        Code::NoPassphrase,
        "passfile missing or empty, no terminal and no VALENCEFS_PASSPHRASE",
    ),
    (
        Code::Disks,
        "more disks missing or bad than the redundancy tolerates",
    ),
    (
        Code::Mountpoint,
        "mount point missing, not a directory, or already mounted",
    ),
    (
        Code::Busy,
        "state directory held by another daemon, or the mount is busy",
    ),
    (
        Code::Fuse,
        "/dev/fuse or fusermount3 missing, or the kernel refused the mount",
    ),
    (Code::NotMounted, "umount target is not a valencefs mount"),
];

/// Writes `valencefs.8`, `mount.valencefs.8` and `valencefs-SUB.8` for every visible subcommand into `dir`.
pub fn man_pages(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Building the parent gives subcommands their display names (valencefs-init) and bin names (valencefs init).
    cmd.build();
    write_tree(&cmd, dir, true)?;
    let helper = HelperCli::command();
    let mut extra = Roff::new();
    see_also(
        &mut extra,
        &[
            "valencefs(8)",
            "valencefs(5)",
            "mount(8)",
            "fstab(5)",
            "systemd.mount(5)",
        ],
    );
    write_page(helper, dir, extra)
}

fn write_tree(cmd: &clap::Command, dir: &Path, top: bool) -> Result<(), String> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub, dir, false)?;
    }
    let mut extra = Roff::new();
    if top {
        top_sections(&mut extra);
        see_also(
            &mut extra,
            &[
                "valencefs(5)",
                "valencefs-format(7)",
                "mount.valencefs(8)",
                "fusermount3(1)",
                "fstab(5)",
            ],
        );
    } else {
        see_also(&mut extra, &["valencefs(8)", "valencefs(5)"]);
    }
    write_page(cmd.clone(), dir, extra)
}

fn write_page(cmd: clap::Command, dir: &Path, extra: Roff) -> Result<(), String> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let man = clap_mangen::Man::new(cmd)
        .title(name.to_uppercase())
        .section(SECTION)
        .source(format!("valencefs {}", env!("CARGO_PKG_VERSION")))
        .manual(MANUAL);
    let mut buf = vec![];
    man.render(&mut buf)
        .map_err(|e| format!("rendering {name}: {e}"))?;
    buf.extend_from_slice(extra.to_roff().as_bytes());
    let path = dir.join(man.get_filename());
    std::fs::write(&path, buf).map_err(|e| format!("{}: {e}", path.display()))
}

/// EXIT STATUS, ENVIRONMENT and FILES for valencefs(8).
fn top_sections(r: &mut Roff) {
    r.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_CODES {
        r.control("TP", []);
        r.text([bold((*code as u8).to_string())]);
        r.text([roman(*meaning)]);
    }
    r.control("PP", []);
    r.text([roman(
        "scrub and fsck use their own codes, described in valencefs-scrub(8) and valencefs-fsck(8).",
    )]);
    r.control("SH", ["ENVIRONMENT"]);
    r.control("TP", []);
    r.text([bold("VALENCEFS_PASSPHRASE")]);
    r.text([roman(
        "The passphrase, for commands run without --passfile (or mount without -o passfile=).",
    )]);
    r.control("TP", []);
    r.text([bold("VALENCEFS_LOG")]);
    r.text([roman(
        "Log level (off, error, warn, info, debug, trace) when neither -o log= nor --log-level gives one.",
    )]);
    r.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/etc/valencefs/NAME.toml",
            "Conventional place for a volume's config file (valencefs(5)); the systemd unit valencefs@NAME.service \
             uses it.",
        ),
        (
            "/etc/valencefs/NAME.pass",
            "Conventional passphrase file (mode 0600).",
        ),
        (
            "/var/lib/valencefs/NAME/",
            "Default state directory as root: metadata database, lock, the daemon log valencefs.log, and \
             stats.sock, where the daemon answers valencefs stats.",
        ),
    ] {
        r.control("TP", []);
        r.text([bold(path)]);
        r.text([roman(what)]);
    }
}

fn see_also(r: &mut Roff, pages: &[&str]) {
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(pages.join(", "))]);
}

/// Writes the completion script for `shell` into `dir` (e.g. `valencefs.bash`, `_valencefs`, `valencefs.fish`).
pub fn completions(shell: clap_complete::Shell, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = clap_complete::generate_to(shell, &mut Cli::command(), "valencefs", dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    println!("{}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_table_is_complete() {
        for v in 0..=10u8 {
            assert!(
                EXIT_CODES.iter().any(|(c, _)| *c as u8 == v),
                "exit code {v} missing from the man page"
            );
        }
    }
}
