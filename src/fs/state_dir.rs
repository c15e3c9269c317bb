//! The state directory's permissions: it holds the metadata database, which names every file with its size, owner
//! and times, so only its owner may enter it (0700) and the database file is 0600 (set by `Meta::open`).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Creates `dir` (and missing ancestors) as 0700, or tightens an existing one that lets group or others in
/// (state directories created before this rule were 0755), saying so in the log. A directory the process may not
/// chmod (another owner) is left as it is, with a warning.
pub fn ensure_private(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir.display(), e))?;
    let mode = std::fs::metadata(dir)
        .map_err(|e| Error::io(dir.display(), e))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let tight = mode & !0o077;
    match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(tight)) {
        Ok(()) => tracing::info!(
            "{}: state directory mode {mode:04o} let other users read the metadata (file names, sizes); \
             tightened to {tight:04o}",
            dir.display()
        ),
        Err(e) => tracing::warn!(
            "{}: state directory mode {mode:04o} lets other users read the metadata (file names, sizes), and \
             it cannot be tightened ({e}); run: chmod go-rwx {}",
            dir.display(),
            dir.display()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_directories_are_private_and_old_ones_are_tightened() {
        let t = tempfile::tempdir().unwrap();
        let fresh = t.path().join("a/state");
        ensure_private(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        let old = t.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private(&old).unwrap();
        assert_eq!(mode(&old), 0o700);
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o1750)).unwrap();
        ensure_private(&old).unwrap();
        assert_eq!(mode(&old), 0o1700);
    }
}
