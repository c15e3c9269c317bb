//! File operations confined beneath a directory disk's root: no path a disk holder plants (a symlinked `meta`,
//! `shards/ab` or shard file) is ever followed, so a daemon running as root cannot be steered into reading or
//! writing outside the disk.
//!
//! Every path is resolved relative to an open directory with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)`; where the kernel lacks openat2 (before Linux 5.6, or a seccomp filter answering
//! ENOSYS) it falls back to opening one component at a time with `O_NOFOLLOW`, which is equally safe because object
//! names never hold `.`, `..` or empty components (`check_name`). A symlink anywhere on the path fails with
//! `ELOOP` (or `EXDEV` for an escape), never resolves. The final-component operations (`mkdirat`, `renameat`,
//! `unlinkat`, `fstatat(AT_SYMLINK_NOFOLLOW)`) act on the entry itself, never on what a link names.

use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Cleared once openat2 answered ENOSYS: later calls go straight to the component walk.
static OPENAT2_WORKS: AtomicBool = AtomicBool::new(true);

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Opens `rel` (`/`-separated, no `.`/`..`/empty components; `""` is `dir` itself) beneath `dir` with `flags`
/// (`O_CLOEXEC` and `O_NOFOLLOW` are added) and `mode` (used with `O_CREAT`).
pub(super) fn open(
    dir: &File,
    rel: &str,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<File> {
    let rel = if rel.is_empty() { "." } else { rel };
    let flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    if OPENAT2_WORKS.load(Ordering::Relaxed) {
        match openat2(dir, rel, flags, mode) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                OPENAT2_WORKS.store(false, Ordering::Relaxed);
            }
            // Some seccomp filters answer EPERM for system calls they do not know; the walk is as safe.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            other => return other,
        }
    }
    walk(dir, rel, flags, mode)
}

fn openat2(dir: &File, rel: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<File> {
    let path = cstr(rel)?;
    // SAFETY: open_how is plain data; all-zero is its "no options" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    // The kernel refuses a mode without O_CREAT/O_TMPFILE.
    how.mode = if flags & libc::O_CREAT != 0 {
        mode as u64
    } else {
        0
    };
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        // SAFETY: valid descriptor, NUL-terminated path and a live open_how of the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            // SAFETY: the kernel just returned this descriptor to us.
            return Ok(File::from(unsafe {
                OwnedFd::from_raw_fd(r as libc::c_int)
            }));
        }
        let e = io::Error::last_os_error();
        // EAGAIN: a concurrent rename somewhere made the kernel unsure about the resolution; try again.
        if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
            return Err(e);
        }
    }
}

/// The fallback: one `openat(O_NOFOLLOW)` per component.
fn walk(dir: &File, rel: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<File> {
    let comps: Vec<&str> = rel.split('/').collect();
    let (last, parents) = comps.split_last().expect("split yields at least one part");
    let mut cur: Option<File> = None;
    for c in parents {
        let at = cur.as_ref().unwrap_or(dir);
        let next = openat(
            at,
            c,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
        )?;
        cur = Some(next);
    }
    openat(cur.as_ref().unwrap_or(dir), last, flags, mode)
}

fn openat(dir: &File, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<File> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name.
    let fd =
        cvt(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) })?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `mkdirat(dir, name, mode)`: an existing entry of that name (a symlink included) is `AlreadyExists`.
pub(super) fn mkdir(dir: &File, name: &str, mode: libc::mode_t) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) }).map(drop)
}

/// `renameat(dir, from, dir, to)`: replaces the entry `to` itself, whatever it is.
pub(super) fn rename(dir: &File, from: &str, to: &str) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: valid descriptor and NUL-terminated names.
    cvt(unsafe { libc::renameat(dir.as_raw_fd(), f.as_ptr(), dir.as_raw_fd(), t.as_ptr()) })
        .map(drop)
}

/// `unlinkat(dir, name, 0)`: removes the entry itself (a symlink, not its target).
pub(super) fn unlink(dir: &File, name: &str) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and NUL-terminated name.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
}

/// Whether `dir` has an entry `name` (of any type; a symlink is not followed).
pub(super) fn exists(dir: &File, name: &str) -> io::Result<bool> {
    let c = cstr(name)?;
    // SAFETY: all-zero is a valid stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name and a live out-buffer.
    match cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    }) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The entries of the open directory `dir` (without `.` and `..`), each with whether it is a directory (a
/// symlink to one is not).
pub(super) fn entries(dir: &File) -> io::Result<Vec<(OsString, bool)>> {
    // fdopendir takes ownership of its descriptor: give it a duplicate.
    let fd = OwnedFd::from(dir.try_clone()?);
    // SAFETY: a valid descriptor, owned from here on by the DIR stream (released by closedir below).
    let dirp = unsafe { libc::fdopendir(fd.as_raw_fd()) };
    if dirp.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(fd);
    let mut out = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; readdir reports errors only through it.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: a live DIR stream.
        let ent = unsafe { libc::readdir64(dirp) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            break if e.raw_os_error() == Some(0) {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: readdir returned a valid entry, alive until the next readdir on this stream.
        let (name, d_type) = unsafe { (CStr::from_ptr((*ent).d_name.as_ptr()), (*ent).d_type) };
        let name = name.to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let is_dir = match d_type {
            libc::DT_DIR => true,
            libc::DT_UNKNOWN => {
                // Some filesystems do not fill d_type: ask without following a link.
                // SAFETY: all-zero is a valid stat buffer; valid descriptor, NUL-terminated name.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                let c = CString::new(name).expect("directory entries hold no NUL");
                let r = unsafe {
                    libc::fstatat(
                        libc::dirfd(dirp),
                        c.as_ptr(),
                        &mut st,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                };
                r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR
            }
            _ => false,
        };
        out.push((OsString::from_vec(name.to_vec()), is_dir));
    };
    // SAFETY: the stream opened above, closed once (this also closes its descriptor).
    unsafe { libc::closedir(dirp) };
    result.map(|()| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fallback walk refuses symlinks like openat2 does (openat2 exists on the test machines, so the walk
    /// would otherwise go untested).
    #[test]
    fn component_walk_never_follows_links() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::fs::write(t.path().join("a/b/f"), b"in").unwrap();
        std::fs::write(outside.path().join("f"), b"out").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("a/l")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), t.path().join("a/b/g")).unwrap();
        let root = File::open(t.path()).unwrap();
        let rd = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        type OpenFn = fn(&File, &str, libc::c_int, libc::mode_t) -> io::Result<File>;
        for open_fn in [walk as OpenFn, openat2] {
            assert!(open_fn(&root, "a/b/f", rd, 0).is_ok());
            let e = open_fn(&root, "a/l/f", rd, 0).unwrap_err();
            assert!(
                matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)),
                "{e}"
            );
            let e = open_fn(&root, "a/b/g", rd, 0).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
            let create =
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW;
            assert!(open_fn(&root, "a/l/new", create, 0o600).is_err());
        }
        assert!(!outside.path().join("new").exists());
        let mut names = entries(&File::open(t.path().join("a")).unwrap()).unwrap();
        names.sort();
        assert_eq!(names, vec![("b".into(), true), ("l".into(), false)]);
    }
}
