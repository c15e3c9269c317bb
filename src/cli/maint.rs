//! The maintenance subcommands (`scrub`, `fsck`, `gc`, `disk replace`, `status`): argument handling, locking,
//! progress on a terminal and output; the work itself is in `crate::maint`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{passphrase, Code, Failure, Outcome};
use crate::maint::{self, fsck, gc, replace, scrub, status};
use crate::store::{Disk, Store};
use crate::volume::{self, Config, StateLock};

/// The disks at `paths` (directories or `s3://` buckets, reached with the config's `[s3]` settings).
fn disks_of(cfg: &Config, paths: &[PathBuf]) -> crate::Result<Vec<Arc<dyn Disk>>> {
    paths
        .iter()
        .map(|p| volume::open_disk(p, cfg.s3.as_ref()))
        .collect()
}

/// Takes the state directory's lock so no daemon mounts the volume while we change it.
fn exclusive(cfg: &Config, what: &str) -> Result<StateLock, Failure> {
    if let Some(pid) = StateLock::holder(&cfg.state_dir) {
        return Err(Failure::new(
            Code::Busy,
            format!("{what}: volume is mounted (daemon pid {pid}); unmount it first"),
        ));
    }
    StateLock::acquire(&cfg.state_dir, Duration::from_secs(0))
        .map_err(|e| Failure::new(Code::Busy, format!("{what}: {e}")))
}

/// A one-line progress display on stderr, only when stderr is a terminal.
struct Bar {
    label: &'static str,
    tty: bool,
}

impl Bar {
    fn new(label: &'static str) -> Bar {
        Bar {
            label,
            tty: std::io::stderr().is_terminal(),
        }
    }
    fn show(&self, done: u64, total: u64) {
        if self.tty {
            let pct = (done * 100).checked_div(total).unwrap_or(100).min(100);
            let filled = (pct / 5) as usize;
            eprint!(
                "\r{} [{}{}] {done}/{total} ({pct}%) ",
                self.label,
                "#".repeat(filled),
                " ".repeat(20 - filled)
            );
            let _ = std::io::stderr().flush();
        }
    }
    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Exits with a raw code (fsck(8)-style codes do not fit [`Code`]); success returns normally.
fn exit_with(code: i32) -> Outcome {
    if code != 0 {
        let _ = std::io::stdout().flush();
        std::process::exit(code);
    }
    Ok(())
}

pub struct ScrubArgs {
    pub config: PathBuf,
    pub repair: bool,
    pub integrity: bool,
    pub sample: Option<f64>,
    pub rate: Option<f64>,
    pub json: bool,
    pub passfile: Option<PathBuf>,
    pub restart: bool,
}

/// `valencefs scrub`: keyless unless `--repair`; runs beside a mount (it only reads the disks), resumes from the
/// progress file in the state directory. Exit: 0 clean (or all repaired), 1 bad shards left, 4 data unrecoverable.
pub fn scrub_cmd(a: ScrubArgs) -> Outcome {
    let cfg = Config::load(&a.config)?;
    if a.sample.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
        return Err(Failure::new(
            Code::Usage,
            "--sample takes a percentage, 0 to 100",
        ));
    }
    if a.integrity {
        return integrity_cmd(&cfg, &a);
    }
    let _lock = if a.repair {
        Some(exclusive(&cfg, "scrub --repair")?)
    } else {
        None
    };
    let store = if a.repair {
        let pass = passphrase(a.passfile.as_deref(), false)?;
        Some(Store::open(disks_of(&cfg, &cfg.disks)?, &pass)?)
    } else {
        None
    };
    let progress = cfg.state_dir.join("scrub.progress");
    if a.restart {
        let _ = std::fs::remove_file(&progress);
    }
    let opts = scrub::ScrubOptions {
        sample_percent: a.sample,
        rate_mb_s: a.rate,
        // A sampled scrub is a spot check: it neither resumes nor leaves a resume point.
        progress_file: (a.sample.is_none() && cfg.state_dir.is_dir()).then_some(progress),
        ..Default::default()
    };
    let bar = Bar::new("scrub");
    let r = scrub::scrub_with_progress(
        &disks_of(&cfg, &cfg.disks)?,
        store.as_ref(),
        &opts,
        &mut |d, t| bar.show(d, t),
    )?;
    bar.done();
    if a.json {
        print_json(&r);
    } else {
        for d in &r.disks {
            println!(
                "disk #{} {} {}: {} checked, {} missing, {} corrupt, {} unreadable, {} repaired, {:.1} MB",
                d.index,
                d.path,
                d.state,
                d.checked,
                d.missing,
                d.corrupt,
                d.unreadable,
                d.repaired,
                d.bytes as f64 / 1e6
            );
        }
        println!("{}", r.summary());
    }
    exit_with(r.exit_code())
}

/// `valencefs scrub --integrity`: exit 0 when everything checked is proven, 1 when some chunks could not be proven
/// only because they are degraded (repairable), 4 when the proof fails (lost, forged or rolled back).
fn integrity_cmd(cfg: &Config, a: &ScrubArgs) -> Outcome {
    let _lock = exclusive(cfg, "scrub --integrity")?;
    let pass = passphrase(a.passfile.as_deref(), false)?;
    let store = Store::open(disks_of(cfg, &cfg.disks)?, &pass)?;
    let local = cfg
        .state_dir
        .join(maint::META_FILE)
        .exists()
        .then(|| maint::open_meta(&cfg.state_dir))
        .transpose()?;
    let sample = a.sample.map(|p| (p, rand::random::<u64>()));
    let r = maint::integrity::verify(&store, local.as_ref(), sample)?;
    if a.json {
        print_json(&r);
    } else {
        for id in &r.lost {
            println!("lost: chunk {id} has no shard on any disk");
        }
        for id in &r.mismatched {
            println!("mismatch: chunk {id} has shards that are not the ones written");
        }
        println!("{}", r.summary());
    }
    exit_with(if !r.ok() {
        4
    } else if r.degraded > 0 {
        1
    } else {
        0
    })
}

/// `valencefs fsck`: exit codes as fsck(8): 0 clean, 1 errors corrected, 4 errors left, 8 operational error.
pub fn fsck_cmd(
    config: &Path,
    repair: bool,
    shards: bool,
    json: bool,
    passfile: Option<&Path>,
) -> Outcome {
    let run = || -> Result<fsck::FsckReport, Failure> {
        let cfg = Config::load(config)?;
        let _lock = exclusive(&cfg, "fsck")?;
        let store = if shards {
            let pass = passphrase(passfile, false)?;
            Some(Store::open(disks_of(&cfg, &cfg.disks)?, &pass)?)
        } else {
            None
        };
        let meta = maint::open_meta(&cfg.state_dir)?;
        Ok(fsck::fsck(&meta, store.as_ref(), repair)?)
    };
    match run() {
        Ok(r) => {
            if json {
                print_json(&r);
            } else {
                for p in &r.problems {
                    println!(
                        "{}{}: {}",
                        p.kind,
                        if p.fixed { " (fixed)" } else { "" },
                        p.detail
                    );
                }
                println!("{}", r.summary());
            }
            exit_with(r.exit_code())
        }
        Err(f) => {
            eprintln!("valencefs: fsck: {}", f.msg);
            exit_with(8)
        }
    }
}

/// `valencefs gc`: refuses a mounted volume.
pub fn gc_cmd(config: &Path, json: bool, passfile: Option<&Path>) -> Outcome {
    let cfg = Config::load(config)?;
    let _lock = exclusive(&cfg, "gc")?;
    let meta = maint::open_meta(&cfg.state_dir)?;
    let pass = passphrase(passfile, false)?;
    let store = Store::open(disks_of(&cfg, &cfg.disks)?, &pass)?;
    let r = gc::gc(&store, &meta)?;
    if json {
        print_json(&r);
    } else {
        println!("{}", r.summary());
    }
    Ok(())
}

/// `valencefs disk replace FILE OLD NEW`: rebuilds OLD's shards onto the (empty) directory NEW, then points the
/// config at NEW. Restartable: run it again after an interruption.
pub fn replace_cmd(
    config: &Path,
    old: &Path,
    new: &Path,
    json: bool,
    passfile: Option<&Path>,
) -> Outcome {
    let cfg = Config::load(config)?;
    let slot = cfg
        .disks
        .iter()
        .position(|d| d == old || (d.exists() && old.exists() && same_file(d, old)))
        .or_else(|| cfg.disks.iter().position(|d| d == new))
        .ok_or_else(|| {
            Failure::new(
                Code::Usage,
                format!("{} is not one of the volume's disks", old.display()),
            )
        })?;
    let _lock = exclusive(&cfg, "disk replace")?;
    if !volume::is_s3_disk(new) {
        std::fs::create_dir_all(new)
            .map_err(|e| Failure::new(Code::Failure, format!("{}: {e}", new.display())))?;
    }
    let mut paths = cfg.disks.clone();
    paths[slot] = new.to_path_buf();
    let pass = passphrase(passfile, false)?;
    let store = Store::open(disks_of(&cfg, &paths)?, &pass)?;
    let bar = Bar::new("rebuild");
    let r = replace::replace(&store, slot, &mut |p| {
        bar.show(p.chunks_done, p.chunks_total);
        true
    })?;
    bar.done();
    store.sync()?;
    if paths != cfg.disks {
        let mut updated = cfg.clone();
        updated.disks = paths;
        let tmp = config.with_extension("replace.tmp");
        let _ = std::fs::remove_file(&tmp);
        updated.write_new(&tmp)?;
        std::fs::rename(&tmp, config)
            .map_err(|e| Failure::new(Code::Config, format!("{}: {e}", config.display())))?;
        // The slot holds a new disk now: the errors and repairs `status` shows for it start afresh.
        if let Ok(meta) = maint::open_meta(&cfg.state_dir) {
            let reset = meta.write().and_then(|mut tx| {
                tx.remove_disk_counters(slot as u64)?;
                tx.commit(true)
            });
            if let Err(e) = reset {
                eprintln!("valencefs: disk replace: resetting the disk's error counters: {e}");
            }
        }
    }
    if json {
        print_json(&r);
    } else {
        println!("{}", r.summary());
    }
    if !r.failed.is_empty() {
        return Err(Failure::new(
            Code::Disks,
            format!(
                "{} chunks could not be rebuilt (run scrub for details)",
                r.failed.len()
            ),
        ));
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The keyless status report, plus the usage figures when the metadata is not locked by a mount.
pub fn status_report(cfg: &Config) -> Option<status::StatusReport> {
    let meta = maint::open_meta(&cfg.state_dir).ok();
    status::status_keyless(&disks_of(cfg, &cfg.disks).ok()?, meta.as_ref()).ok()
}
