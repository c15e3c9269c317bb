//! The command line: clap definitions, the `mount.valencefs` helper's argv, passphrase input and named exit codes.

use crate::daemon::{self, MountRequest};
use crate::mount_opts::MountOpts;
use crate::volume::{self, Config, InitRequest, Size, StateLock};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use zeroize::Zeroizing;

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

/// valencefs: an encrypted, deduplicating, erasure-coded FUSE filesystem over directory-backed disks.
#[derive(Parser, Debug)]
#[command(name = "valencefs", version, about, long_about = None)]
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
    Init {
        /// Config file to write (refuses to overwrite).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// personal (3+2), minimal (2+1), federation (5+4), paranoid (7+8) or K+M.
        #[arg(long, default_value = "personal")]
        redundancy: String,
        /// Read the passphrase from this file (one trailing newline is stripped).
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
        /// State directory (metadata database, lock, log). Default: /var/lib/valencefs/NAME as root.
        #[arg(long = "state", value_name = "DIR")]
        state: Option<PathBuf>,
        /// zstd or none.
        #[arg(long, default_value = "zstd")]
        compression: String,
        /// Write-back cache budget, e.g. 256M.
        #[arg(long, default_value = "256M")]
        cache_size: String,
        /// Weak, fast key derivation. Tests only (also VALENCEFS_INSECURE_FAST_KDF=1).
        #[arg(long, hide = true)]
        kdf_fast: bool,
        /// Disk directories (created if missing), at least K+M of them.
        #[arg(required = true, value_name = "DISK")]
        disks: Vec<PathBuf>,
    },
    /// Mount a volume; daemonizes once the mount is live unless -f.
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
        mountpoint: PathBuf,
    },
    /// Unmount; returns once everything is flushed and durable and the daemon has exited.
    Umount { mountpoint: PathBuf },
    /// Disks, health, redundancy and mount state of a volume.
    Status {
        #[arg(value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Live counters of a mounted volume: operations, latencies, cache, per-disk shard I/O, errors and repairs.
    Stats {
        mountpoint: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Prometheus text format (what -o metrics= serves).
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
    },
    /// Change the passphrase of a volume.
    Passwd {
        #[arg(value_name = "FILE")]
        config: PathBuf,
        /// Current passphrase from this file (else VALENCEFS_PASSPHRASE, else a prompt).
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
        /// New passphrase from this file (else a prompt, asked twice).
        #[arg(long, value_name = "F")]
        new_passfile: Option<PathBuf>,
    },
    /// Verify every shard's checksum on every disk (no passphrase needed unless --repair); resumes where it stopped.
    /// Exit 0 clean, 1 bad shards left, 4 data unrecoverable.
    Scrub {
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
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
    },
    /// Check metadata consistency; exit codes as fsck(8): 0 clean, 1 corrected, 4 errors left, 8 operational error.
    Fsck {
        #[arg(value_name = "FILE")]
        config: PathBuf,
        /// Fix what can be fixed; unreachable files go to /lost+found, nothing is deleted.
        #[arg(long)]
        repair: bool,
        /// Also check that every referenced chunk has all its shards (needs the passphrase).
        #[arg(long)]
        shards: bool,
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
    },
    /// Free chunks no metadata references (crash leftovers, deleted data). Refuses a mounted volume.
    Gc {
        #[arg(value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
    },
    /// Disk maintenance.
    Disk {
        #[command(subcommand)]
        command: DiskCommand,
    },
    /// Rebuild a lost state directory and config file from the disks and the passphrase alone.
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
    Quickstart {
        mountpoint: PathBuf,
        /// Where the disks, state and passfile live (default: /var/lib/valencefs/quickstart as root,
        /// else $XDG_DATA_HOME/valencefs/quickstart).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DiskCommand {
    /// Rebuild every shard of disk OLD (dead, missing or emptied) onto the empty directory NEW, then use NEW in the
    /// config. Restartable; the volume stays readable meanwhile.
    Replace {
        #[arg(value_name = "FILE")]
        config: PathBuf,
        #[arg(value_name = "OLD")]
        old: PathBuf,
        #[arg(value_name = "NEW")]
        new: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "F")]
        passfile: Option<PathBuf>,
    },
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
/// accepted and ignored.
pub fn parse_helper(args: &[String]) -> Result<MountRequest, Failure> {
    let usage = |m: &str| {
        Failure::new(
            Code::Usage,
            format!("{m}; usage: mount.valencefs FILE MOUNTPOINT [-sfnv] [-o OPTS]"),
        )
    };
    let (mut positional, mut lists, mut fake, mut sloppy) = (vec![], vec![], false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("-o") {
            let v = if v.is_empty() {
                it.next().ok_or_else(|| usage("-o needs a value"))?.clone()
            } else {
                v.to_string()
            };
            lists.push(v);
        } else if let Some(v) = a.strip_prefix("-t") {
            if v.is_empty() {
                it.next().ok_or_else(|| usage("-t needs a value"))?;
            }
        } else if a.len() > 1 && a.starts_with('-') && !a.starts_with("--") {
            for c in a[1..].chars() {
                match c {
                    'f' => fake = true,
                    's' => sloppy = true,
                    'n' | 'v' => {}
                    _ => return Err(usage(&format!("unknown flag -{c}"))),
                }
            }
        } else {
            positional.push(a.clone());
        }
    }
    let [config, mountpoint] = <[String; 2]>::try_from(positional)
        .map_err(|_| usage("expected exactly FILE and MOUNTPOINT"))?;
    let opts = if sloppy {
        let mut kept = vec![];
        for o in lists.iter().flat_map(|l| l.split(',')) {
            match MountOpts::parse([o]) {
                Ok(_) => kept.push(o.to_string()),
                Err(e) => eprintln!("mount.valencefs: ignoring: {e}"),
            }
        }
        MountOpts::parse(kept.iter().map(String::as_str))
    } else {
        MountOpts::parse(lists.iter().map(String::as_str))
    }
    .map_err(|e| Failure::new(Code::Usage, e))?;
    Ok(MountRequest {
        config: config.into(),
        mountpoint: mountpoint.into(),
        opts,
        foreground: false,
        fake,
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
            kdf_fast,
            disks,
        } => {
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
                passphrase: &pass,
                insecure_fast_kdf: kdf_fast
                    || std::env::var_os("VALENCEFS_INSECURE_FAST_KDF").is_some_and(|v| v == "1"),
            })
            .map_err(|e| match e {
                crate::Error::Exists => Failure::new(
                    Code::Config,
                    format!("{} already exists; not overwriting", config.display()),
                ),
                e => e.into(),
            })?;
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
            let (cfg, generation) =
                volume::recover(&config, &disks, &state, &pass).map_err(|e| match e {
                    crate::Error::Exists => Failure::new(
                        Code::Config,
                        format!("{} already exists; not overwriting", config.display()),
                    ),
                    e => e.into(),
                })?;
            println!(
                "recovered metadata generation {generation} into {}; config {} ({} disks, {})",
                cfg.state_dir.display(),
                config.display(),
                cfg.disks.len(),
                cfg.redundancy
            );
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
            volume::change_passphrase(&cfg, &old, &new)?;
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
    let mut pass = if let Some(f) = passfile {
        let mut v = Zeroizing::new(
            std::fs::read(f).map_err(|e| none(format!("passfile {}: {e}", f.display())))?,
        );
        if v.last() == Some(&b'\n') {
            v.pop();
        }
        v
    } else if let Some(v) = std::env::var_os("VALENCEFS_PASSPHRASE").filter(|v| !v.is_empty()) {
        Zeroizing::new(v.into_encoded_bytes())
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
    pass.shrink_to_fit();
    Ok(pass)
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

/// `valencefs status`: what can be told without the key (disks present, redundancy, daemon, mount point).
fn status(config: &Path, json: bool) -> Outcome {
    let cfg = Config::load(config)?;
    let (k, m) = volume::parse_redundancy(&cfg.redundancy)?;
    let disks: Vec<(String, bool)> = cfg
        .disks
        .iter()
        .map(|d| (d.display().to_string(), d.is_dir()))
        .collect();
    let missing = disks.iter().filter(|d| !d.1).count();
    let health = match missing {
        0 => "healthy".to_string(),
        n if n <= m => format!("degraded: {n} disk(s) missing, can lose {} more", m - n),
        n => format!("unreadable: {n} disks missing, redundancy tolerates {m}"),
    };
    let pid = StateLock::holder(&cfg.state_dir);
    let source = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
    let mountpoint = mounts_of(&source.display().to_string());
    // The keyless report (disk headers, shard counts, space; usage when not mounted). Absent if no disk is readable.
    let mut report = maint::status_report(&cfg);
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
                    "  #{} {:<10} {} shards, {} GiB free of {}{}",
                    d.index,
                    d.state,
                    d.shards.map_or("-".into(), |n| n.to_string()),
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
