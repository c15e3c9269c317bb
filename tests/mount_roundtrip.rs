//! A real mount used with ordinary tools, an mmap writer, unmount → remount → the same bytes; kill -9 leaves no
//! stale mount; SIGTERM unmounts cleanly.

mod common;
use common::*;
use std::os::unix::io::AsRawFd;
use std::time::Duration;

/// Writes through a shared writable mapping, msyncs and unmaps: those pages must reach the store.
fn mmap_write(path: &std::path::Path, len: usize) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.set_len(len as u64).unwrap();
    // SAFETY: a fresh shared mapping of a file we own, unmapped before return.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let s = std::slice::from_raw_parts_mut(p as *mut u8, len);
        for (i, b) in s.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        assert_eq!(libc::msync(p, len, libc::MS_SYNC), 0);
        assert_eq!(libc::munmap(p, len), 0);
    }
}

fn mmap_expected(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn tools_mmap_and_remount_keep_bytes() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let m = v.mnt.display().to_string();
    let src = v.dir.path().join("src");
    let s = src.display().to_string();
    sh(&format!(
        "mkdir -p {s}/tree/sub && head -c 3000000 /dev/urandom > {s}/big && echo hello > {s}/tree/a \
         && head -c 70000 /dev/urandom > {s}/tree/sub/b && ln -s a {s}/tree/link"
    ));
    {
        let g = v.mount();
        // Already mounted: refused with its own code.
        let o = vfs(&["mount", "-o", &v.passopt(), v.config.to_str().unwrap(), &m]);
        assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));

        sh(&format!(
            "cp {s}/big {m}/big && tar -C {s} -cf - tree | tar -C {m} -xf - \
             && dd if=/dev/urandom of={m}/dd bs=64k count=40 status=none conv=fsync \
             && cp {m}/big {m}/tmp && mv {m}/tmp {m}/moved && ln {m}/moved {m}/hard \
             && ln -s moved {m}/soft && mkdir {m}/d && rmdir {m}/d && echo x > {m}/gone && rm {m}/gone"
        ));
        mmap_write(&v.mnt.join("mapped"), 1 << 20);
        assert_eq!(
            sh(&format!(
                "cd {s} && sha256sum big tree/a tree/sub/b | cut -c1-64"
            )),
            sh(&format!(
                "cd {m} && sha256sum big tree/a tree/sub/b | cut -c1-64"
            ))
        );
        assert_eq!(sh(&format!("readlink {m}/tree/link")).trim(), "a");
        assert_eq!(sh(&format!("stat -c %h {m}/hard")).trim(), "2");
        let st = sh(&format!("{} status {}", bin(), v.config.display()));
        assert!(st.contains("mounted     "), "{st}");
        g.umount();
    }
    let before = sh(&format!("cd {s} && sha256sum big"));
    let g = v.mount();
    let sums = sh(&format!(
        "cd {m} && sha256sum big moved hard dd tree/a tree/sub/b mapped"
    ));
    assert!(sums.contains(before.split_whitespace().next().unwrap()));
    let lines: Vec<&str> = sums.lines().collect();
    assert_eq!(lines[0][..64], lines[1][..64], "big vs moved");
    assert_eq!(lines[1][..64], lines[2][..64], "moved vs hard link");
    assert_eq!(
        std::fs::read(v.mnt.join("mapped")).unwrap(),
        mmap_expected(1 << 20)
    );
    assert!(!v.mnt.join("gone").exists());
    assert_eq!(sh(&format!("readlink {m}/soft")).trim(), "moved");
    g.umount();
}

#[test]
fn sigterm_unmounts_and_sigkill_leaves_nothing_mounted() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    {
        let _g = v.mount();
        std::fs::write(v.mnt.join("f"), b"durable").unwrap();
        let pid = daemon_pid(&v.state()).expect("daemon pid in lock file");
        unsafe { libc::kill(pid, libc::SIGTERM) };
        wait_until("SIGTERM unmount", Duration::from_secs(20), || {
            !is_mounted(&v.mnt)
        });
        wait_until("daemon exit", Duration::from_secs(20), || unsafe {
            libc::kill(pid, 0) != 0
        });
    }
    {
        let _g = v.mount();
        assert_eq!(std::fs::read(v.mnt.join("f")).unwrap(), b"durable");
        let pid = daemon_pid(&v.state()).unwrap();
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_until("daemon death", Duration::from_secs(10), || unsafe {
            libc::kill(pid, 0) != 0
        });
        // A dead mount: refused as a mount point with a hint, cleared by `valencefs umount`.
        let o = vfs(&[
            "mount",
            "-o",
            &v.passopt(),
            v.config.to_str().unwrap(),
            v.mnt.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
        assert!(stderr(&o).contains("valencefs umount"), "{}", stderr(&o));
        let o = vfs(&["umount", v.mnt.to_str().unwrap()]);
        assert!(o.status.success(), "umount of a dead mount: {}", stderr(&o));
    }
    assert!(!is_mounted(&v.mnt), "stale mount after SIGKILL");
    // And the volume mounts again at once.
    let g = v.mount();
    assert!(v.log().contains("mounted at"));
    g.umount();
}

/// With `allow_other`, other users get in, and the kernel (`default_permissions`) enforces modes against them.
#[test]
fn allow_other_with_kernel_permission_checks() {
    if !fuse_available() || unsafe { libc::geteuid() } != 0 {
        return;
    }
    let v = Vol::new("personal");
    sh(&format!("chmod 755 {}", v.dir.path().display()));
    let g = MountGuard::new(&v.mnt);
    let o = vfs(&[
        "mount",
        "-o",
        &format!("{},allow_other", v.passopt()),
        v.config.to_str().unwrap(),
        v.mnt.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = v.mnt.display();
    sh(&format!(
        "echo open > {m}/public && chmod 644 {m}/public && echo secret > {m}/private && chmod 600 {m}/private"
    ));
    let o = as_nobody(&format!("cat {m}/public"));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = as_nobody(&format!("cat {m}/private"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    let o = as_nobody(&format!("touch {m}/newfile"));
    assert!(
        !o.status.success(),
        "root-owned 755 directory must refuse nobody"
    );
    g.umount();
}

/// `-o sync` makes a plain close() durable: checked with kill -9 of the daemon right after the write.
#[test]
fn sync_option_makes_close_durable() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let (cfg, mnt) = (v.config.to_str().unwrap(), v.mnt.to_str().unwrap());
    let g = MountGuard::new(&v.mnt);
    let o = vfs(&["mount", "-o", &format!("{},sync", v.passopt()), cfg, mnt]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(v.mnt.join("synced"), b"made durable by close").unwrap();
    let pid = daemon_pid(&v.state()).unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("daemon death", Duration::from_secs(10), || unsafe {
        libc::kill(pid, 0) != 0
    });
    g.umount();
    let g = v.mount();
    assert_eq!(
        std::fs::read(v.mnt.join("synced")).unwrap(),
        b"made durable by close"
    );
    g.umount();
}

/// `-o ro` refuses writes with EROFS and still reads.
#[test]
fn ro_option() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let (cfg, mnt) = (v.config.to_str().unwrap(), v.mnt.to_str().unwrap());
    {
        let g = v.mount();
        std::fs::write(v.mnt.join("f"), b"before ro").unwrap();
        g.umount();
    }
    let g = MountGuard::new(&v.mnt);
    let o = vfs(&["mount", "-o", &format!("{},ro", v.passopt()), cfg, mnt]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(v.mnt.join("f")).unwrap(), b"before ro");
    let e = std::fs::write(v.mnt.join("new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    g.umount();
}

/// Runs `cmd` with `sh -c` as uid/gid 65534 (nobody) with no supplementary groups.
fn as_nobody(cmd: &str) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            cmd,
        ])
        .output()
        .unwrap()
}

/// Sets a POSIX ACL xattr from (tag, perm, id) entries in the kernel's encoding (no dependency on setfacl).
fn set_acl(path: &std::path::Path, name: &str, entries: &[(u16, u16, u32)]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// POSIX ACLs on a mount: the kernel enforces a named-user entry, chmod narrows the mask (so the entry stops
/// granting), and a directory's default ACL is inherited by new files with the creator's umask ignored.
#[test]
fn posix_acls_are_enforced_and_inherited() {
    if !fuse_available() || unsafe { libc::geteuid() } != 0 {
        return;
    }
    const NONE: u32 = u32::MAX;
    let v = Vol::new("personal");
    sh(&format!("chmod 755 {}", v.dir.path().display()));
    let g = v.mount_with("allow_other");
    let m = v.mnt.display();
    sh(&format!(
        "echo secret > {m}/f && chmod 640 {m}/f && mkdir -m 755 {m}/d"
    ));
    let o = as_nobody(&format!("cat {m}/f"));
    assert!(!o.status.success(), "0640 root file readable by nobody");
    // user::rw- user:65534:rw- group::r-- mask::rw- other::---
    let named = [
        (1, 6, NONE),
        (2, 6, 65534),
        (4, 4, NONE),
        (0x10, 6, NONE),
        (0x20, 0, NONE),
    ];
    set_acl(&v.mnt.join("f"), "system.posix_acl_access", &named).expect("set access ACL");
    let o = as_nobody(&format!("cat {m}/f && echo more >> {m}/f"));
    assert!(o.status.success(), "ACL entry not honoured: {}", stderr(&o));
    assert!(sh(&format!("cat {m}/f")).contains("more"));
    // chmod 600 sets the mask to ---: the named entry no longer grants anything.
    sh(&format!("chmod 600 {m}/f"));
    let o = as_nobody(&format!("cat {m}/f"));
    assert!(!o.status.success(), "chmod did not narrow the ACL mask");
    // Default ACL on d: new files get user:65534:rw through it even with umask 077.
    let dflt = [
        (1, 7, NONE),
        (2, 7, 65534),
        (4, 5, NONE),
        (0x10, 7, NONE),
        (0x20, 0, NONE),
    ];
    set_acl(&v.mnt.join("d"), "system.posix_acl_default", &dflt).expect("set default ACL");
    sh(&format!(
        "umask 077 && echo inherited > {m}/d/nf && mkdir {m}/d/sub"
    ));
    let mode = sh(&format!("stat -c %a {m}/d/nf {m}/d/sub"));
    assert_eq!(mode.split_whitespace().collect::<Vec<_>>(), ["660", "770"]);
    let o = as_nobody(&format!("cat {m}/d/nf && touch {m}/d/sub/by-nobody"));
    assert!(
        o.status.success(),
        "default ACL not inherited: {}",
        stderr(&o)
    );
    // Without a default ACL the umask still applies (the kernel leaves it to us with ACLs on).
    sh(&format!(
        "umask 027 && mkdir {m}/plain && touch {m}/plain/f"
    ));
    let mode = sh(&format!("stat -c %a {m}/plain {m}/plain/f"));
    assert_eq!(mode.split_whitespace().collect::<Vec<_>>(), ["750", "640"]);
    g.umount();
}

/// The mount clears setuid/setgid itself (FUSE_HANDLE_KILLPRIV_V2) as a local filesystem does: on writes and
/// truncation by an unprivileged user, on chown; not on root's writes, not setgid without group-execute. The kernel
/// still strips `security.capability` on write. And in exchange a stream of small writes no longer costs a
/// `security.capability` lookup each (it did: one getxattr round trip per write(2) on the writer's path).
#[test]
fn privileges_are_killed_and_small_writes_skip_the_capability_lookup() {
    if !fuse_available() || unsafe { libc::geteuid() } != 0 {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let v = Vol::new("personal");
    sh(&format!("chmod 755 {}", v.dir.path().display()));
    let g = v.mount_with("allow_other");
    let m = v.mnt.display();
    let mode = |n: &str| {
        std::fs::metadata(v.mnt.join(n))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    sh(&format!(
        "for f in w gx t r c; do echo data > {m}/$f; done && chmod 6777 {m}/w {m}/t {m}/r {m}/c && chmod 2767 {m}/gx"
    ));
    let o = as_nobody(&format!(
        "echo more >> {m}/w && echo more >> {m}/gx && truncate -s 1 {m}/t"
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode("w"), 0o777, "unprivileged write keeps setuid/setgid");
    assert_eq!(mode("gx"), 0o2767, "setgid without group-execute must stay");
    assert_eq!(
        mode("t"),
        0o777,
        "unprivileged truncate keeps setuid/setgid"
    );
    sh(&format!("echo more >> {m}/r"));
    assert_eq!(mode("r"), 0o6777, "root (CAP_FSETID) writes keep the bits");
    sh(&format!("chown 65534 {m}/r"));
    assert_eq!(mode("r"), 0o777, "chown keeps setuid/setgid");
    assert_eq!(sh(&format!("cat {m}/w {m}/t")), "data\nmore\nd");

    // security.capability (revision 2, CAP_NET_BIND_SERVICE permitted) goes away at the next write, even root's.
    let cap: [u8; 20] = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let path = std::ffi::CString::new(format!("{m}/c")).unwrap();
    let name = c"security.capability";
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            cap.as_ptr().cast(),
            cap.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setcap: {}", std::io::Error::last_os_error());
    let has_cap =
        || unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) } >= 0;
    assert!(has_cap());
    sh(&format!("echo more >> {m}/c"));
    assert!(!has_cap(), "a write must drop security.capability");

    // 2,000 write(2) calls of 8 KiB: a handful of capability lookups, not one per write.
    let getxattrs = || {
        let o = vfs(&["stats", "--json", v.mnt.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        j["ops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|op| op["op"] == "getxattr")
            .map(|op| op["count"].as_u64().unwrap())
            .sum::<u64>()
    };
    let before = getxattrs();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(v.mnt.join("stream")).unwrap();
        for i in 0..2000u32 {
            f.write_all(&[i as u8; 8192]).unwrap();
        }
        f.sync_all().unwrap();
    }
    let lookups = getxattrs() - before;
    assert!(lookups < 50, "{lookups} getxattr requests for 2000 writes");
    assert_eq!(
        std::fs::metadata(v.mnt.join("stream")).unwrap().len(),
        2000 * 8192
    );
    g.umount();
}
