//! Namespace operations: lookup, create and remove names, links, rename, directories, attributes.

use super::acl;
use super::perm::{self, R, W, X};
use super::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

fn check_name(name: &OsStr) -> Result<&[u8]> {
    let b = name.as_bytes();
    if b.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if b.is_empty() || b.contains(&b'/') || b.contains(&0) {
        return Err(Error::Invalid("bad file name".into()));
    }
    Ok(b)
}

impl Fs {
    /// Loads a directory for a change under it: it must exist, be a directory and be writable and searchable.
    fn dir_for_change(&self, g: &Inner, tx: &mut Tx, ctx: &Ctx, parent: Ino) -> Result<Inode> {
        let dir = g.inode(tx, parent)?;
        if !dir.is_dir() {
            return Err(Error::NotDir);
        }
        if dir.nlink == 0 {
            return Err(Error::NotFound);
        }
        perm::check(self.opts.check_permissions, ctx, &dir, W | X)?;
        Ok(dir)
    }

    pub fn lookup(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> Result<Attr> {
        let name = check_name(name)?;
        let mut g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let dir = g.inode(&mut tx, parent)?;
        if !dir.is_dir() {
            return Err(Error::NotDir);
        }
        perm::check(self.opts.check_permissions, ctx, &dir, X)?;
        let ino = match name {
            b"." => parent,
            b".." => dir.parent,
            _ => tx.lookup(parent, name)?.ok_or(Error::NotFound)?,
        };
        let inode = g.inode(&mut tx, ino)?;
        g.add_lookup(ino);
        Ok(g.attr(&inode))
    }

    /// Creates an inode of any kind under `parent` and links it as `name`.
    #[allow(clippy::too_many_arguments)]
    fn make_node(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        symlink: Option<&[u8]>,
    ) -> Result<Attr> {
        self.writable()?;
        let name = check_name(name)?;
        let kind =
            FileKind::from_mode(mode).ok_or_else(|| Error::Invalid("unknown file type".into()))?;
        let mut g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let mut dir = self.dir_for_change(&g, &mut tx, ctx, parent)?;
        if tx.lookup(parent, name)?.is_some() {
            return Err(Error::Exists);
        }
        let t = now();
        // A parent's default ACL replaces the umask (and is inherited); otherwise the umask applies here, as the
        // kernel leaves it to us (FUSE_DONT_MASK) when ACLs are on.
        let mut inherited = None;
        if self.acls() && kind != FileKind::Symlink {
            if let Some(raw) = tx.xattr(parent, acl::DEFAULT)? {
                let mut access = acl::Acl::parse(&raw)?;
                let (bits, store) = access.create_masq(mode);
                inherited = Some((raw, store.then(|| access.encode()), bits));
            }
        }
        let mut perm_bits = match &inherited {
            Some((_, _, bits)) => (mode & 0o7000) | bits,
            None => mode & 0o7777 & !umask,
        };
        let mut gid = ctx.gid;
        if dir.mode & libc::S_ISGID != 0 {
            gid = dir.gid;
            if kind == FileKind::Dir {
                perm_bits |= libc::S_ISGID;
            }
        }
        let ino = tx.alloc_ino()?;
        let inode = Inode {
            rdev,
            size: symlink.map(|s| s.len() as u64).unwrap_or(0),
            ..Inode::new(ino, kind.mode_bits() | perm_bits, parent, ctx.uid, gid, t)
        };
        tx.put_inode(&inode)?;
        if let Some(target) = symlink {
            tx.set_symlink(ino, target)?;
        }
        if let Some((default, access, _)) = inherited {
            if let Some(access) = access {
                tx.set_xattr(ino, acl::ACCESS, &access)?;
            }
            if kind == FileKind::Dir {
                tx.set_xattr(ino, acl::DEFAULT, &default)?;
            }
        }
        tx.add_dirent(&mut dir, name, ino, kind.mode_bits())?;
        if kind == FileKind::Dir {
            dir.nlink += 1;
        }
        dir.mtime = t;
        dir.ctime = t;
        g.save(&mut tx, &dir)?;
        g.add_lookup(ino);
        let attr = g.attr(&inode);
        self.finish(&mut g, tx)?;
        Ok(attr)
    }

    pub fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<Attr> {
        if FileKind::from_mode(mode) == Some(FileKind::Dir) {
            return Err(Error::Invalid("mknod cannot make directories".into()));
        }
        self.make_node(ctx, parent, name, mode, umask, rdev, None)
    }

    pub fn mkdir(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<Attr> {
        self.make_node(
            ctx,
            parent,
            name,
            libc::S_IFDIR | (mode & 0o7777),
            umask,
            0,
            None,
        )
    }

    pub fn symlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr, target: &Path) -> Result<Attr> {
        let t = target.as_os_str().as_bytes();
        if t.is_empty() {
            return Err(Error::NotFound);
        }
        if t.len() > 4095 {
            return Err(Error::NameTooLong);
        }
        self.make_node(ctx, parent, name, libc::S_IFLNK | 0o777, 0, 0, Some(t))
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let inode = g.inode(&mut tx, ino)?;
        if inode.mode & libc::S_IFMT != libc::S_IFLNK {
            return Err(Error::Invalid("not a symbolic link".into()));
        }
        tx.symlink(ino)?
            .ok_or_else(|| Error::Meta(format!("symlink {ino} has no target")))
    }

    /// Removes a name; `want_dir` selects rmdir semantics.
    fn remove(&self, ctx: &Ctx, parent: Ino, name: &OsStr, want_dir: bool) -> Result<()> {
        self.writable()?;
        let name = check_name(name)?;
        let mut g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let mut dir = self.dir_for_change(&g, &mut tx, ctx, parent)?;
        let ino = tx.lookup(parent, name)?.ok_or(Error::NotFound)?;
        let mut victim = g.inode(&mut tx, ino)?;
        perm::check_sticky(self.opts.check_permissions, ctx, &dir, &victim)?;
        let t = now();
        if want_dir {
            if !victim.is_dir() {
                return Err(Error::NotDir);
            }
            if !tx.dir_is_empty(ino)? {
                return Err(Error::NotEmpty);
            }
            victim.nlink = 0;
            dir.nlink -= 1;
        } else {
            if victim.is_dir() {
                return Err(Error::IsDir);
            }
            victim.nlink -= 1;
        }
        victim.ctime = t;
        tx.remove_dirent(parent, name)?;
        dir.mtime = t;
        dir.ctime = t;
        g.save(&mut tx, &dir)?;
        g.save(&mut tx, &victim)?;
        if victim.nlink == 0 {
            g.unlinked(&mut tx, ino)?;
        }
        self.finish(&mut g, tx)
    }

    pub fn unlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> Result<()> {
        self.remove(ctx, parent, name, false)
    }

    pub fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> Result<()> {
        self.remove(ctx, parent, name, true)
    }

    pub fn link(&self, ctx: &Ctx, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        self.writable()?;
        let name = check_name(newname)?;
        let mut g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let mut inode = g.inode(&mut tx, ino)?;
        if inode.is_dir() {
            return Err(Error::Perm);
        }
        if inode.nlink == 0 {
            return Err(Error::NotFound);
        }
        if inode.nlink >= u32::MAX - 1 {
            return Err(Error::TooManyLinks);
        }
        let mut dir = self.dir_for_change(&g, &mut tx, ctx, newparent)?;
        if tx.lookup(newparent, name)?.is_some() {
            return Err(Error::Exists);
        }
        let t = now();
        tx.add_dirent(&mut dir, name, ino, inode.mode & libc::S_IFMT)?;
        dir.mtime = t;
        dir.ctime = t;
        g.save(&mut tx, &dir)?;
        inode.nlink += 1;
        inode.ctime = t;
        g.save(&mut tx, &inode)?;
        g.add_lookup(ino);
        let attr = g.attr(&inode);
        self.finish(&mut g, tx)?;
        Ok(attr)
    }

    /// Whether directory `ancestor` is `dir` or one of its ancestors.
    fn is_ancestor(g: &Inner, tx: &mut Tx, ancestor: Ino, mut dir: Ino) -> Result<bool> {
        for _ in 0..100_000 {
            if dir == ancestor {
                return Ok(true);
            }
            if dir == ROOT_INO {
                return Ok(false);
            }
            dir = g.inode(tx, dir)?.parent;
        }
        Err(Error::Meta(
            "directory parent chain does not reach the root".into(),
        ))
    }

    pub fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        self.writable()?;
        let name = check_name(name)?;
        let newname = check_name(newname)?;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        if flags & !(libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE) != 0 || (exchange && noreplace)
        {
            return Err(Error::Invalid("rename flags".into()));
        }
        let mut g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let src_dir = self.dir_for_change(&g, &mut tx, ctx, parent)?;
        let dst_dir = self.dir_for_change(&g, &mut tx, ctx, newparent)?;
        let src = tx.lookup(parent, name)?.ok_or(Error::NotFound)?;
        let dst = tx.lookup(newparent, newname)?;
        let src_inode = g.inode(&mut tx, src)?;
        perm::check_sticky(self.opts.check_permissions, ctx, &src_dir, &src_inode)?;
        let t = now();
        if exchange {
            let dst = dst.ok_or(Error::NotFound)?;
            let dst_inode = g.inode(&mut tx, dst)?;
            perm::check_sticky(self.opts.check_permissions, ctx, &dst_dir, &dst_inode)?;
            if src == dst {
                return Ok(());
            }
            if (src_inode.is_dir() && Self::is_ancestor(&g, &mut tx, src, newparent)?)
                || (dst_inode.is_dir() && Self::is_ancestor(&g, &mut tx, dst, parent)?)
            {
                return Err(Error::Invalid("cannot move a directory into itself".into()));
            }
            tx.remove_dirent(parent, name)?;
            tx.remove_dirent(newparent, newname)?;
            self.relink(&mut g, &mut tx, parent, name, dst, &dst_inode, t)?;
            self.relink(&mut g, &mut tx, newparent, newname, src, &src_inode, t)?;
            if parent != newparent {
                let delta = src_inode.is_dir() as i64 - dst_inode.is_dir() as i64;
                self.adjust_dir(&mut g, &mut tx, parent, -delta, t)?;
                self.adjust_dir(&mut g, &mut tx, newparent, delta, t)?;
            } else {
                self.adjust_dir(&mut g, &mut tx, parent, 0, t)?;
            }
            return self.finish(&mut g, tx);
        }
        if let Some(dst) = dst {
            if noreplace {
                return Err(Error::Exists);
            }
            if dst == src {
                // Two names of one inode: POSIX says do nothing.
                return Ok(());
            }
            let mut dst_inode = g.inode(&mut tx, dst)?;
            perm::check_sticky(self.opts.check_permissions, ctx, &dst_dir, &dst_inode)?;
            if src_inode.is_dir() {
                if !dst_inode.is_dir() {
                    return Err(Error::NotDir);
                }
                if !tx.dir_is_empty(dst)? {
                    return Err(Error::NotEmpty);
                }
            } else if dst_inode.is_dir() {
                return Err(Error::IsDir);
            }
            if src_inode.is_dir() && Self::is_ancestor(&g, &mut tx, src, newparent)? {
                return Err(Error::Invalid("cannot move a directory into itself".into()));
            }
            tx.remove_dirent(newparent, newname)?;
            if dst_inode.is_dir() {
                dst_inode.nlink = 0;
                self.adjust_dir(&mut g, &mut tx, newparent, -1, t)?;
            } else {
                dst_inode.nlink -= 1;
            }
            dst_inode.ctime = t;
            g.save(&mut tx, &dst_inode)?;
            if dst_inode.nlink == 0 {
                g.unlinked(&mut tx, dst)?;
            }
        } else if src_inode.is_dir() && Self::is_ancestor(&g, &mut tx, src, newparent)? {
            return Err(Error::Invalid("cannot move a directory into itself".into()));
        }
        tx.remove_dirent(parent, name)?;
        self.relink(&mut g, &mut tx, newparent, newname, src, &src_inode, t)?;
        if src_inode.is_dir() && parent != newparent {
            self.adjust_dir(&mut g, &mut tx, parent, -1, t)?;
            self.adjust_dir(&mut g, &mut tx, newparent, 1, t)?;
        } else {
            self.adjust_dir(&mut g, &mut tx, parent, 0, t)?;
            if parent != newparent {
                self.adjust_dir(&mut g, &mut tx, newparent, 0, t)?;
            }
        }
        self.finish(&mut g, tx)
    }

    /// Links `ino` as `name` in `dir` after a rename, updating its ctime and (for directories) its "..".
    #[allow(clippy::too_many_arguments)]
    fn relink(
        &self,
        g: &mut Inner,
        tx: &mut Tx,
        dir: Ino,
        name: &[u8],
        ino: Ino,
        inode: &Inode,
        t: Time,
    ) -> Result<()> {
        let mut d = g.inode(tx, dir)?;
        tx.add_dirent(&mut d, name, ino, inode.mode & libc::S_IFMT)?;
        g.save(tx, &d)?;
        let mut i = g.inode(tx, ino)?;
        i.ctime = t;
        if i.is_dir() {
            i.parent = dir;
        }
        g.save(tx, &i)
    }

    /// Touches a directory's times after a change and adds `nlink_delta` subdirectory links.
    fn adjust_dir(
        &self,
        g: &mut Inner,
        tx: &mut Tx,
        dir: Ino,
        nlink_delta: i64,
        t: Time,
    ) -> Result<()> {
        let mut d = g.inode(tx, dir)?;
        d.nlink = (d.nlink as i64 + nlink_delta).max(0) as u32;
        d.mtime = t;
        d.ctime = t;
        g.save(tx, &d)
    }

    pub fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr) -> Result<Attr> {
        self.writable()?;
        if let Some(size) = set.size {
            self.truncate(ctx, ino, size)?;
        }
        let mut g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let mut inode = g.inode(&mut tx, ino)?;
        let check = self.opts.check_permissions;
        let owner = ctx.uid == 0 || ctx.uid == inode.uid;
        let t = now();
        if let Some(mode) = set.mode {
            if check && !owner {
                return Err(Error::Perm);
            }
            let mut bits = mode & 0o7777;
            if check && ctx.uid != 0 && ctx.gid != inode.gid {
                bits &= !libc::S_ISGID;
            }
            inode.mode = (inode.mode & libc::S_IFMT) | bits;
            if self.acls() {
                // chmod rewrites the access ACL's owner, mask (or group) and other entries.
                if let Some(raw) = tx.xattr(ino, acl::ACCESS)? {
                    let mut a = acl::Acl::parse(&raw)?;
                    a.chmod(bits);
                    tx.set_xattr(ino, acl::ACCESS, &a.encode())?;
                }
            }
        }
        if set.uid.is_some() || set.gid.is_some() {
            let new_uid = set.uid.unwrap_or(inode.uid);
            let new_gid = set.gid.unwrap_or(inode.gid);
            if check
                && ctx.uid != 0
                && (new_uid != inode.uid || !owner || (new_gid != inode.gid && new_gid != ctx.gid))
            {
                return Err(Error::Perm);
            }
            // chown clears setuid, and setgid when group-executable, of non-directories (Linux, for root too).
            if set.mode.is_none()
                && !inode.is_dir()
                && (new_uid != inode.uid || new_gid != inode.gid || ctx.uid != 0)
            {
                inode.mode &= !libc::S_ISUID;
                if inode.mode & 0o010 != 0 {
                    inode.mode &= !libc::S_ISGID;
                }
            }
            inode.uid = new_uid;
            inode.gid = new_gid;
        }
        let may_write = perm::allowed(ctx, &inode, W);
        for (want, slot) in [(set.atime, &mut inode.atime), (set.mtime, &mut inode.mtime)] {
            match want {
                None => {}
                Some(SetTime::Now) => {
                    if check && !owner && !may_write {
                        return Err(Error::Access);
                    }
                    *slot = t;
                }
                Some(SetTime::At(at)) => {
                    if check && !owner {
                        return Err(Error::Perm);
                    }
                    *slot = to_time(at);
                }
            }
        }
        inode.ctime = set.ctime.map(to_time).unwrap_or(t);
        g.save(&mut tx, &inode)?;
        let attr = g.attr(&inode);
        self.finish(&mut g, tx)?;
        Ok(attr)
    }

    pub fn access(&self, ctx: &Ctx, ino: Ino, mask: i32) -> Result<()> {
        let g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let inode = g.inode(&mut tx, ino)?;
        if mask == libc::F_OK {
            return Ok(());
        }
        if mask & libc::W_OK != 0 && self.opts.read_only {
            return Err(Error::ReadOnly);
        }
        let mut m = 0;
        if mask & libc::R_OK != 0 {
            m |= R;
        }
        if mask & libc::W_OK != 0 {
            m |= W;
        }
        if mask & libc::X_OK != 0 {
            m |= X;
        }
        if perm::allowed(ctx, &inode, m) {
            Ok(())
        } else {
            Err(Error::Access)
        }
    }

    pub fn opendir(&self, ctx: &Ctx, ino: Ino, flags: i32) -> Result<u64> {
        let mut g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let inode = g.inode(&mut tx, ino)?;
        if !inode.is_dir() {
            return Err(Error::NotDir);
        }
        perm::check(self.opts.check_permissions, ctx, &inode, R)?;
        let fh = g.next_fh;
        g.next_fh += 1;
        g.handles.insert(fh, Handle { ino, flags });
        Ok(fh)
    }

    /// Entries after cookie `offset` (0 = from the start, including "." and ".."), at most `max` of them.
    pub fn readdir(&self, ino: Ino, _fh: u64, offset: u64, max: usize) -> Result<Vec<DirEntry>> {
        let g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let dir = g.inode(&mut tx, ino)?;
        if !dir.is_dir() {
            return Err(Error::NotDir);
        }
        let mut out = Vec::new();
        if offset < 1 && out.len() < max {
            out.push(DirEntry {
                ino,
                offset: 1,
                kind: FileKind::Dir,
                name: ".".into(),
            });
        }
        if offset < 2 && out.len() < max {
            out.push(DirEntry {
                ino: dir.parent,
                offset: 2,
                kind: FileKind::Dir,
                name: "..".into(),
            });
        }
        if out.len() < max {
            for d in tx.list_dir(ino, offset.max(2), max - out.len())? {
                out.push(DirEntry {
                    ino: d.ino,
                    offset: d.cookie,
                    kind: FileKind::from_mode(d.kind).unwrap_or(FileKind::File),
                    name: std::ffi::OsString::from(std::ffi::OsStr::from_bytes(&d.name)),
                });
            }
        }
        Ok(out)
    }

    pub fn releasedir(&self, _ino: Ino, fh: u64) -> Result<()> {
        self.inner.lock().handles.remove(&fh);
        Ok(())
    }

    pub fn fsyncdir(&self, _ino: Ino, _fh: u64, _datasync: bool) -> Result<()> {
        if self.opts.read_only {
            return Ok(());
        }
        self.sync_durable()
    }
}
