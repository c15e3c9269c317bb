//! Rebuilding a lost state directory from the metadata snapshot sealed on the disks.

use crate::error::{Error, Result};
use crate::store::Store;
use std::io::Write;
use std::path::Path;

/// What [`recover_state`] restored, and how sure the disks can make anyone of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The generation sealed inside the snapshot restored (its own `snapshot_generation`, authenticated with it).
    pub generation: u64,
    /// The newest generation any readable metadata pointer on the disks names.
    pub newest_pointer: u64,
    /// The snapshot the newest pointer names did not read back, and an older one was restored.
    pub fell_back: bool,
}

impl Recovered {
    /// What `valencefs recover` prints. Pointers carry no time, so the generation is all there is to show; and no
    /// disk can prove a snapshot is the newest the volume had: whoever holds the disks can delete newer pointers
    /// and snapshot shards, or put back older disk images, and the older pointers still authenticate.
    pub fn summary(&self) -> String {
        if self.fell_back {
            format!(
                "FELL BACK to an older metadata snapshot: the newest pointer on the disks names generation {}, \
                 whose snapshot did not read back; restored generation {} instead. Metadata changes after \
                 generation {} are lost (the chunks they wrote are orphans for `valencefs gc`). If you did not \
                 expect damage, someone holding the disks may have deleted the newer snapshot",
                self.newest_pointer, self.generation, self.generation
            )
        } else {
            format!(
                "restored metadata snapshot generation {}, the newest any pointer on these disks names. Pointers \
                 record no time, and the disks cannot prove that no newer snapshot existed (deleted newer \
                 pointers or restored older disk images look the same): if you know of a later generation, the \
                 disks were rolled back",
                self.generation
            )
        }
    }
}

/// At mount: the disks' newest metadata pointer is older than the last snapshot this machine's database took, or
/// the disks hold no pointer at all. Disk images put back from an older copy, or newer pointers (and snapshot
/// shards) deleted, look like this; so does a crash or a disk failure while a snapshot was being saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisksRolledBack {
    /// The database's `snapshot_generation`: the newest snapshot this machine took.
    pub database: u64,
    /// The newest generation a readable pointer on the disks names; `None` when no disk has one.
    pub disks: Option<u64>,
}

impl DisksRolledBack {
    /// Compares the database's snapshot generation with the disks' newest pointer.
    pub fn check(database: u64, disks: Option<u64>) -> Option<DisksRolledBack> {
        (database > 0 && disks.map_or(true, |g| g < database))
            .then_some(DisksRolledBack { database, disks })
    }

    /// The mount's warning, with what it means and what to do.
    pub fn message(&self, read_only: bool) -> String {
        let disks = match self.disks {
            Some(g) => format!("the disks' newest metadata pointer names generation {g}"),
            None => "no disk holds a readable metadata pointer".to_string(),
        };
        let next = if read_only {
            "This read-only mount writes no snapshot: until a read-write mount does, `valencefs recover` from \
             these disks would restore that older state"
                .to_string()
        } else {
            format!(
                "The next metadata snapshot (generation {}) overwrites the pointers on every usable disk",
                self.database + 1
            )
        };
        format!(
            "DISKS OLDER THAN THIS MACHINE'S METADATA: {disks}, but this database took snapshot generation {}. \
             The disks were rolled back (older disk images put back, or newer pointers and snapshot shards \
             deleted by someone holding them), or the last snapshot never reached them (a crash or disk failure \
             while it was saved). Mounting anyway: this database is the newest metadata, and every chunk read is \
             verified, so chunks missing from rolled-back disks fail to read (EIO) rather than show old data; \
             `valencefs scrub --integrity` (unmounted) proves whether all of them are there. {next}",
            self.database
        )
    }
}

/// Writes the newest readable metadata snapshot on `store`'s disks into `state_dir` (which must not already hold
/// a database). Changes made after that snapshot are not in it; chunks they stored are orphans that `gc`
/// reclaims.
pub fn recover_state(store: &Store, state_dir: &Path) -> Result<Recovered> {
    let db_path = state_dir.join("meta.redb");
    if db_path.exists() {
        return Err(Error::Volume(format!(
            "{} already exists: recover writes a new state directory and will not overwrite one",
            db_path.display()
        )));
    }
    let loaded = store.load_snapshot()?;
    super::state_dir::ensure_private(state_dir)?;
    let tmp = state_dir.join("meta.redb.recovering");
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&loaded.db)?;
        f.sync_all()
    };
    write().map_err(|e| Error::io(tmp.display(), e))?;
    let meta = crate::meta::Meta::open(&tmp)?;
    forget_holds(&meta)?;
    let mut tx = meta.write()?;
    // The snapshot records its own generation (bumped and committed before the image was copied). A previous
    // snapshot's is known only from there: a save that failed after bumping leaves a gap, so it may be below G-1.
    let sealed = tx.setting("snapshot_generation")?;
    if let Some(g) = loaded.pointer_generation().filter(|&g| g != sealed) {
        tracing::warn!(
            "the metadata pointer at generation {g} names a snapshot that records generation {sealed}; \
             taking the snapshot's own"
        );
    }
    let newest = loaded.newest;
    let recovered = Recovered {
        generation: sealed,
        newest_pointer: newest,
        fell_back: loaded.is_previous || sealed < newest,
    };
    if recovered.fell_back {
        tracing::warn!("{}", recovered.summary());
    }
    // When the newest snapshot was unreadable this one is older than the disks' pointer; the mount's check for a
    // stale state directory must still accept it.
    tx.set_setting(RECOVERED_AT, newest)?;
    tx.commit(true)?;
    drop(meta);
    let place = || -> std::io::Result<()> {
        std::fs::rename(&tmp, &db_path)?;
        std::fs::File::open(state_dir)?.sync_all()
    };
    place().map_err(|e| Error::io(db_path.display(), e))?;
    Ok(recovered)
}

/// Setting of a database written by [`recover_state`]: the newest snapshot generation on the disks at that time.
/// The database is as new as the disks up to that generation, whatever generation its snapshot had.
pub const RECOVERED_AT: &str = "recovered_at_generation";

/// Drops the snapshot's held chunks (FORMAT.md §10) from a recovered database, durably. The mount that wrote the
/// snapshot may have deleted some of them since, so reviving one would reference lost shards; those still on the
/// disks become orphans for `gc`, which keeps whatever a usable snapshot references.
pub fn forget_holds(meta: &crate::meta::Meta) -> Result<u64> {
    let mut tx = meta.write()?;
    let n = tx.clear_held()?;
    tx.commit(true)?;
    Ok(n)
}
