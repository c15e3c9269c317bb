//! Rebuilding a lost state directory from the metadata snapshot sealed on the disks.

use crate::error::{Error, Result};
use crate::store::Store;
use std::io::Write;
use std::path::Path;

/// Writes the newest readable metadata snapshot on `store`'s disks into `state_dir` (which must not already hold
/// a database). Returns the snapshot's generation. Changes made after that snapshot are not in it; chunks they
/// stored are orphans that `gc` reclaims.
pub fn recover_state(store: &Store, state_dir: &Path) -> Result<u64> {
    let db_path = state_dir.join("meta.redb");
    if db_path.exists() {
        return Err(Error::Volume(format!(
            "{} already exists: recover writes a new state directory and will not overwrite one",
            db_path.display()
        )));
    }
    let (generation, db) = store.load_snapshot()?;
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
        f.write_all(&db)?;
        f.sync_all()
    };
    write().map_err(|e| Error::io(tmp.display(), e))?;
    let meta = crate::meta::Meta::open(&tmp)?;
    forget_holds(&meta)?;
    // When the newest snapshot was unreadable this one is older than the disks' pointer; the mount's check for a
    // stale state directory must still accept it.
    let newest = store
        .snapshot_pointers()
        .first()
        .map_or(generation, |p| p.generation);
    let mut tx = meta.write()?;
    tx.set_setting(RECOVERED_AT, newest)?;
    tx.commit(true)?;
    drop(meta);
    let place = || -> std::io::Result<()> {
        std::fs::rename(&tmp, &db_path)?;
        std::fs::File::open(state_dir)?.sync_all()
    };
    place().map_err(|e| Error::io(db_path.display(), e))?;
    Ok(generation)
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
