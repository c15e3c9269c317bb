//! Crash simulation inside the process, at the level of the filesystem core: the chunk store's disks and the
//! metadata database both live in memory and keep apart what was written and what a sync made durable. One
//! workload runs once per "durable step" (a sync of any disk or of the database) with the power cut just before
//! that step: nothing from it on reaches the durable images, while the process goes on unaware. Then the volume
//! is reopened from what survived, and:
//! - everything the workload saw acknowledged (an `fsync`/`fsyncdir` whose every sync happened before the cut)
//!   is there, names and bytes;
//! - every file that exists reads back without error (no dangling chunk);
//! - `fsck` with the shard check finds nothing wrong;
//! - the machine may be lost too: the state directory recovered from the newest metadata snapshot on the disks
//!   (the workload forces two mid-session, while chunks are freed around them) proves its integrity with nothing
//!   lost, and every file in it reads back whole.

mod store_common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use store_common::*;
use valencefs::fs::{Chunks, Ctx, Fs, FsOptions, Ino, SetAttr, ROOT_INO};
use valencefs::maint::fsck::fsck;
use valencefs::meta::{Meta, SimFile};
use valencefs::store::format::{FORMAT_V3, FORMAT_VERSION};
use valencefs::store::{Disk, DiskStat, MemDisk, Store};
use valencefs::Result;

const C: Ctx = Ctx::ROOT;

/// Numbers the durable steps; step `n` (from 1) takes effect only if `n <= cut`.
struct Power {
    steps: AtomicU64,
    cut: AtomicU64,
}

impl Power {
    fn new() -> Arc<Power> {
        Arc::new(Power {
            steps: AtomicU64::new(0),
            cut: AtomicU64::new(u64::MAX),
        })
    }
    fn step(&self) -> bool {
        self.steps.fetch_add(1, Ordering::SeqCst) < self.cut.load(Ordering::SeqCst)
    }
    /// Whether every durable step so far took effect.
    fn on(&self) -> bool {
        self.steps.load(Ordering::SeqCst) <= self.cut.load(Ordering::SeqCst)
    }
}

/// A memory disk whose syncs stop taking effect once the power is cut.
struct CutDisk {
    mem: Arc<MemDisk>,
    power: Arc<Power>,
}

impl Disk for CutDisk {
    fn describe(&self) -> String {
        self.mem.describe()
    }
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        self.mem.put(name, data)
    }
    fn get_limited(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        self.mem.get_limited(name, max)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.mem.delete(name)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.mem.list(prefix)
    }
    fn sync(&self) -> Result<()> {
        if self.power.step() {
            self.mem.sync()?;
        }
        Ok(())
    }
    fn stat(&self) -> DiskStat {
        self.mem.stat()
    }
    fn parallel_io(&self) -> bool {
        false
    }
}

fn disks(mems: &[Arc<MemDisk>], power: &Arc<Power>) -> Vec<Arc<dyn Disk>> {
    mems.iter()
        .map(|m| {
            Arc::new(CutDisk {
                mem: m.clone(),
                power: power.clone(),
            }) as Arc<dyn Disk>
        })
        .collect()
}

fn sim_file(image: Vec<u8>, power: &Arc<Power>) -> Arc<SimFile> {
    let p = power.clone();
    SimFile::new(image, move || p.step())
}

fn fs_opts() -> FsOptions {
    FsOptions {
        // No timer may add durable steps in the middle of the script.
        commit_interval_secs: 3600,
        snapshot_interval_secs: 3600,
        ..Default::default()
    }
}

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    mixed(n, seed)
}

/// What the workload saw acknowledged, per path: `Some(content)` = this file with these bytes (`None` bytes: exists,
/// content not promised), `None` = absent.
type Acked = BTreeMap<String, Option<Option<Vec<u8>>>>;

/// The model of one inode: its bytes now, and the bytes an acknowledged fsync made durable (cleared by any later
/// change of the data).
#[derive(Clone, Default)]
struct ModelFile {
    data: Vec<u8>,
    durable: Option<Vec<u8>>,
}

struct Run<'a> {
    fs: &'a Fs,
    power: &'a Power,
    files: Vec<ModelFile>,
    /// path → index into `files`.
    names: BTreeMap<String, usize>,
    /// Paths whose name (presence/absence) an fsyncdir acknowledged and that have not changed since.
    names_acked: BTreeMap<String, Option<usize>>,
}

impl Run<'_> {
    fn dir_ino(&self, dir: &str) -> Ino {
        if dir.is_empty() {
            ROOT_INO
        } else {
            self.fs.lookup(&C, ROOT_INO, OsStr::new(dir)).unwrap().ino
        }
    }

    fn split(path: &str) -> (&str, &str) {
        path.rsplit_once('/').unwrap_or(("", path))
    }

    fn ino(&self, path: &str) -> Ino {
        let (dir, name) = Self::split(path);
        self.fs
            .lookup(&C, self.dir_ino(dir), OsStr::new(name))
            .unwrap()
            .ino
    }

    fn touch_name(&mut self, path: &str) {
        self.names_acked.remove(path);
    }

    fn create(&mut self, path: &str, data: &[u8], fsync: bool) {
        let (dir, name) = Self::split(path);
        let parent = self.dir_ino(dir);
        let (attr, fh) = self
            .fs
            .create(&C, parent, OsStr::new(name), 0o644, 0, libc::O_RDWR)
            .unwrap();
        let mut off = 0;
        for piece in data.chunks(40_000) {
            self.fs.write(attr.ino, fh, off, piece).unwrap();
            off += piece.len() as u64;
        }
        self.files.push(ModelFile {
            data: data.to_vec(),
            durable: None,
        });
        let idx = self.files.len() - 1;
        self.names.insert(path.to_string(), idx);
        self.touch_name(path);
        if fsync {
            self.fs.fsync(attr.ino, fh, false).unwrap();
            if self.power.on() {
                self.files[idx].durable = Some(data.to_vec());
            }
        }
        self.fs.release(attr.ino, fh).unwrap();
    }

    fn overwrite(&mut self, path: &str, offset: usize, data: &[u8], fsync: bool) {
        let ino = self.ino(path);
        let fh = self.fs.open(&C, ino, libc::O_RDWR).unwrap();
        self.fs.write(ino, fh, offset as u64, data).unwrap();
        let idx = self.names[path];
        let f = &mut self.files[idx];
        if f.data.len() < offset + data.len() {
            f.data.resize(offset + data.len(), 0);
        }
        f.data[offset..offset + data.len()].copy_from_slice(data);
        f.durable = None;
        if fsync {
            self.fs.fsync(ino, fh, false).unwrap();
            if self.power.on() {
                let f = &mut self.files[idx];
                f.durable = Some(f.data.clone());
            }
        }
        self.fs.release(ino, fh).unwrap();
    }

    fn truncate(&mut self, path: &str, size: usize) {
        let ino = self.ino(path);
        let fh = self.fs.open(&C, ino, libc::O_RDWR).unwrap();
        let set = SetAttr {
            size: Some(size as u64),
            fh: Some(fh),
            ..Default::default()
        };
        self.fs.setattr(&C, ino, &set).unwrap();
        let idx = self.names[path];
        self.files[idx].data.resize(size, 0);
        self.files[idx].durable = None;
        self.fs.fsync(ino, fh, false).unwrap();
        if self.power.on() {
            let f = &mut self.files[idx];
            f.durable = Some(f.data.clone());
        }
        self.fs.release(ino, fh).unwrap();
    }

    fn rename(&mut self, from: &str, to: &str) {
        let (fd, fname) = Self::split(from);
        let (td, tname) = Self::split(to);
        let (fp, tp) = (self.dir_ino(fd), self.dir_ino(td));
        self.fs
            .rename(&C, fp, OsStr::new(fname), tp, OsStr::new(tname), 0)
            .unwrap();
        let idx = self.names.remove(from).unwrap();
        self.names.insert(to.to_string(), idx);
        self.touch_name(from);
        self.touch_name(to);
    }

    fn unlink(&mut self, path: &str) {
        let (dir, name) = Self::split(path);
        let parent = self.dir_ino(dir);
        self.fs.unlink(&C, parent, OsStr::new(name)).unwrap();
        self.names.remove(path);
        self.touch_name(path);
    }

    fn link(&mut self, from: &str, to: &str) {
        let ino = self.ino(from);
        let (td, tname) = Self::split(to);
        let tp = self.dir_ino(td);
        self.fs.link(&C, ino, tp, OsStr::new(tname)).unwrap();
        let idx = self.names[from];
        self.names.insert(to.to_string(), idx);
        self.touch_name(to);
    }

    fn mkdir(&mut self, dir: &str) {
        self.fs
            .mkdir(&C, ROOT_INO, OsStr::new(dir), 0o755, 0)
            .unwrap();
        // A directory is modelled as a file whose content is never promised.
        self.files.push(ModelFile::default());
        self.names.insert(dir.to_string(), self.files.len() - 1);
        self.touch_name(dir);
    }

    /// fsyncdir of `dir`: every entry of it now has its name acknowledged (if every sync took effect).
    fn fsyncdir(&mut self, dir: &str, paths: &[&str]) {
        let ino = self.dir_ino(dir);
        self.fs.fsyncdir(ino, 0, false).unwrap();
        if self.power.on() {
            for p in paths {
                self.names_acked
                    .insert(p.to_string(), self.names.get(*p).copied());
            }
        }
    }

    /// A metadata snapshot now, as the periodic ones take (everything made durable first).
    fn snapshot(&mut self) {
        self.fs.snapshot_now().unwrap();
    }

    fn acked(&self) -> Acked {
        self.names_acked
            .iter()
            .map(|(p, idx)| {
                let v = idx.map(|i| self.files[i].durable.clone());
                (p.clone(), v)
            })
            .collect()
    }
}

/// The script. Small chunks (16/64/256 KiB) make files span several chunks; some content repeats (dedup).
fn workload(run: &mut Run) {
    let a = bytes(70_000, 1);
    run.mkdir("d");
    run.fsyncdir("", &["d"]);
    run.create("a", &a, true);
    run.fsyncdir("", &["a"]);
    run.create("d/b", &bytes(300_000, 2), false);
    run.create("c", &bytes(100, 3), true);
    run.fsyncdir("", &["c"]);
    run.create("g", &bytes(300_000, 7), true);
    run.fsyncdir("", &["g"]);
    run.snapshot(); // named by the pointer while the chunks below are freed
    run.truncate("g", 0); // frees all of g's chunks
    run.overwrite("a", 10_000, &bytes(5_000, 4), true);
    run.rename("c", "d/c2");
    run.fsyncdir("", &["c"]);
    run.fsyncdir("d", &["d/c2", "d/b"]);
    run.unlink("a");
    run.fsyncdir("", &["a"]);
    run.create("e", &a, true); // the same bytes as a's first version: shares chunks freed meanwhile
    run.fsyncdir("", &["e"]);
    run.snapshot(); // releases what was freed before the first; holds since the first stay
    run.truncate("e", 1_000);
    run.link("e", "d/e2");
    run.fsyncdir("d", &["d/e2"]);
    run.create("f", &bytes(600_000, 5), true);
    run.fsyncdir("", &["f"]);
    run.unlink("f"); // not acknowledged: f may or may not come back
    run.overwrite("d/b", 250_000, &bytes(100_000, 6), true);
}

/// Opens what survived the power cut and checks it. Returns a description of the first problem.
fn check(
    mems: &[Arc<MemDisk>],
    image: Vec<u8>,
    acked: &Acked,
    packed: bool,
) -> std::result::Result<(), String> {
    for m in mems {
        m.crash();
    }
    let power = Power::new();
    let store =
        Arc::new(Store::open(disks(mems, &power), PASS).map_err(|e| format!("store: {e}"))?);
    check_recovered(&store, packed).map_err(|e| format!("recovered from the disks: {e}"))?;
    let meta = Meta::open_sim(sim_file(image, &power)).map_err(|e| format!("meta: {e}"))?;
    let report = fsck(&meta, Some(&store), false).map_err(|e| format!("fsck: {e}"))?;
    if report.errors() != 0 {
        return Err(format!(
            "fsck: {}\n{:#?}",
            report.summary(),
            report.problems
        ));
    }
    let fs = Fs::start_with_meta(store.clone() as Arc<dyn Chunks>, meta, fs_opts())
        .map_err(|e| format!("start: {e}"))?;
    let result = (|| {
        for (path, want) in acked {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            let parent = if dir.is_empty() {
                ROOT_INO
            } else {
                fs.lookup(&C, ROOT_INO, OsStr::new(dir))
                    .map_err(|e| format!("{dir}: {e}"))?
                    .ino
            };
            let got = fs.lookup(&C, parent, OsStr::new(name));
            match (want, got) {
                (None, Err(_)) => {}
                (None, Ok(_)) => {
                    return Err(format!("{path}: removal acknowledged, but it is back"))
                }
                (Some(_), Err(e)) => {
                    return Err(format!("{path}: acknowledged, but lookup says {e}"))
                }
                (Some(_), Ok(attr)) if attr.kind != valencefs::fs::FileKind::File => {}
                (Some(bytes), Ok(attr)) => {
                    let fh = fs
                        .open(&C, attr.ino, libc::O_RDONLY)
                        .map_err(|e| e.to_string())?;
                    let data = fs
                        .read(attr.ino, fh, 0, attr.size as u32 + 1)
                        .map_err(|e| format!("{path}: read: {e}"))?;
                    fs.release(attr.ino, fh).map_err(|e| e.to_string())?;
                    if let Some(b) = bytes {
                        if &data != b {
                            return Err(format!(
                                "{path}: {} bytes back, {} acknowledged, content differs",
                                data.len(),
                                b.len()
                            ));
                        }
                    }
                }
            }
        }
        // Whatever exists reads back whole.
        read_all(&fs)
    })();
    fs.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    result
}

/// Every file under the root and `d` reads back whole.
fn read_all(fs: &Fs) -> std::result::Result<(), String> {
    for dir in [
        ROOT_INO,
        fs.lookup(&C, ROOT_INO, OsStr::new("d"))
            .map(|a| a.ino)
            .unwrap_or(ROOT_INO),
    ] {
        for e in fs
            .readdir(dir, 0, 0, 1000)
            .map_err(|e| e.to_string())?
            .into_iter()
            .skip(2)
        {
            let attr = fs.lookup(&C, dir, &e.name).map_err(|e| e.to_string())?;
            if attr.kind == valencefs::fs::FileKind::File {
                let fh = fs
                    .open(&C, attr.ino, libc::O_RDONLY)
                    .map_err(|e| e.to_string())?;
                let data = fs
                    .read(attr.ino, fh, 0, attr.size as u32 + 1)
                    .map_err(|err| format!("{:?}: read: {err}", e.name))?;
                fs.release(attr.ino, fh).map_err(|e| e.to_string())?;
                if data.len() as u64 != attr.size {
                    return Err(format!(
                        "{:?}: {} bytes read, size {}",
                        e.name,
                        data.len(),
                        attr.size
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The state directory lost as well: what `recover` would rebuild from the newest snapshot on the disks proves
/// its integrity (nothing lost) and reads back whole. Read-only, so the disks are as the cut left them.
fn check_recovered(store: &Arc<Store>, packed: bool) -> std::result::Result<(), String> {
    let Ok(valencefs::store::LoadedSnapshot { db, .. }) = store.load_snapshot() else {
        return Ok(()); // the cut came before the first snapshot
    };
    let proof = valencefs::maint::integrity::verify(store, None, None)
        .map_err(|e| format!("integrity: {e}"))?;
    if !proof.ok() || proof.degraded > 0 {
        return Err(format!("{} (packed stripes: {packed})", proof.summary()));
    }
    let meta = Meta::open_sim(SimFile::new(db, || true)).map_err(|e| format!("meta: {e}"))?;
    valencefs::fs::forget_holds(&meta).map_err(|e| format!("holds: {e}"))?;
    let opts = FsOptions {
        read_only: true,
        ..fs_opts()
    };
    let fs = Fs::start_with_meta(store.clone() as Arc<dyn Chunks>, meta, opts)
        .map_err(|e| format!("start: {e}"))?;
    let res = read_all(&fs);
    fs.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    res
}

/// One run of the workload with the power cut before durable step `cut + 1`; returns the number of steps the run
/// took and what it saw acknowledged, and the check's verdict.
fn trial(cut: u64, format: u16) -> (u64, usize, std::result::Result<(), String>) {
    let mems = mem_disks(5);
    let power = Power::new();
    let o = valencefs::store::CreateOptions {
        format,
        ..opts("personal")
    };
    let store = Arc::new(Store::create(disks(&mems, &power), &o, PASS).unwrap());
    let file = sim_file(Vec::new(), &power);
    power.steps.store(0, Ordering::SeqCst);
    power.cut.store(cut, Ordering::SeqCst);
    let meta = Meta::open_sim(file.clone()).unwrap();
    let fs = Fs::start_with_meta(store.clone() as Arc<dyn Chunks>, meta, fs_opts()).unwrap();
    let mut run = Run {
        fs: &fs,
        power: &power,
        files: Vec::new(),
        names: BTreeMap::new(),
        names_acked: BTreeMap::new(),
    };
    workload(&mut run);
    let acked = run.acked();
    fs.shutdown().unwrap();
    drop(fs);
    drop(store);
    let steps = power.steps.load(Ordering::SeqCst);
    (
        steps,
        acked.len(),
        check(&mems, file.durable_image(), &acked, format >= FORMAT_V3),
    )
}

#[test]
fn power_cut_before_every_durable_step_of_the_core() {
    cut_everywhere(FORMAT_VERSION);
}

/// The same with packed stripes (format v3): a stripe is written at `sync` and named by the metadata only after.
#[test]
fn power_cut_before_every_durable_step_of_the_core_over_packed_stripes() {
    cut_everywhere(FORMAT_V3);
}

fn cut_everywhere(format: u16) {
    let (total, acked, verdict) = trial(u64::MAX, format);
    verdict.expect("no cut");
    assert!(total > 30, "the workload took only {total} durable steps");
    assert!(acked >= 7, "only {acked} paths acknowledged without a cut");
    let mut failures = Vec::new();
    for cut in 0..=total {
        let (_, _, verdict) = trial(cut, format);
        if let Err(e) = verdict {
            failures.push(format!("cut before step {}: {e}", cut + 1));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cuts failed:\n{}",
        failures.len(),
        total + 1,
        failures.join("\n")
    );
    eprintln!("{} power cuts, each checked", total + 1);
}
