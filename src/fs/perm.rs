//! Permission checks for callers when the kernel does not make them (no `default_permissions`).

use super::Ctx;
use crate::error::{Error, Result};
use crate::meta::Inode;

pub const R: u32 = 4;
pub const W: u32 = 2;
pub const X: u32 = 1;

/// Whether `ctx` may access `inode` with `mask` (a combination of R, W, X), by the classic owner/group/other bits.
/// Root may read and write anything, and execute anything with at least one execute bit (or any directory).
pub fn allowed(ctx: &Ctx, inode: &Inode, mask: u32) -> bool {
    if ctx.uid == 0 {
        return mask & X == 0 || inode.is_dir() || inode.mode & 0o111 != 0;
    }
    let bits = if ctx.uid == inode.uid {
        (inode.mode >> 6) & 7
    } else if ctx.gid == inode.gid {
        (inode.mode >> 3) & 7
    } else {
        inode.mode & 7
    };
    bits & mask == mask
}

/// `allowed`, as an `EACCES` error, and only when `enabled`.
pub fn check(enabled: bool, ctx: &Ctx, inode: &Inode, mask: u32) -> Result<()> {
    if enabled && !allowed(ctx, inode, mask) {
        return Err(Error::Access);
    }
    Ok(())
}

/// The sticky-directory rule: in a sticky directory only the owner of the entry, of the directory, or root may remove
/// or rename it.
pub fn check_sticky(enabled: bool, ctx: &Ctx, dir: &Inode, victim: &Inode) -> Result<()> {
    if enabled
        && dir.mode & libc::S_ISVTX != 0
        && ctx.uid != 0
        && ctx.uid != dir.uid
        && ctx.uid != victim.uid
    {
        return Err(Error::Perm);
    }
    Ok(())
}
