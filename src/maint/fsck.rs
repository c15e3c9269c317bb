//! fsck: checks the metadata database for consistency (dirents, link counts, reachability, extents, chunk
//! reference counts, sizes, totals) and, optionally, that every referenced chunk still has at least k good shards.
//! `repair` fixes what can be fixed without guessing and links unreachable inodes into `/lost+found`; it never
//! deletes user data.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::Serialize;

use crate::error::Result;
use crate::fs::ROOT_INO;
use crate::meta::{ChunkRow, Inode, Meta, Time};
use crate::store::{ChunkId, Store};

use super::scrub::{good_shards, keyless_volume, stripe_on_disks};

/// Name of the directory under the root that receives unreachable inodes.
pub const LOST_FOUND: &[u8] = b"lost+found";

/// One inconsistency.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// dangling-dirent, orphan-inode, wrong-nlink, wrong-parent, extent-without-inode, unknown-chunk,
    /// extent-past-size, wrong-data-bytes, wrong-refcount, wrong-totals, chunk-degraded, chunk-unrecoverable,
    /// directory-hard-link.
    pub kind: String,
    pub detail: String,
    pub fixed: bool,
}

/// What fsck found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FsckReport {
    pub inodes: u64,
    pub dirents: u64,
    pub extents: u64,
    pub chunk_rows: u64,
    /// Chunks no longer referenced whose shards are held for recovery: a metadata snapshot `recover` could use may
    /// still reference them (FORMAT.md §10). Not a problem; the mount (or gc) frees them later.
    pub held_chunks: u64,
    /// Referenced chunks whose shards were checked (0 unless a store was given).
    pub chunks_checked: u64,
    pub problems: Vec<Problem>,
    pub repair: bool,
}

impl FsckReport {
    pub fn errors(&self) -> usize {
        self.problems.len()
    }

    pub fn uncorrected(&self) -> usize {
        self.problems.iter().filter(|p| !p.fixed).count()
    }

    /// As fsck(8): 0 no errors, 1 errors corrected, 4 errors left uncorrected.
    pub fn exit_code(&self) -> i32 {
        if self.problems.is_empty() {
            0
        } else if self.uncorrected() == 0 {
            1
        } else {
            4
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "fsck: {} inodes, {} entries, {} extents, {} chunk rows, {} chunks held for recovery: {} problems, {} \
             corrected, {} left",
            self.inodes,
            self.dirents,
            self.extents,
            self.chunk_rows,
            self.held_chunks,
            self.errors(),
            self.errors() - self.uncorrected(),
            self.uncorrected()
        )
    }
}

/// fsck(8) exit code of a run: 8 for an operational error (cannot open, I/O error), else the report's.
pub fn exit_code_for(r: &Result<FsckReport>) -> i32 {
    match r {
        Ok(r) => r.exit_code(),
        Err(_) => 8,
    }
}

fn problem(report: &mut FsckReport, kind: &str, detail: String, fixed: bool) {
    report.problems.push(Problem {
        kind: kind.into(),
        detail,
        fixed,
    })
}

fn mode_kind(mode: u32) -> u32 {
    mode & libc::S_IFMT
}

fn now() -> Time {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Time {
        sec: d.as_secs() as i64,
        nsec: d.subsec_nanos(),
    }
}

/// Checks (and with `repair`, fixes) the metadata in `meta`. With `store`, also checks that every referenced chunk
/// has at least k good shards (keyless checksum check), and repair rebuilds degraded chunks through the store.
pub fn fsck(meta: &Meta, store: Option<&Store>, repair: bool) -> Result<FsckReport> {
    let mut tx = meta.write()?;
    let mut report = FsckReport {
        repair,
        ..Default::default()
    };
    let mut inodes: BTreeMap<u64, Inode> =
        tx.all_inodes()?.into_iter().map(|i| (i.ino, i)).collect();
    let mut dirents = tx.all_dirents()?;
    let mut extents = tx.all_extents()?;
    let mut rows: BTreeMap<ChunkId, ChunkRow> = tx.all_chunks()?.into_iter().collect();
    let orphans: BTreeSet<u64> = tx.orphans()?.into_iter().collect();
    report.inodes = inodes.len() as u64;
    report.dirents = dirents.len() as u64;
    report.extents = extents.len() as u64;
    report.chunk_rows = rows.len() as u64;
    report.held_chunks = tx.all_held()?.len() as u64;
    let mut changed = false;

    // 1. Directory entries must name an existing inode inside an existing directory.
    let mut kept = Vec::with_capacity(dirents.len());
    for (parent, name, ino) in dirents.drain(..) {
        let parent_ok = inodes.get(&parent).is_some_and(|p| p.is_dir());
        if parent_ok && inodes.contains_key(&ino) {
            kept.push((parent, name, ino));
            continue;
        }
        let what = if parent_ok {
            format!("missing inode {ino}")
        } else {
            format!("missing directory {parent}")
        };
        let detail = format!(
            "entry {:?} in {parent} names {what}",
            String::from_utf8_lossy(&name)
        );
        if repair {
            tx.remove_dirent(parent, &name)?;
            changed = true;
        }
        problem(&mut report, "dangling-dirent", detail, repair);
    }
    dirents = kept;

    // 2. Extents of an inode that does not exist: the data has no name. Recreate a file to hold it (linked into
    // lost+found below) rather than drop it.
    let extent_inos: BTreeSet<u64> = extents.iter().map(|(i, _)| *i).collect();
    for ino in extent_inos {
        if inodes.contains_key(&ino) {
            continue;
        }
        let detail = format!("extents of missing inode {ino}");
        if repair {
            let t = now();
            let inode = Inode {
                ino,
                mode: libc::S_IFREG | 0o600,
                nlink: 0,
                atime: t,
                mtime: t,
                ctime: t,
                generation: 1,
                ..Default::default()
            };
            tx.put_inode(&inode)?;
            inodes.insert(ino, inode);
            changed = true;
        }
        problem(&mut report, "extent-without-inode", detail, repair);
    }

    // 3. Every inode must be reachable from the root, except unlinked-but-open ones in the orphans table.
    let mut lost_found: Option<u64> = dirents
        .iter()
        .find(|(p, n, ino)| {
            *p == ROOT_INO && n == LOST_FOUND && inodes.get(ino).is_some_and(|i| i.is_dir())
        })
        .map(|(_, _, ino)| *ino);
    loop {
        let reach = reachable(&dirents, &inodes);
        let unreachable: Vec<u64> = inodes
            .values()
            .filter(|i| i.ino != ROOT_INO && !reach.contains(&i.ino))
            .filter(|i| !(orphans.contains(&i.ino) && i.nlink == 0))
            .map(|i| i.ino)
            .collect();
        if unreachable.is_empty() {
            break;
        }
        // Link the heads of unreachable trees: inodes no entry names; a cycle of directories gets its smallest.
        let named: BTreeSet<u64> = dirents.iter().map(|(_, _, i)| *i).collect();
        let mut heads: Vec<u64> = unreachable
            .iter()
            .copied()
            .filter(|i| !named.contains(i))
            .collect();
        if heads.is_empty() {
            heads.push(unreachable[0]);
        }
        for ino in &heads {
            let i = &inodes[ino];
            problem(
                &mut report,
                "orphan-inode",
                format!(
                    "inode {ino} (mode {:o}, nlink {}) is not reachable from the root",
                    i.mode, i.nlink
                ),
                repair,
            );
        }
        if !repair {
            // Reported; linking (which would make the rest reachable) is repair's job.
            break;
        }
        changed = true;
        let lf = match lost_found {
            Some(lf) => lf,
            None => {
                let lf = make_lost_found(&mut tx, &mut inodes, &mut dirents)?;
                lost_found = Some(lf);
                lf
            }
        };
        for ino in heads {
            let name = format!("#{ino}").into_bytes();
            let kind = mode_kind(inodes[&ino].mode);
            let mut dir = inodes[&lf].clone();
            tx.add_dirent(&mut dir, &name, ino, kind)?;
            tx.put_inode(&dir)?;
            inodes.insert(lf, dir);
            dirents.push((lf, name, ino));
        }
    }

    // 4. Link counts and directory parents.
    let mut links: HashMap<u64, u32> = HashMap::new();
    let mut subdirs: HashMap<u64, u32> = HashMap::new();
    let mut parent_of: HashMap<u64, u64> = HashMap::new();
    for (parent, _, ino) in &dirents {
        *links.entry(*ino).or_default() += 1;
        if inodes[ino].is_dir() {
            *subdirs.entry(*parent).or_default() += 1;
            parent_of.insert(*ino, *parent);
        }
    }
    let inos: Vec<u64> = inodes.keys().copied().collect();
    for ino in inos {
        let i = &inodes[&ino];
        let n = links.get(&ino).copied().unwrap_or(0);
        if n == 0 && orphans.contains(&ino) && i.nlink == 0 {
            continue;
        }
        let mut fixed = i.clone();
        if i.is_dir() {
            if n > 1 {
                problem(
                    &mut report,
                    "directory-hard-link",
                    format!("directory {ino} has {n} entries naming it"),
                    false,
                );
            }
            fixed.nlink = 2 + subdirs.get(&ino).copied().unwrap_or(0);
            let parent = if ino == ROOT_INO {
                ROOT_INO
            } else {
                parent_of.get(&ino).copied().unwrap_or(i.parent)
            };
            if i.parent != parent {
                problem(
                    &mut report,
                    "wrong-parent",
                    format!(
                        "directory {ino}: parent {} but it is listed in {parent}",
                        i.parent
                    ),
                    repair,
                );
                fixed.parent = parent;
            }
        } else {
            fixed.nlink = n;
        }
        if fixed.nlink != i.nlink {
            problem(
                &mut report,
                "wrong-nlink",
                format!("inode {ino}: nlink {} but {} links", i.nlink, fixed.nlink),
                repair,
            );
        }
        if fixed != *i && repair {
            tx.put_inode(&fixed)?;
            inodes.insert(ino, fixed);
            changed = true;
        }
    }

    // 5. Extents: known chunks, within the size; data_bytes is their sum.
    let mut data_bytes: HashMap<u64, u64> = HashMap::new();
    let mut max_end: HashMap<u64, u64> = HashMap::new();
    let mut refs: BTreeMap<ChunkId, u64> = BTreeMap::new();
    let keyless = store.map(|s| (s.disks(), keyless_volume(&s.disks())));
    for (ino, e) in &extents {
        *data_bytes.entry(*ino).or_default() += e.len as u64;
        let end = max_end.entry(*ino).or_default();
        *end = (*end).max(e.end());
        *refs.entry(e.chunk).or_default() += 1;
        if rows.contains_key(&e.chunk) {
            continue;
        }
        // A row can be recreated only from the chunk itself: its plaintext length needs the key.
        let mut fixed = false;
        if let (true, Some(s)) = (repair, store) {
            if let Ok(plain) = s.get(&e.chunk) {
                let (stored, stripe) = match (&keyless, s.stripe_chunk_check(&e.chunk)) {
                    (_, Some(c)) => (c.bytes, c.stripe.unwrap_or_default()),
                    (Some((disks, Ok(vol))), None) => (
                        shard_bytes(disks, vol, &e.chunk),
                        stripe_on_disks(disks, vol, &e.chunk).unwrap_or_default(),
                    ),
                    _ => (0, [0; 32]),
                };
                let row = ChunkRow {
                    refs: 0,
                    len: plain.len() as u64,
                    stored,
                    stripe,
                };
                tx.put_chunk_row(&e.chunk, &row)?;
                rows.insert(e.chunk, row);
                fixed = true;
                changed = true;
            }
        }
        problem(
            &mut report,
            "unknown-chunk",
            format!(
                "inode {ino} extent at {} references chunk {} which has no row{}",
                e.offset,
                e.chunk.to_hex(),
                if fixed {
                    " (row rebuilt from the chunk)"
                } else {
                    ""
                }
            ),
            fixed,
        );
    }
    extents.clear();
    let inos: Vec<u64> = inodes.keys().copied().collect();
    for ino in inos {
        let i = &inodes[&ino];
        let mut fixed = i.clone();
        let db = data_bytes.get(&ino).copied().unwrap_or(0);
        if i.data_bytes != db {
            problem(
                &mut report,
                "wrong-data-bytes",
                format!(
                    "inode {ino}: data_bytes {} but extents cover {db}",
                    i.data_bytes
                ),
                repair,
            );
            fixed.data_bytes = db;
        }
        let end = max_end.get(&ino).copied().unwrap_or(0);
        if end > i.size {
            // Growing the size keeps the data reachable; truncating would drop it.
            problem(
                &mut report,
                "extent-past-size",
                format!("inode {ino}: size {} but extents reach {end}", i.size),
                repair,
            );
            fixed.size = end;
        }
        if fixed != *i && repair {
            tx.put_inode(&fixed)?;
            inodes.insert(ino, fixed);
            changed = true;
        }
    }

    // 6. Reference counts equal a recount of the extents.
    for (id, row) in rows.iter_mut() {
        let n = refs.get(id).copied().unwrap_or(0);
        if row.refs != n {
            problem(
                &mut report,
                "wrong-refcount",
                format!(
                    "chunk {}: refcount {} but {n} extents",
                    id.to_hex(),
                    row.refs
                ),
                repair,
            );
            if repair {
                row.refs = n;
                tx.put_chunk_row(id, row)?;
                changed = true;
            }
        }
    }

    // 7. Totals in the settings table.
    let live = rows.values().filter(|r| r.refs > 0);
    let want = (
        inodes.len() as u64,
        live.clone().map(|r| r.len).sum::<u64>(),
        live.map(|r| r.stored).sum::<u64>(),
    );
    let have = tx.totals()?;
    if (have.inodes, have.chunk_bytes, have.stored_bytes) != want {
        problem(
            &mut report,
            "wrong-totals",
            format!(
                "totals (inodes, chunk bytes, stored bytes) are ({}, {}, {}) but recount gives {want:?}",
                have.inodes, have.chunk_bytes, have.stored_bytes
            ),
            repair,
        );
        if repair {
            tx.set_setting("inodes", want.0)?;
            tx.set_setting("chunk_bytes", want.1)?;
            tx.set_setting("stored_bytes", want.2)?;
            changed = true;
        }
    }

    // 8. Every referenced chunk has at least k good shards (keyless check); repair rebuilds degraded ones.
    if let (Some(store), Some((disks, vol))) = (store, &keyless) {
        let vol = match vol {
            Ok(v) => v,
            Err(e) => return Err(crate::Error::Volume(e.to_string())),
        };
        let (k, n) = (
            vol.expect.k as usize,
            (vol.expect.k + vol.expect.m) as usize,
        );
        for id in refs.keys() {
            report.chunks_checked += 1;
            // A chunk in a packed stripe (format v3): its pieces, checked the same way, through the store's map.
            let in_stripe = store.stripe_chunk_check(id);
            let good = match &in_stripe {
                Some(c) => c.good,
                None => good_shards(disks, vol, id),
            };
            if good == n {
                continue;
            }
            if good < k {
                problem(
                    &mut report,
                    "chunk-unrecoverable",
                    format!("chunk {}: {good} good shards, need {k}", id.to_hex()),
                    false,
                );
                continue;
            }
            let fixed = repair
                && if in_stripe.is_some() {
                    store.repair_chunk_stripe(id).is_ok()
                        && store.stripe_chunk_check(id).is_some_and(|c| c.good == n)
                } else {
                    store.scrub(id).is_ok() && good_shards(disks, vol, id) == n
                };
            problem(
                &mut report,
                "chunk-degraded",
                format!("chunk {}: {good} of {n} shards good", id.to_hex()),
                fixed,
            );
        }
        if repair {
            store.sync()?;
        }
    }

    if changed {
        tx.commit(true)?;
    }
    Ok(report)
}

/// Inodes reachable from the root through `dirents` (directories are descended once).
fn reachable(dirents: &[(u64, Vec<u8>, u64)], inodes: &BTreeMap<u64, Inode>) -> BTreeSet<u64> {
    let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
    for (p, _, i) in dirents {
        children.entry(*p).or_default().push(*i);
    }
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<u64> = [ROOT_INO].into_iter().collect();
    while let Some(d) = queue.pop_front() {
        if !seen.insert(d) {
            continue;
        }
        if inodes.get(&d).is_some_and(|i| i.is_dir()) {
            for c in children.get(&d).into_iter().flatten() {
                queue.push_back(*c);
            }
        }
    }
    seen
}

fn make_lost_found(
    tx: &mut crate::meta::Tx,
    inodes: &mut BTreeMap<u64, Inode>,
    dirents: &mut Vec<(u64, Vec<u8>, u64)>,
) -> Result<u64> {
    let ino = tx.alloc_ino()?;
    let t = now();
    let lf = Inode::new(ino, libc::S_IFDIR | 0o700, ROOT_INO, 0, 0, t);
    tx.put_inode(&lf)?;
    let mut root = inodes[&ROOT_INO].clone();
    tx.add_dirent(&mut root, LOST_FOUND, ino, libc::S_IFDIR)?;
    root.nlink += 1;
    tx.put_inode(&root)?;
    inodes.insert(ROOT_INO, root);
    inodes.insert(ino, lf);
    dirents.push((ROOT_INO, LOST_FOUND.to_vec(), ino));
    Ok(ino)
}

fn shard_bytes(
    disks: &[std::sync::Arc<dyn crate::store::Disk>],
    vol: &super::scrub::KeylessVolume,
    id: &ChunkId,
) -> u64 {
    use crate::store::scan::{check_shard, shard_disk, ShardCheck};
    (0..(vol.expect.k + vol.expect.m) as usize)
        .map(|i| {
            let d = shard_disk(id, i, vol.disk_count);
            match check_shard(disks[d].as_ref(), id, i, &vol.expect) {
                ShardCheck::Good { bytes, .. } => bytes,
                _ => 0,
            }
        })
        .sum()
}
