//! Extended attributes: user., trusted. and security. namespaces with XATTR_CREATE / XATTR_REPLACE, and the
//! POSIX ACL names when ACLs are enabled (see [`super::acl`]).

use super::acl;
use super::perm::{self, R, W};
use super::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;

/// Largest value accepted (the kernel's XATTR_SIZE_MAX).
const VALUE_MAX: usize = 65536;
/// File capabilities: the kernel asks for this attribute before every write to a file (to drop it), so it has a
/// fast path.
pub(crate) const CAPABILITY: &[u8] = b"security.capability";

impl Fs {
    /// Validates a name and checks the caller may touch it (`mask` R or W) on `inode`.
    fn xattr_check<'a>(
        &self,
        ctx: &Ctx,
        inode: &Inode,
        name: &'a OsStr,
        mask: u32,
    ) -> Result<&'a [u8]> {
        let n = name.as_bytes();
        if n.is_empty() || n.len() > 255 {
            return Err(if n.is_empty() {
                Error::Invalid("empty attribute name".into())
            } else {
                Error::Range
            });
        }
        let check = self.opts.check_permissions;
        if n.starts_with(b"user.") {
            let kind = inode.mode & libc::S_IFMT;
            if kind != libc::S_IFREG && kind != libc::S_IFDIR {
                return Err(if mask == W {
                    Error::Perm
                } else {
                    Error::NoXattr
                });
            }
            perm::check(check, ctx, inode, mask)?;
        } else if n.starts_with(b"trusted.") {
            if ctx.uid != 0 && check {
                return Err(if mask == W {
                    Error::Perm
                } else {
                    Error::NoXattr
                });
            }
        } else if n.starts_with(b"security.") {
            if mask == W && check && ctx.uid != 0 && ctx.uid != inode.uid {
                return Err(Error::Perm);
            }
        } else if (n == acl::ACCESS || n == acl::DEFAULT) && self.acls() {
            // Only the owner (or root) may set an ACL; anyone may read one.
            if mask == W && check && ctx.uid != 0 && ctx.uid != inode.uid {
                return Err(Error::Perm);
            }
        } else {
            // Other system.* names, unknown namespaces, and ACLs when nothing would enforce them.
            return Err(Error::NotSupported);
        }
        Ok(n)
    }

    pub fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        self.writable()?;
        if value.len() > VALUE_MAX {
            return Err(Error::TooBig);
        }
        let mut g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let mut inode = g.inode(&mut tx, ino)?;
        let n = self.xattr_check(ctx, &inode, name, W)?;
        let exists = tx.xattr(ino, n)?.is_some();
        if flags & libc::XATTR_CREATE != 0 && exists {
            return Err(Error::Exists);
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return Err(Error::NoXattr);
        }
        if n == CAPABILITY {
            self.capability_xattrs.store(true, Ordering::SeqCst);
        }
        if n == acl::ACCESS {
            // The ACL's owner, group (or mask) and other entries are the mode's bits; an ACL that says no more
            // than the mode is not kept.
            let (bits, equiv) = acl::Acl::parse(value)?.mode();
            inode.mode = (inode.mode & !0o777) | bits;
            if equiv {
                tx.remove_xattr(ino, n)?;
            } else {
                tx.set_xattr(ino, n, value)?;
            }
        } else if n == acl::DEFAULT {
            if !inode.is_dir() {
                return Err(Error::Access);
            }
            acl::Acl::parse(value)?;
            tx.set_xattr(ino, n, value)?;
        } else {
            tx.set_xattr(ino, n, value)?;
        }
        inode.ctime = now();
        g.save(&mut tx, &inode)?;
        self.finish(&mut g, tx)
    }

    pub fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        // Set before the attribute is stored (under the core lock), so a reader that sees it unset finds none.
        if name.as_bytes() == CAPABILITY && !self.capability_xattrs.load(Ordering::SeqCst) {
            return Err(Error::NoXattr);
        }
        let g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let inode = g.inode(&mut tx, ino)?;
        let n = self.xattr_check(ctx, &inode, name, R)?;
        tx.xattr(ino, n)?.ok_or(Error::NoXattr)
    }

    /// Attribute names, each followed by a NUL byte.
    pub fn listxattr(&self, ctx: &Ctx, ino: Ino) -> Result<Vec<u8>> {
        let g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let inode = g.inode(&mut tx, ino)?;
        let mut out = Vec::new();
        for n in tx.xattr_names(ino)? {
            if n.starts_with(b"trusted.") && ctx.uid != 0 && self.opts.check_permissions {
                continue;
            }
            let _ = &inode;
            out.extend_from_slice(&n);
            out.push(0);
        }
        Ok(out)
    }

    pub fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> Result<()> {
        self.writable()?;
        let mut g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let mut inode = g.inode(&mut tx, ino)?;
        let n = self.xattr_check(ctx, &inode, name, W)?;
        if !tx.remove_xattr(ino, n)? {
            return Err(Error::NoXattr);
        }
        inode.ctime = now();
        g.save(&mut tx, &inode)?;
        self.finish(&mut g, tx)
    }
}
