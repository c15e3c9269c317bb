//! The command line: clap definitions, the `mount.valencefs` helper's argv, passphrase input and named exit codes.

use crate::daemon::{self, MountRequest};
use crate::mount_opts::MountOpts;
use crate::volume::{self, Config, InitRequest, Size, StateLock};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use zeroize::Zeroizing;

mod docs;
mod maint;

/// Exit codes. Scripts and `mount(8)` see these; they are documented in README.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Success.
    Ok = 0,
    /// Anything not listed below (I/O error, daemon failure, shutdown error).
    Failure = 1,
    /// Bad command line or unknown mount option.
    Usage = 2,
    /// Config file missing, unreadable, invalid, or already exists (init).
    Config = 3,
    /// The passphrase opens no keyslot.
    WrongPassphrase = 4,
    /// No passphrase available: passfile missing or empty, no TTY, no VALENCEFS_PASSPHRASE.
    NoPassphrase = 5,
    /// More disks missing or bad than the redundancy tolerates.
    Disks = 6,
    /// Mount point missing, not a directory, or already mounted.
    Mountpoint = 7,
    /// State directory in use by another daemon, or target busy.
    Busy = 8,
    /// FUSE unavailable (/dev/fuse, fusermount3) or the kernel refused the mount.
    Fuse = 9,
    /// `umount` target is not a valencefs mount.
    NotMounted = 10,
}

impl Code {
    pub fn from_u8(v: u8) -> Code {
        use Code::*;
        [
            Ok,
            Failure,
            Usage,
            Config,
            WrongPassphrase,
            NoPassphrase,
            Disks,
            Mountpoint,
            Busy,
            Fuse,
            NotMounted,
        ]
        .into_iter()
        .find(|c| *c as u8 == v)
        .unwrap_or(Failure)
    }
}

/// A failed command: the exit code and the one line printed on stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub msg: String,
}

impl Failure {
    pub fn new(code: Code, msg: impl Into<String>) -> Failure {
        Failure {
            code,
            msg: msg.into(),
        }
    }
}

type Outcome = Result<(), Failure>;

/// Encrypted, deduplicating, erasure-coded FUSE filesystem over directory-backed disks.
///
/// valencefs keeps files on several ordinary directories ("disks": other drives, USB sticks, network mounts) so that
/// any M of them can die, vanish or rot and every file still reads back. Files are cut into content-defined chunks,
/// deduplicated, compressed, sealed with AES-256-GCM and spread over the disks with Reed-Solomon coding (K data + M
/// parity shards). The disks only ever see ciphertext under opaque names; file names, sizes and the directory tree
/// live in a local metadata database (the state directory) that is itself sealed onto the disks every 30 s.
///
/// A volume is described by a config file (see valencefs(5)), created by `valencefs init` and mounted by `valencefs
/// mount` or, from /etc/fstab, by mount(8) through mount.valencefs(8). Commands that need the key read the passphrase
/// from --passfile (mount: -o passfile=), else the environment variable VALENCEFS_PASSPHRASE, else a no-echo prompt
/// on the terminal.
#[derive(Parser, Debug)]
#[command(name = "valencefs", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level: off, error, warn, info, debug or trace (else VALENCEFS_LOG; default info for mount, warn
    /// otherwise). For mount, -o log=LEVEL wins.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a volume over DISK directories and write its config FILE.
    ///
    /// Writes a random master key, wrapped under the passphrase (Argon2id) in a header on every disk, and the config
    /// file naming the disks, the state directory, the redundancy and the cache budget. Refuses to overwrite an
    /// existing config or to use fewer than K+M disks.
    Init {
        /// Config file to write (refuses to overwrite).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// personal (3+2), minimal (2+1), federation (5+4), paranoid (7+8) or K+M.
        #[arg(long, value_name = "PRESET", default_value = "personal")]
        redundancy: String,
        /// Read the passphrase from this file (one trailing newline is stripped).
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
        /// State directory (metadata database, lock, log). Default: /var/lib/valencefs/NAME as root, else
        /// $XDG_STATE_HOME/valencefs/NAME, NAME being the config file's name without extension.
        #[arg(long = "state", value_name = "DIR")]
        state: Option<PathBuf>,
        /// Chunk compression: zstd or none.
        #[arg(long, value_name = "ALGO", default_value = "zstd")]
        compression: String,
        /// Write-back cache budget: bytes, or a size such as 256M or 1G.
        #[arg(long, value_name = "SIZE", default_value = "256M")]
        cache_size: String,
        /// Average chunk size, a power of two from 4K to 4M (default 1M; min is 1/4, max 4x). Fixed for the volume.
        #[arg(long, value_name = "SIZE")]
        chunk_size: Option<String>,
        /// Weak, fast key derivation. Tests only (also VALENCEFS_INSECURE_FAST_KDF=1).
        #[arg(long, hide = true)]
        kdf_fast: bool,
        /// On-disk format version: 2 (default), 1 (for older builds), or 3 (experimental: packed stripes, many
        /// chunks per file per disk; docs/FORMAT.md §14).
        #[arg(long, hide = true, value_name = "N")]
        format: Option<u16>,
        /// TOML file with the [s3] settings (endpoint, region, credentials) to copy into the config; s3:// disks
        /// otherwise use the AWS_* environment variables.
        #[arg(long, value_name = "FILE")]
        s3_config: Option<PathBuf>,
        /// Disk directories (created if missing) or s3://bucket/prefix buckets, at least K+M of them.
        #[arg(required = true, value_name = "DISK")]
        disks: Vec<PathBuf>,
    },
    /// Mount a volume; daemonizes once the mount is live unless -f.
    ///
    /// Returns once the mount is live and keeps serving it from a background daemon that logs to
    /// STATE_DIR/valencefs.log. A second mount of the same volume waits up to 10 s for a previous daemon to finish
    /// flushing, then refuses. Mount options are listed in valencefs(5).
    Mount {
        /// Stay in the foreground (logs to stderr; Ctrl-C or SIGTERM unmounts cleanly).
        #[arg(short = 'f')]
        foreground: bool,
        /// Mount options, comma-separated (passfile=, cache_size=, allow_other, ro, sync, noatime, ...).
        #[arg(short = 'o', value_name = "OPTS")]
        options: Vec<String>,
        #[arg(long, hide = true)]
        daemon_child: bool,
        /// The volume's config file.
        #[arg(value_name = "FILE")]
        config: PathBuf,
        /// Existing directory to mount on.
        #[arg(value_name = "MOUNTPOINT")]
        mountpoint: PathBuf,
    },
    /// Unmount; returns once everything is flushed and durable and the daemon has exited.
    ///
    /// Unlike umount(8) or fusermount3 -u, waits for the daemon's final flush and commit, so the volume can be
    /// remounted or its disks unplugged right after it returns. Also clears a dead mount whose daemon is gone.
    Umount {
        /// Where the volume is mounted.
        #[arg(value_name = "MOUNTPOINT")]
        mountpoint: PathBuf,
    },
    /// Disks, health, redundancy and mount state of a volume.
    ///
    /// Needs no passphrase: reads the config and the disk headers, counts shards and free space. Also counts the
    /// chunks whose shards are not all in place: a disk that was away, or was restored from an older copy, comes
    /// back present and ok but without the shards written meanwhile (its line says LACKS N), and the volume then
    /// survives fewer disk losses until `valencefs scrub --repair` rebuilds them. Chunks with fewer than K shards
    /// are unreadable, or leftovers of an interrupted delete that `valencefs gc` frees.
    Status {
        /// The volume's config file.
        #[arg(value_name = "FILE")]
        config: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Live counters of a mounted volume: operations, latencies, cache, per-disk shard I/O, errors and repairs.
    ///
    /// Asks the daemon on the socket in the volume's state directory (STATE_DIR/stats.sock, found from the mount
    /// table as umount finds the daemon), so no mount option is needed. Mounting with -o metrics=IP:PORT serves the
    /// same counters to Prometheus.
    Stats {
        mountpoint: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Prometheus text format (what -o metrics= serves).
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
    },
    /// Change the passphrase of a volume (while unmounted).
    ///
    /// Rewrites only the keyslot in each disk header; no data is re-encrypted. The master key is NOT rotated (key
    /// rotation is not built yet): whoever knows the old passphrase and kept a copy of a disk header from before
    /// the change (or learned the master key) still decrypts the volume, including data written after the change.
    /// To revoke an exposed passphrase or key, copy the files onto a new volume (`valencefs init`), which has a new
    /// master key.
    Passwd {
        /// The volume's config file.
        #[arg(value_name = "FILE")]
        config: PathBuf,
        /// Current passphrase from this file (else VALENCEFS_PASSPHRASE, else a prompt).
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
        /// New passphrase from this file (else a prompt, asked twice).
        #[arg(long, value_name = "F")]
        new_passfile: Option<PathBuf>,
        /// Weak, fast key derivation for the new keyslot. Tests only (also VALENCEFS_INSECURE_FAST_KDF=1); without
        /// it the new slot gets the default costs, whatever the old one had.
        #[arg(long, hide = true)]
        kdf_fast: bool,
    },
    /// Verify every shard's checksum on every disk (no passphrase needed unless --repair); resumes where it stopped.
    /// Exit 0 clean, 1 bad shards left, 4 data unrecoverable.
    Scrub {
        /// The volume's config file.
        #[arg(value_name = "FILE")]
        config: PathBuf,
        /// Rebuild bad or missing shards (needs the passphrase and an unmounted volume).
        #[arg(long)]
        repair: bool,
        /// Prove, with the passphrase, that every chunk the newest metadata snapshot references is on the disks
        /// exactly as written (against the integrity root), and that the disks were not rolled back. With
        /// --sample, checks a fresh random sample each run (a challenge the disks cannot precompute).
        /// Needs an unmounted volume.
        #[arg(long, conflicts_with_all = ["repair", "restart"])]
        integrity: bool,
        /// Check only this percentage of the chunks (a deterministic random sample).
        #[arg(long, value_name = "PCT")]
        sample: Option<f64>,
        /// Limit reads to about this many MB/s.
        #[arg(long, value_name = "MBPS")]
        rate: Option<f64>,
        /// Start from the beginning instead of resuming an interrupted scrub.
        #[arg(long)]
        restart: bool,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
        /// Read the passphrase from this file (only --repair needs it).
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
    },
    /// Check metadata consistency; exit codes as fsck(8): 0 clean, 1 corrected, 4 errors left, 8 operational error.
    Fsck {
        /// The volume's config file.
        #[arg(value_name = "FILE")]
        config: PathBuf,
        /// Fix what can be fixed; unreachable files go to /lost+found, nothing is deleted.
        #[arg(long)]
        repair: bool,
        /// Also check that every referenced chunk has all its shards (needs the passphrase).
        #[arg(long)]
        shards: bool,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
        /// Read the passphrase from this file.
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
    },
    /// Free chunks no metadata references (crash leftovers, deleted data). Refuses a mounted volume.
    Gc {
        /// The volume's config file.
        #[arg(value_name = "FILE")]
        config: PathBuf,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
        /// Read the passphrase from this file.
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
    },
    /// Disk maintenance.
    Disk {
        #[command(subcommand)]
        command: DiskCommand,
    },
    /// Rebuild a lost state directory and config file from the disks and the passphrase alone.
    ///
    /// Picks the newest metadata snapshot generation that reads back verified (falling back to the previous one),
    /// writes the state directory and a new config, and refuses to overwrite existing ones. Changes made after the
    /// last snapshot (at most about 30 s of metadata; nothing after a clean unmount) are lost. Prints the
    /// generation restored and, when it fell back, both generations; pointers carry no time, so the disks cannot
    /// prove that no newer snapshot existed.
    Recover {
        /// Config file to write (refuses to overwrite).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// New state directory to fill (must not hold a database).
        #[arg(long = "state", value_name = "DIR")]
        state: PathBuf,
        /// Read the passphrase from this file (else VALENCEFS_PASSPHRASE, else a prompt).
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
        /// The volume's disk directories, in any order (up to M may be missing).
        #[arg(required = true, value_name = "DISK")]
        disks: Vec<PathBuf>,
    },
    /// Create (first run) and mount a personal 3+2 volume over five directory disks under a default data directory.
    ///
    /// The data directory gets disk1..disk5, state/, volume.toml and a generated passphrase file (mode 0600; keep a
    /// copy elsewhere). Running it again finds the volume and mounts it, or says it is already mounted.
    Quickstart {
        /// Existing directory to mount on.
        #[arg(value_name = "MOUNTPOINT")]
        mountpoint: PathBuf,
        /// Where the disks, state and passfile live (default: /var/lib/valencefs/quickstart as root,
        /// else $XDG_DATA_HOME/valencefs/quickstart).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Write man pages or shell completions generated from this command line.
    ///
    /// The Debian package runs this at build time; use it for a shell the package ships no completions for, or to
    /// refresh man/ after changing a help text (`cargo run -- generate man man/`).
    Generate {
        #[command(subcommand)]
        what: GenerateCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum DiskCommand {
    /// Rebuild every shard of disk OLD (dead, missing or emptied) onto the empty directory NEW, then use NEW in the
    /// config. Restartable; the volume stays readable meanwhile.
    Replace {
        /// The volume's config file.
        #[arg(value_name = "FILE")]
        config: PathBuf,
        /// The disk directory to replace, as written in the config.
        #[arg(value_name = "OLD")]
        old: PathBuf,
        /// An empty (or missing) directory to rebuild onto.
        #[arg(value_name = "NEW")]
        new: PathBuf,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
        /// Read the passphrase from this file.
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum GenerateCommand {
    /// Write valencefs.8, mount.valencefs.8 and one page per subcommand into DIR.
    Man {
        /// Directory to write into (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Write the completion script for SHELL into DIR (valencefs.bash, _valencefs, valencefs.fish, ...).
    Completions {
        /// The shell to write a completion script for.
        shell: clap_complete::Shell,
        /// Directory to write into (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Mount a valencefs volume for mount(8): /etc/fstab lines and `mount -t valencefs`.
///
/// mount(8) runs /sbin/mount.valencefs for file systems of type valencefs (the valencefs binary answers to this name
/// through a symlink). It parses the mount options, checks the config, mount point and passphrase, mounts, and
/// returns once the mount is live; a background daemon keeps serving it (log: STATE_DIR/valencefs.log). Errors (bad
/// option, wrong passphrase, missing disks, already mounted) are one line on stderr and a non-zero exit code.
///
/// Options that fstab, systemd and mount(8) use for themselves (_netdev, nofail, noauto, auto, user, users, owner,
/// group, defaults, comment=, x-systemd.*, x-*) are accepted and ignored; any other unknown option is refused (exit
/// 2) unless -s is given. The full option list is in valencefs(5).
///
/// Example /etc/fstab line:
///
/// /etc/valencefs/photos.toml /mnt/photos valencefs passfile=/etc/valencefs/photos.pass,_netdev,nofail,x-systemd.automount 0 0
#[derive(Parser, Debug)]
#[command(name = "mount.valencefs", version)]
pub struct HelperCli {
    /// The volume's config file (the first fstab field).
    #[arg(value_name = "FILE")]
    pub config: String,
    /// Where to mount (the second fstab field).
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: String,
    /// Mount options, comma-separated; may be repeated (see valencefs(5)).
    #[arg(short = 'o', value_name = "OPTS")]
    pub options: Vec<String>,
    /// Sloppy: drop unknown mount options with a warning instead of failing.
    #[arg(short = 's')]
    pub sloppy: bool,
    /// Fake: do every check (config, mount point, passphrase, options) but mount nothing.
    #[arg(short = 'f')]
    pub fake: bool,
    /// Accepted and ignored (mount(8) does the mtab bookkeeping).
    #[arg(short = 'n')]
    pub no_mtab: bool,
    /// Accepted and ignored.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// File system type as mount(8) passes it (valencefs); ignored.
    #[arg(short = 't', value_name = "TYPE")]
    pub fstype: Option<String>,
}

/// An existing config file is a config problem with a clear message; other errors map as usual.
fn refuse_overwrite(config: &Path, e: crate::Error) -> Failure {
    match e {
        crate::Error::Exists => Failure::new(
            Code::Config,
            format!("{} already exists; not overwriting", config.display()),
        ),
        e => e.into(),
    }
}

/// What the process was asked to do: the `valencefs` CLI, or `mount.valencefs` called by mount(8).
pub enum Invocation {
    Cli(Cli),
    Helper(Result<MountRequest, Failure>),
}

/// Reads the process arguments, dispatching on the program name (`mount.valencefs` is the mount(8) helper).
pub fn parse() -> Invocation {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let prog = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if prog.starts_with("mount.") {
        let rest: Vec<String> = args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        Invocation::Helper(parse_helper(&rest))
    } else {
        Invocation::Cli(Cli::parse())
    }
}

/// `mount.valencefs FILE MOUNTPOINT [-sfnv] [-o OPTS] [-t TYPE]`, as mount(8) calls helpers. `-f` is mount(8)'s
/// "fake" (check, mount nothing), `-s` is sloppy (unknown options are dropped with a warning), `-n` and `-v` are
/// accepted and ignored. `--help` and `--version` print and exit 0.
pub fn parse_helper(args: &[String]) -> Result<MountRequest, Failure> {
    use clap::error::ErrorKind;
    let argv = std::iter::once("mount.valencefs").chain(args.iter().map(String::as_str));
    let h = match HelperCli::try_parse_from(argv) {
        Ok(h) => h,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            // clap's first paragraph ("error: ..."), on one line and without its usage block: mount(8) shows
            // helper errors verbatim.
            let rendered = e.render().to_string();
            let para: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let msg = para.join(" ");
            let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
            return Err(Failure::new(
                Code::Usage,
                format!("{msg}; usage: mount.valencefs FILE MOUNTPOINT [-sfnv] [-o OPTS]"),
            ));
        }
    };
    let opts = if h.sloppy {
        let mut kept = vec![];
        for o in h.options.iter().flat_map(|l| l.split(',')) {
            match MountOpts::parse([o]) {
                Ok(_) => kept.push(o.to_string()),
                Err(e) => eprintln!("mount.valencefs: ignoring: {e}"),
            }
        }
        MountOpts::parse(kept.iter().map(String::as_str))
    } else {
        MountOpts::parse(h.options.iter().map(String::as_str))
    }
    .map_err(|e| Failure::new(Code::Usage, e))?;
    Ok(MountRequest {
        config: h.config.into(),
        mountpoint: h.mountpoint.into(),
        opts,
        foreground: false,
        fake: h.fake,
        daemon_child: false,
    })
}

/// Runs a parsed invocation and turns its outcome into the process exit code (after one line on stderr).
pub fn run(inv: Invocation) -> ExitCode {
    let (prog, result) = match inv {
        Invocation::Helper(req) => ("mount.valencefs", req.and_then(|r| daemon::mount(&r))),
        Invocation::Cli(cli) => (
            "valencefs",
            init_logging(&cli).and_then(|()| dispatch(cli.command)),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{prog}: {}", f.msg);
            ExitCode::from(f.code as u8)
        }
    }
}

/// Installs the logger for this command: info for `mount` (to syslog and the log file when daemonized), warn
/// for the rest, on stderr. Level: `-o log=`, else `--log-level`, else `VALENCEFS_LOG`.
fn init_logging(cli: &Cli) -> Outcome {
    use crate::logging::{self, Dest};
    use tracing_subscriber::filter::LevelFilter;
    let mut level = match &cli.log_level {
        Some(l) => {
            let parsed = logging::parse_level(l).map_err(|e| Failure::new(Code::Usage, e))?;
            // A daemon started by this command inherits it.
            std::env::set_var(logging::ENV, l);
            Some(parsed)
        }
        None => None,
    };
    let (mut default, mut dest) = (LevelFilter::WARN, Dest::Stderr);
    if let Command::Mount {
        options,
        daemon_child,
        ..
    } = &cli.command
    {
        default = LevelFilter::INFO;
        if *daemon_child {
            dest = Dest::Daemon;
        }
        // A bad option list is reported by `mount` itself.
        if let Ok(MountOpts { log: Some(l), .. }) =
            MountOpts::parse(options.iter().map(String::as_str))
        {
            level = logging::parse_level(&l).ok();
        }
    }
    logging::init(level, default, dest);
    Ok(())
}

fn dispatch(cmd: Command) -> Outcome {
    match cmd {
        Command::Init {
            config,
            redundancy,
            passfile,
            state,
            compression,
            cache_size,
            chunk_size,
            kdf_fast,
            format,
            s3_config,
            disks,
        } => {
            let s3 = s3_config.map(|p| volume::load_s3_config(&p)).transpose()?;
            let state_dir = match state {
                Some(s) => s,
                None => default_state_dir(&config),
            };
            let pass = passphrase(passfile.as_deref(), true)?;
            let cfg = volume::init(&InitRequest {
                config_path: &config,
                disks,
                state_dir,
                redundancy,
                compression,
                cache_size: Size::Text(cache_size),
                chunk_size: chunk_size.map(Size::Text),
                passphrase: &pass,
                insecure_fast_kdf: volume::insecure_fast_kdf_requested(kdf_fast),
                format,
                s3,
            })
            .map_err(|e| refuse_overwrite(&config, e))?;
            println!(
                "created {} volume over {} disks; config {}, state {}",
                cfg.redundancy,
                cfg.disks.len(),
                config.display(),
                cfg.state_dir.display()
            );
            Ok(())
        }
        Command::Mount {
            foreground,
            options,
            daemon_child,
            config,
            mountpoint,
        } => {
            let opts = MountOpts::parse(options.iter().map(String::as_str))
                .map_err(|e| Failure::new(Code::Usage, e))?;
            daemon::mount(&MountRequest {
                config,
                mountpoint,
                opts,
                foreground,
                fake: false,
                daemon_child,
            })
        }
        Command::Umount { mountpoint } => daemon::umount(&mountpoint),
        Command::Recover {
            config,
            state,
            passfile,
            disks,
        } => {
            let pass = passphrase(passfile.as_deref(), false)?;
            let (cfg, recovered) = volume::recover(&config, &disks, &state, &pass)
                .map_err(|e| refuse_overwrite(&config, e))?;
            println!(
                "recovered metadata generation {} into {}; config {} ({} disks, {})",
                recovered.generation,
                cfg.state_dir.display(),
                config.display(),
                cfg.disks.len(),
                cfg.redundancy
            );
            println!("{}", recovered.summary());
            Ok(())
        }
        Command::Status { config, json } => status(&config, json),
        Command::Stats {
            mountpoint,
            json,
            prometheus,
        } => stats(&mountpoint, json, prometheus),
        Command::Passwd {
            config,
            passfile,
            new_passfile,
            kdf_fast,
        } => {
            let cfg = Config::load(&config)?;
            if let Some(pid) = StateLock::holder(&cfg.state_dir) {
                return Err(Failure::new(
                    Code::Busy,
                    format!("volume is mounted (daemon pid {pid}); unmount it first"),
                ));
            }
            let old = passphrase(passfile.as_deref(), false)?;
            let new = match &new_passfile {
                Some(f) => passphrase(Some(f), false)?,
                None if std::io::stdin().is_terminal() => {
                    eprintln!("New passphrase:");
                    prompt_new()?
                }
                None => {
                    return Err(Failure::new(
                        Code::NoPassphrase,
                        "no new passphrase: use --new-passfile FILE or run on a terminal",
                    ))
                }
            };
            volume::change_passphrase(
                &cfg,
                &old,
                &new,
                volume::insecure_fast_kdf_requested(kdf_fast),
            )?;
            println!("passphrase changed");
            Ok(())
        }
        Command::Quickstart {
            mountpoint,
            data_dir,
        } => crate::quickstart::run(&mountpoint, data_dir),
        Command::Scrub {
            config,
            repair,
            integrity,
            sample,
            rate,
            restart,
            json,
            passfile,
        } => maint::scrub_cmd(maint::ScrubArgs {
            config,
            repair,
            integrity,
            sample,
            rate,
            json,
            passfile,
            restart,
        }),
        Command::Fsck {
            config,
            repair,
            shards,
            json,
            passfile,
        } => maint::fsck_cmd(&config, repair, shards, json, passfile.as_deref()),
        Command::Gc {
            config,
            json,
            passfile,
        } => maint::gc_cmd(&config, json, passfile.as_deref()),
        Command::Disk {
            command:
                DiskCommand::Replace {
                    config,
                    old,
                    new,
                    json,
                    passfile,
                },
        } => maint::replace_cmd(&config, &old, &new, json, passfile.as_deref()),
        Command::Generate { what } => match what {
            GenerateCommand::Man { dir } => docs::man_pages(&dir),
            GenerateCommand::Completions { shell, dir } => docs::completions(shell, &dir),
        }
        .map_err(|e| Failure::new(Code::Failure, e)),
    }
}

/// `/var/lib/valencefs/NAME` as root, else `$XDG_STATE_HOME/valencefs/NAME` (NAME: the config file's stem).
fn default_state_dir(config: &Path) -> PathBuf {
    let name = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "volume".into());
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/valencefs").join(name);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("valencefs").join(name)
}

/// The passphrase, from (in this order) a passfile, `VALENCEFS_PASSPHRASE`, or a no-echo prompt on a terminal.
pub fn passphrase(passfile: Option<&Path>, confirm: bool) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let none = |m: String| Failure::new(Code::NoPassphrase, m);
    let pass = if let Some(f) = passfile {
        let mut v = read_passfile(f)?;
        if v.last() == Some(&b'\n') {
            v.pop();
        }
        v
    } else if let Some(v) = env_passphrase() {
        v
    } else if std::io::stdin().is_terminal() {
        let p = Zeroizing::new(
            rpassword::prompt_password("Passphrase: ")
                .map_err(|e| none(format!("reading passphrase: {e}")))?,
        );
        if confirm {
            let again = Zeroizing::new(
                rpassword::prompt_password("Repeat passphrase: ")
                    .map_err(|e| none(format!("reading passphrase: {e}")))?,
            );
            if *again != *p {
                return Err(none("passphrases differ".into()));
            }
        }
        Zeroizing::new(p.as_bytes().to_vec())
    } else {
        return Err(none(
            "no passphrase: use --passfile FILE (mount: -o passfile=FILE), set VALENCEFS_PASSPHRASE, or run on a terminal"
                .into(),
        ));
    };
    if pass.is_empty() {
        return Err(none("empty passphrase".into()));
    }
    // An exact-size copy instead of shrink_to_fit, whose reallocation would free the old buffer unzeroed.
    let mut exact = Zeroizing::new(Vec::with_capacity(pass.len()));
    exact.extend_from_slice(&pass);
    Ok(exact)
}

/// Longest passfile read (a passphrase, not a key file of any size).
const MAX_PASSFILE: u64 = 64 * 1024;

/// Reads a passfile, refusing one that group or others may read or write, or that belongs to someone other than
/// root or the caller (as ssh does for private keys). Only regular files are checked: `/dev/stdin` or a pipe
/// (`<(...)`) carries no such risk. The bytes go into one buffer allocated up front and zeroized when dropped: a
/// growing read would leave copies behind in freed memory.
fn read_passfile(f: &Path) -> Result<Zeroizing<Vec<u8>>, Failure> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let none = |m: String| Failure::new(Code::NoPassphrase, m);
    let io = |e: std::io::Error| none(format!("passfile {}: {e}", f.display()));
    let file = std::fs::File::open(f).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_file() {
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(none(format!(
                "passfile {} is accessible by group or others (mode {mode:04o}); run: chmod 600 {}",
                f.display(),
                f.display()
            )));
        }
        // SAFETY: geteuid cannot fail and touches no memory.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != 0 && meta.uid() != me {
            return Err(none(format!(
                "passfile {} belongs to uid {}, neither root nor you (uid {me}); refusing it",
                f.display(),
                meta.uid()
            )));
        }
    }
    let mut v = Zeroizing::new(Vec::with_capacity(MAX_PASSFILE as usize + 1));
    file.take(MAX_PASSFILE + 1)
        .read_to_end(&mut v)
        .map_err(io)?;
    if v.len() as u64 > MAX_PASSFILE {
        return Err(none(format!(
            "passfile {} is over {} KiB: not a passphrase",
            f.display(),
            MAX_PASSFILE / 1024
        )));
    }
    Ok(v)
}

/// `VALENCEFS_PASSPHRASE`, moved out of the environment by [`take_env_passphrase`].
static ENV_PASSPHRASE: std::sync::OnceLock<Option<Zeroizing<Vec<u8>>>> = std::sync::OnceLock::new();

const PASSPHRASE_VAR: &str = "VALENCEFS_PASSPHRASE";

/// Moves `VALENCEFS_PASSPHRASE` out of the environment into this process's memory: otherwise a foreground mount
/// keeps it readable in `/proc/PID/environ` for its whole life and hands it to every child (fusermount3). The
/// value's bytes in the environment block are overwritten too, because `/proc/PID/environ` shows the original
/// block, not the `environ` array that `remove_var` edits.
///
/// MUST be called while the process has a single thread (first thing in `main`): changing the environment races
/// with any other thread reading it (getenv in libc, DNS resolution, ...).
pub fn take_env_passphrase() {
    let value = std::env::var_os(PASSPHRASE_VAR)
        .filter(|v| !v.is_empty())
        .map(|v| Zeroizing::new(v.into_encoded_bytes()));
    let name = std::ffi::CString::new(PASSPHRASE_VAR).expect("no NUL");
    // SAFETY: single-threaded (see above); getenv returns a pointer into the environment, valid until it changes,
    // whose NUL-terminated value we overwrite in place (environment strings are writable memory).
    unsafe {
        let p = libc::getenv(name.as_ptr());
        if !p.is_null() {
            std::ptr::write_bytes(p, 0, libc::strlen(p));
        }
    }
    std::env::remove_var(PASSPHRASE_VAR);
    let _ = ENV_PASSPHRASE.set(value);
}

/// The environment's passphrase: the one [`take_env_passphrase`] took, or (a library caller that never called it)
/// the variable as it is.
fn env_passphrase() -> Option<Zeroizing<Vec<u8>>> {
    ENV_PASSPHRASE
        .get_or_init(|| {
            std::env::var_os(PASSPHRASE_VAR)
                .filter(|v| !v.is_empty())
                .map(|v| Zeroizing::new(v.into_encoded_bytes()))
        })
        .clone()
}

/// Prompts twice for a new passphrase on the terminal.
fn prompt_new() -> Result<Zeroizing<Vec<u8>>, Failure> {
    let none = |m: String| Failure::new(Code::NoPassphrase, m);
    let a = Zeroizing::new(
        rpassword::prompt_password("New passphrase: ").map_err(|e| none(e.to_string()))?,
    );
    let b = Zeroizing::new(
        rpassword::prompt_password("Repeat new passphrase: ").map_err(|e| none(e.to_string()))?,
    );
    if *a != *b || a.is_empty() {
        return Err(none("new passphrases differ or are empty".into()));
    }
    Ok(Zeroizing::new(a.as_bytes().to_vec()))
}

/// The one-line health of `status`: disks missing from the config's view, then chunks whose shards are not all in
/// place (a disk that was away or restored from an older copy comes back "present" but without the shards written
/// meanwhile, and the volume then survives fewer losses than its disk count says).
fn health_line(
    missing: usize,
    m: usize,
    report: Option<&crate::maint::status::StatusReport>,
) -> String {
    let can_lose = |by_disks: usize| {
        report
            .map_or(by_disks as i64, |r| r.redundancy_now.min(by_disks as i64))
            .max(0)
    };
    let census = report.map(|r| r.census.clone()).unwrap_or_default();
    let mut line = match (missing, census.chunks_short) {
        (n, _) if n > m => {
            return format!("unreadable: {n} disks missing, redundancy tolerates {m}")
        }
        (0, 0) => "healthy".to_string(),
        (0, short) => format!(
            "degraded: {short} {} lack shards (a disk was away or restored from an older copy; \
             `valencefs scrub --repair` rebuilds them), can lose {} more",
            if report.is_some_and(|r| r.format_version >= crate::store::format::FORMAT_V3) {
                "chunk(s) or stripe(s)"
            } else {
                "chunk(s)"
            },
            can_lose(m)
        ),
        (n, _) => format!(
            "degraded: {n} disk(s) missing, can lose {} more",
            can_lose(m - n)
        ),
    };
    let k = report.map_or(0, |r| r.k);
    if census.chunks_below_k > 0 && census.metadata_checked {
        if line == "healthy" {
            line = "damaged".to_string();
        }
        line += &format!(
            "; {} chunk(s) in use have fewer than {k} shards: UNREADABLE (`valencefs scrub` reports them)",
            census.chunks_below_k
        );
    } else if census.chunks_below_k > 0 {
        line += &format!(
            "; {} chunk(s) have fewer than {k} shards: unreadable, unless they are leftovers of an interrupted \
             delete (`valencefs gc` frees those; run status again when unmounted to tell)",
            census.chunks_below_k
        );
    }
    if census.chunks_leftover > 0 {
        line += &format!(
            "; {} leftover chunk(s) no file uses (a disk that was away brought back shards deleted meanwhile; \
             `valencefs gc` frees them)",
            census.chunks_leftover
        );
    }
    line
}

/// `valencefs status`: what can be told without the key (disks present, redundancy, daemon, mount point).
fn status(config: &Path, json: bool) -> Outcome {
    let cfg = Config::load(config)?;
    let (k, m) = volume::parse_redundancy(&cfg.redundancy)?;
    let disks: Vec<(String, bool)> = cfg
        .disks
        .iter()
        .map(|d| (d.display().to_string(), volume::disk_present(&cfg, d)))
        .collect();
    let missing = disks.iter().filter(|d| !d.1).count();
    let pid = StateLock::holder(&cfg.state_dir);
    let source = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
    let mountpoint = mounts_of(&source.display().to_string());
    // The keyless report (disk headers, shard counts, space; usage when not mounted). Absent if no disk is readable.
    let mut report = maint::status_report(&cfg);
    let health = health_line(missing, m, report.as_ref());
    // While mounted the daemon holds the metadata database: ask it for the per-disk counters instead.
    if let (Some(r), Some(_)) = (&mut report, pid) {
        if let Ok(live) = crate::stats_server::query(&cfg.state_dir) {
            let disks = live.store.map(|s| s.disks).unwrap_or_default();
            for (d, l) in r.disks.iter_mut().zip(disks) {
                d.errors = l.counts.errors;
                if let Some(t) = l.lifetime {
                    d.errors_seen.get_or_insert(t.errors_seen);
                    d.repaired.get_or_insert(t.repaired);
                    d.degraded_reads.get_or_insert(t.degraded_reads);
                }
            }
        }
    }
    if json {
        let mut v = serde_json::json!({
            "config": source,
            "redundancy": cfg.redundancy,
            "data_shards": k,
            "parity_shards": m,
            "disks": disks.iter().map(|(p, ok)| serde_json::json!({"path": p, "present": ok})).collect::<Vec<_>>(),
            "health": health,
            "state_dir": cfg.state_dir,
            "daemon_pid": pid,
            "mountpoint": mountpoint,
        });
        if let Some(r) = &report {
            // Each disk object gains the report's fields (state, space, shards); the report's totals are added.
            for (d, rd) in v["disks"]
                .as_array_mut()
                .into_iter()
                .flatten()
                .zip(&r.disks)
            {
                if let (Some(obj), Ok(serde_json::Value::Object(extra))) =
                    (d.as_object_mut(), serde_json::to_value(rd))
                {
                    for (k, val) in extra {
                        obj.entry(k).or_insert(val);
                    }
                }
            }
            v["volume_id"] = serde_json::json!(r.volume_id);
            v["redundancy_now"] = serde_json::json!(r.redundancy_now);
            v["redundancy_target"] = serde_json::json!(r.redundancy_target);
            v["usage"] = serde_json::to_value(&r.usage).unwrap_or_default();
            v["census"] = serde_json::to_value(&r.census).unwrap_or_default();
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("volume      {}", source.display());
        println!("redundancy  {} ({k}+{m})", cfg.redundancy);
        println!("health      {health}");
        for (p, ok) in &disks {
            println!(
                "disk        {p} {}",
                if *ok { "present" } else { "MISSING" }
            );
        }
        if let Some(r) = &report {
            for d in &r.disks {
                let gib = |b: Option<u64>| {
                    b.map_or("?".into(), |b| {
                        format!("{:.1}", b as f64 / (1u64 << 30) as f64)
                    })
                };
                println!(
                    "  #{} {:<10} {} shards{}, {} GiB free of {}{}",
                    d.index,
                    d.state,
                    d.shards.map_or("-".into(), |n| n.to_string()),
                    match d.lacking {
                        Some(n) if n > 0 => format!(" (LACKS {n})"),
                        _ => String::new(),
                    },
                    gib(d.free_bytes),
                    gib(d.total_bytes),
                    match (d.errors_seen, d.repaired) {
                        (Some(e), Some(r)) => format!("; {e} errors seen, {r} shards repaired"),
                        _ => String::new(),
                    }
                );
            }
            println!("{}", r.summary());
        }
        println!("state       {}", cfg.state_dir.display());
        match (&mountpoint, pid) {
            (Some(mp), Some(pid)) => println!("mounted     {mp} (daemon pid {pid})"),
            (None, Some(pid)) => println!("daemon      pid {pid} (not mounted; flushing?)"),
            _ => println!("mounted     no"),
        }
    }
    Ok(())
}

/// `valencefs stats MOUNTPOINT`: asks the daemon through the socket in its state directory (found through the
/// mount table's source, the config file, exactly as `umount` finds the daemon).
fn stats(mountpoint: &Path, json: bool, prometheus: bool) -> Outcome {
    let canon = std::fs::canonicalize(mountpoint)
        .map_err(|e| Failure::new(Code::Mountpoint, format!("{}: {e}", mountpoint.display())))?;
    let not_ours = |m: String| Failure::new(Code::NotMounted, m);
    let (source, fstype) = daemon::mount_entry(&canon)
        .ok_or_else(|| not_ours(format!("{} is not mounted", canon.display())))?;
    let cfg = Config::load(Path::new(&source)).map_err(|e| {
        if fstype == "fuse.valencefs" {
            Failure::new(
                Code::Config,
                format!(
                    "{} is mounted from {source}, which is unreadable: {e}",
                    canon.display()
                ),
            )
        } else {
            not_ours(format!(
                "{} is a {fstype} mount, not valencefs",
                canon.display()
            ))
        }
    })?;
    let snap = crate::stats_server::query(&cfg.state_dir).map_err(|e| {
        Failure::new(
            Code::Failure,
            format!("cannot reach the daemon serving {}: {e}", canon.display()),
        )
    })?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&snap).unwrap_or_default()
        );
    } else if prometheus {
        print!("{}", crate::metrics::render_prometheus(&snap));
    } else {
        print!("{}", crate::metrics::render_table(&snap));
    }
    Ok(())
}

/// The mount point where the volume with this config path is mounted, if any.
pub fn mounts_of(source: &str) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split(' ');
        (r.next()? == "fuse.valencefs" && r.next()? == source)
            .then(|| left.split(' ').nth(4).map(str::to_string))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn health_line_tells_missing_disks_short_chunks_and_damage_apart() {
        use crate::maint::status::{ShardCensus, StatusReport};
        let report = |redundancy_now: i64, census: ShardCensus| StatusReport {
            volume_id: "00".repeat(16),
            format_version: 2,
            layout: "3+2".into(),
            k: 3,
            m: 2,
            read_only: false,
            disks: Vec::new(),
            redundancy_now,
            redundancy_target: 2,
            usage: None,
            census,
        };
        let whole = report(2, ShardCensus::default());
        assert_eq!(health_line(0, 2, Some(&whole)), "healthy");
        assert_eq!(health_line(0, 2, None), "healthy");
        let line = health_line(1, 2, Some(&report(1, ShardCensus::default())));
        assert!(
            line.starts_with("degraded: 1 disk(s) missing, can lose 1 more"),
            "{line}"
        );
        assert!(health_line(3, 2, Some(&whole)).starts_with("unreadable: 3 disks missing"));
        let short = ShardCensus {
            chunks_short: 7,
            worst_spare: Some(0),
            ..Default::default()
        };
        let line = health_line(0, 2, Some(&report(0, short)));
        assert!(
            line.starts_with("degraded: 7 chunk(s) lack shards"),
            "{line}"
        );
        assert!(
            line.contains("scrub --repair") && line.ends_with("can lose 0 more"),
            "{line}"
        );
        let lost = ShardCensus {
            chunks_below_k: 2,
            chunks_leftover: 5,
            metadata_checked: true,
            ..Default::default()
        };
        let line = health_line(0, 2, Some(&report(2, lost.clone())));
        assert!(
            line.starts_with("damaged; 2 chunk(s) in use have fewer than 3 shards: UNREADABLE"),
            "{line}"
        );
        assert!(line.contains("5 leftover chunk(s)"), "{line}");
        let unsure = ShardCensus {
            metadata_checked: false,
            chunks_leftover: 0,
            ..lost
        };
        let line = health_line(0, 2, Some(&report(2, unsure)));
        assert!(
            line.starts_with("healthy; 2 chunk(s) have fewer than 3 shards: unreadable, unless"),
            "{line}"
        );
    }

    #[test]
    fn helper_argv() {
        let r = parse_helper(&s(&[
            "/c.toml",
            "/mnt",
            "-n",
            "-o",
            "rw,passfile=/p,_netdev",
        ]))
        .unwrap();
        assert_eq!(r.config, PathBuf::from("/c.toml"));
        assert_eq!(r.opts.passfile, Some(PathBuf::from("/p")));
        assert!(!r.fake);
        let r = parse_helper(&s(&["-fv", "-t", "valencefs", "/c", "/m", "-oro"])).unwrap();
        assert!(r.fake && r.opts.read_only);
        assert_eq!(
            parse_helper(&s(&["/c", "/m", "-o", "bogus"]))
                .unwrap_err()
                .code,
            Code::Usage
        );
        assert!(
            parse_helper(&s(&["/c", "/m", "-s", "-o", "bogus,ro"]))
                .unwrap()
                .opts
                .read_only
        );
        assert!(parse_helper(&s(&["/c"])).is_err());
    }

    #[test]
    fn codes_round_trip() {
        for v in 0..=10u8 {
            assert_eq!(Code::from_u8(v) as u8, v);
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
