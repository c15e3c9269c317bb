//! Model-based property test: random operation sequences against the core and a simple in-memory reference model
//! agree on every file's bytes, xattrs and directory listing, before and after closing and reopening the volume.

use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::sync::Arc;
use valencefs::fs::{Ctx, FileKind, Fs, FsOptions, MemChunks, SetAttr, ROOT_INO};

const C: Ctx = Ctx::ROOT;
const DIRS: [&str; 3] = ["", "d0", "d1"];
const NAMES: [&str; 3] = ["f0", "f1", "f2"];

#[derive(Clone, Debug)]
enum Op {
    Create(usize, usize),
    Write(usize, usize, u64, usize, u8),
    Truncate(usize, usize, u64),
    Punch(usize, usize, u64, u64),
    /// fallocate FALLOC_FL_ZERO_RANGE, with KEEP_SIZE or without (then it extends the size).
    Zero(usize, usize, u64, u64, bool),
    /// fallocate mode 0: extends the size (zeros), never changes bytes.
    Allocate(usize, usize, u64, u64),
    Rename(usize, usize, usize, usize),
    Link(usize, usize, usize, usize),
    Unlink(usize, usize),
    Mkdir(usize),
    Rmdir(usize),
    SetXattr(usize, usize, u8, u8),
    Sync,
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..DIRS.len();
    let nm = 0..NAMES.len();
    prop_oneof![
        3 => (d.clone(), nm.clone()).prop_map(|(a, b)| Op::Create(a, b)),
        4 => (d.clone(), nm.clone(), 0u64..300_000, 0usize..80_000, any::<u8>()).prop_map(|(a, b, o, l, s)| Op::Write(a, b, o, l, s)),
        // Small writes into what is already there: the core stores these as patches over stored chunks.
        3 => (d.clone(), nm.clone(), 0u64..120_000, 1usize..6_000, any::<u8>()).prop_map(|(a, b, o, l, s)| Op::Write(a, b, o, l, s)),
        2 => (d.clone(), nm.clone(), 0u64..300_000).prop_map(|(a, b, s)| Op::Truncate(a, b, s)),
        2 => (d.clone(), nm.clone(), 0u64..300_000, 1u64..100_000).prop_map(|(a, b, o, l)| Op::Punch(a, b, o, l)),
        1 => (d.clone(), nm.clone(), 0u64..300_000, 1u64..100_000).prop_map(|(a, b, o, l)| Op::Allocate(a, b, o, l)),
        1 => (d.clone(), nm.clone(), 0u64..300_000, 1u64..100_000, any::<bool>()).prop_map(|(a, b, o, l, k)| Op::Zero(a, b, o, l, k)),
        2 => (d.clone(), nm.clone(), d.clone(), nm.clone()).prop_map(|(a, b, c, e)| Op::Rename(a, b, c, e)),
        1 => (d.clone(), nm.clone(), d.clone(), nm.clone()).prop_map(|(a, b, c, e)| Op::Link(a, b, c, e)),
        1 => (d.clone(), nm.clone()).prop_map(|(a, b)| Op::Unlink(a, b)),
        1 => (1..DIRS.len()).prop_map(Op::Mkdir),
        1 => (1..DIRS.len()).prop_map(Op::Rmdir),
        1 => (d.clone(), nm.clone(), 0u8..3, any::<u8>()).prop_map(|(a, b, k, v)| Op::SetXattr(a, b, k, v)),
        2 => Just(Op::Sync),
    ]
}

/// A file's bytes and xattrs.
type ModelFile = (Vec<u8>, BTreeMap<String, Vec<u8>>);

/// The reference: files are numbered; names map to them (hard links share a number).
#[derive(Default)]
struct Model {
    dirs: [bool; 3],
    names: BTreeMap<(usize, usize), usize>,
    files: HashMap<usize, ModelFile>,
    next: usize,
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn dir_ino(fs: &Fs, d: usize) -> Option<u64> {
    if d == 0 {
        return Some(ROOT_INO);
    }
    fs.lookup(&C, ROOT_INO, os(DIRS[d])).ok().map(|a| a.ino)
}

fn file_ino(fs: &Fs, d: usize, n: usize) -> Option<u64> {
    fs.lookup(&C, dir_ino(fs, d)?, os(NAMES[n]))
        .ok()
        .map(|a| a.ino)
}

fn fill(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i / 7) as u8).wrapping_mul(31))
        .collect()
}

/// Applies one op to both; returns whether the two agreed on success.
fn apply(fs: &Fs, m: &mut Model, op: &Op) -> Result<(), String> {
    let exists = |m: &Model, d: usize| d == 0 || m.dirs[d];
    match *op {
        Op::Create(d, n) => {
            let want = exists(m, d) && !m.names.contains_key(&(d, n));
            let got =
                dir_ino(fs, d).map(|p| fs.create(&C, p, os(NAMES[n]), 0o644, 0, libc::O_RDWR));
            let ok = matches!(got, Some(Ok(_)));
            if let Some(Ok((a, fh))) = got {
                fs.release(a.ino, fh).unwrap();
            }
            if ok != want {
                return Err(format!("create ok={ok} want={want}"));
            }
            if want {
                m.next += 1;
                m.names.insert((d, n), m.next);
                m.files.insert(m.next, Default::default());
            }
        }
        Op::Write(d, n, off, len, seed) => {
            let Some(&f) = m.names.get(&(d, n)) else {
                return Ok(());
            };
            let ino = file_ino(fs, d, n).ok_or("file missing")?;
            let data = fill(len, seed);
            let fh = fs.open(&C, ino, libc::O_RDWR).map_err(|e| e.to_string())?;
            fs.write(ino, fh, off, &data).map_err(|e| e.to_string())?;
            fs.release(ino, fh).map_err(|e| e.to_string())?;
            let buf = &mut m.files.get_mut(&f).unwrap().0;
            if len > 0 {
                let end = off as usize + len;
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[off as usize..end].copy_from_slice(&data);
            }
        }
        Op::Truncate(d, n, size) => {
            let Some(&f) = m.names.get(&(d, n)) else {
                return Ok(());
            };
            let ino = file_ino(fs, d, n).ok_or("file missing")?;
            fs.setattr(
                &C,
                ino,
                &SetAttr {
                    size: Some(size),
                    ..Default::default()
                },
            )
            .map_err(|e| e.to_string())?;
            m.files.get_mut(&f).unwrap().0.resize(size as usize, 0);
        }
        Op::Punch(d, n, off, len) => {
            let Some(&f) = m.names.get(&(d, n)) else {
                return Ok(());
            };
            let ino = file_ino(fs, d, n).ok_or("file missing")?;
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            fs.fallocate(ino, 0, off, len, mode)
                .map_err(|e| e.to_string())?;
            let buf = &mut m.files.get_mut(&f).unwrap().0;
            let end = ((off + len) as usize).min(buf.len());
            if (off as usize) < end {
                buf[off as usize..end].fill(0);
            }
        }
        Op::Zero(d, n, off, len, keep) => {
            let Some(&f) = m.names.get(&(d, n)) else {
                return Ok(());
            };
            let ino = file_ino(fs, d, n).ok_or("file missing")?;
            let mode =
                libc::FALLOC_FL_ZERO_RANGE | if keep { libc::FALLOC_FL_KEEP_SIZE } else { 0 };
            fs.fallocate(ino, 0, off, len, mode)
                .map_err(|e| e.to_string())?;
            let buf = &mut m.files.get_mut(&f).unwrap().0;
            let end = (off + len) as usize;
            if !keep && buf.len() < end {
                buf.resize(end, 0);
            }
            let stop = end.min(buf.len());
            if (off as usize) < stop {
                buf[off as usize..stop].fill(0);
            }
        }
        Op::Allocate(d, n, off, len) => {
            let Some(&f) = m.names.get(&(d, n)) else {
                return Ok(());
            };
            let ino = file_ino(fs, d, n).ok_or("file missing")?;
            fs.fallocate(ino, 0, off, len, 0)
                .map_err(|e| e.to_string())?;
            let buf = &mut m.files.get_mut(&f).unwrap().0;
            let end = (off + len) as usize;
            if buf.len() < end {
                buf.resize(end, 0);
            }
        }
        Op::Rename(d1, n1, d2, n2) => {
            let src = m.names.get(&(d1, n1)).copied();
            let want = src.is_some() && exists(m, d2);
            let got = match (dir_ino(fs, d1), dir_ino(fs, d2)) {
                (Some(a), Some(b)) => fs.rename(&C, a, os(NAMES[n1]), b, os(NAMES[n2]), 0).is_ok(),
                _ => false,
            };
            if got != want {
                return Err(format!("rename ok={got} want={want}"));
            }
            if let (true, Some(f)) = (want, src) {
                if m.names.get(&(d2, n2)) != Some(&f) {
                    m.names.remove(&(d1, n1));
                    m.names.insert((d2, n2), f);
                }
            }
        }
        Op::Link(d1, n1, d2, n2) => {
            let src = m.names.get(&(d1, n1)).copied();
            let want = src.is_some() && exists(m, d2) && !m.names.contains_key(&(d2, n2));
            let got = match (file_ino(fs, d1, n1), dir_ino(fs, d2)) {
                (Some(i), Some(b)) => fs.link(&C, i, b, os(NAMES[n2])).is_ok(),
                _ => false,
            };
            if got != want {
                return Err(format!("link ok={got} want={want}"));
            }
            if want {
                m.names.insert((d2, n2), src.unwrap());
            }
        }
        Op::Unlink(d, n) => {
            let want = m.names.contains_key(&(d, n));
            let got = dir_ino(fs, d)
                .map(|p| fs.unlink(&C, p, os(NAMES[n])).is_ok())
                .unwrap_or(false);
            if got != want {
                return Err(format!("unlink ok={got} want={want}"));
            }
            m.names.remove(&(d, n));
        }
        Op::Mkdir(d) => {
            let want = !m.dirs[d];
            let got = fs.mkdir(&C, ROOT_INO, os(DIRS[d]), 0o755, 0).is_ok();
            if got != want {
                return Err(format!("mkdir ok={got} want={want}"));
            }
            m.dirs[d] = true;
        }
        Op::Rmdir(d) => {
            let want = m.dirs[d] && !m.names.keys().any(|(dd, _)| *dd == d);
            let got = fs.rmdir(&C, ROOT_INO, os(DIRS[d])).is_ok();
            if got != want {
                return Err(format!("rmdir ok={got} want={want}"));
            }
            if want {
                m.dirs[d] = false;
            }
        }
        Op::SetXattr(d, n, k, v) => {
            let Some(&f) = m.names.get(&(d, n)) else {
                return Ok(());
            };
            let ino = file_ino(fs, d, n).ok_or("file missing")?;
            let key = format!("user.k{k}");
            fs.setxattr(&C, ino, os(&key), &[v; 3], 0)
                .map_err(|e| e.to_string())?;
            m.files.get_mut(&f).unwrap().1.insert(key, vec![v; 3]);
        }
        Op::Sync => fs.sync_all().map_err(|e| e.to_string())?,
    }
    Ok(())
}

fn compare(fs: &Fs, m: &Model) -> Result<(), String> {
    for d in 0..DIRS.len() {
        let Some(dino) = dir_ino(fs, d) else {
            if d == 0 || m.dirs[d] {
                return Err(format!("dir {d} missing"));
            }
            continue;
        };
        if d > 0 && !m.dirs[d] {
            return Err(format!("dir {d} should not exist"));
        }
        let mut listed: Vec<String> = fs
            .readdir(dino, 0, 0, 1000)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|e| e.kind == FileKind::File)
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect();
        listed.sort();
        let want: Vec<String> = m
            .names
            .keys()
            .filter(|(dd, _)| *dd == d)
            .map(|(_, n)| NAMES[*n].to_string())
            .collect();
        if listed != want {
            return Err(format!("dir {d}: listed {listed:?}, want {want:?}"));
        }
        for (&(_, n), f) in m.names.iter().filter(|((dd, _), _)| *dd == d) {
            let ino = file_ino(fs, d, n).ok_or("file missing")?;
            let (data, xattrs) = &m.files[f];
            let attr = fs.getattr(ino).map_err(|e| e.to_string())?;
            if attr.size != data.len() as u64 {
                return Err(format!("{d}/{n}: size {} want {}", attr.size, data.len()));
            }
            let links = m.names.values().filter(|x| *x == f).count() as u32;
            if attr.nlink != links {
                return Err(format!("{d}/{n}: nlink {} want {links}", attr.nlink));
            }
            let fh = fs
                .open(&C, ino, libc::O_RDONLY)
                .map_err(|e| e.to_string())?;
            let got = fs
                .read(ino, fh, 0, data.len() as u32 + 10)
                .map_err(|e| e.to_string())?;
            fs.release(ino, fh).map_err(|e| e.to_string())?;
            if &got != data {
                let at = got.iter().zip(data.iter()).position(|(a, b)| a != b);
                return Err(format!(
                    "{d}/{n}: bytes differ (first at {at:?}, len {} vs {})",
                    got.len(),
                    data.len()
                ));
            }
            for (k, v) in xattrs {
                if fs.getxattr(&C, ino, os(k)).map_err(|e| e.to_string())? != *v {
                    return Err(format!("{d}/{n}: xattr {k}"));
                }
            }
        }
    }
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let chunks = Arc::new(MemChunks::new());
    // A small cache budget makes background flushes and back-pressure happen during the sequence.
    let opts = FsOptions {
        cache_size: 256 << 10,
        ..Default::default()
    };
    let fs = Fs::start(chunks.clone(), dir.path(), opts.clone()).unwrap();
    let mut m = Model::default();
    for (i, op) in ops.iter().enumerate() {
        apply(&fs, &mut m, op).map_err(|e| TestCaseError::fail(format!("op {i} {op:?}: {e}")))?;
    }
    compare(&fs, &m).map_err(|e| TestCaseError::fail(format!("before reopen: {e}")))?;
    fs.shutdown().unwrap();
    drop(fs);
    let fs = Fs::start(chunks, dir.path(), opts).unwrap();
    compare(&fs, &m).map_err(|e| TestCaseError::fail(format!("after reopen: {e}")))?;
    fs.shutdown().unwrap();
    Ok(())
}

#[test]
fn directed_punch_after_sync() {
    run(&[
        Op::Create(0, 0),
        Op::Write(0, 0, 0, 50_000, 3),
        Op::Sync,
        Op::Punch(0, 0, 10_000, 100),
    ])
    .unwrap();
}

#[test]
fn directed_zero_range() {
    run(&[
        Op::Create(0, 0),
        Op::Write(0, 0, 0, 50_000, 3),
        Op::Sync,
        Op::Zero(0, 0, 10_000, 100, true),
        Op::Zero(0, 0, 40_000, 20_000, false),
        Op::Write(0, 0, 65_000, 100, 4),
        Op::Zero(0, 0, 64_000, 2_000, true),
        Op::Zero(0, 0, 65_000, 3_000, false),
    ])
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]
    #[test]
    fn core_agrees_with_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(&ops)?;
    }
}
