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
    std::fs::create_dir_all(state_dir).map_err(|e| Error::io(state_dir.display(), e))?;
    let tmp = state_dir.join("meta.redb.recovering");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&db)?;
        f.sync_all()
    };
    write().map_err(|e| Error::io(tmp.display(), e))?;
    forget_holds(&crate::meta::Meta::open(&tmp)?)?;
    let place = || -> std::io::Result<()> {
        std::fs::rename(&tmp, &db_path)?;
        std::fs::File::open(state_dir)?.sync_all()
    };
    place().map_err(|e| Error::io(db_path.display(), e))?;
    Ok(generation)
}

/// Drops the snapshot's held chunks (FORMAT.md §10) from a recovered database, durably. The mount that wrote the
/// snapshot may have deleted some of them since, so reviving one would reference lost shards; those still on the
/// disks become orphans for `gc`, which keeps whatever a usable snapshot references.
pub fn forget_holds(meta: &crate::meta::Meta) -> Result<u64> {
    let mut tx = meta.write()?;
    let n = tx.clear_held()?;
    tx.commit(true)?;
    Ok(n)
}
