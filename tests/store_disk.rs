//! One conformance suite run against every `Disk` implementation: directory, memory, fault (no faults), and S3
//! (a bucket on a moto server started by the test).

mod s3_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use s3_common::Moto;
use valencefs::store::{open_dir_disk, Disk, FaultDisk, MemDisk, S3Disk};
use valencefs::Error;

fn conformance(d: &dyn Disk) {
    // Absent objects.
    assert!(matches!(d.get("nothing"), Err(Error::NotFound)));
    d.delete("nothing").unwrap();
    assert!(d.list("").unwrap().is_empty());
    // Put, get, overwrite.
    d.put("a", b"one").unwrap();
    assert_eq!(d.get("a").unwrap(), b"one");
    d.put("a", b"two!").unwrap();
    assert_eq!(d.get("a").unwrap(), b"two!");
    d.put("a", b"").unwrap();
    assert_eq!(d.get("a").unwrap(), b"");
    // Range reads: like pread, short at the end, empty past it. (Written in parts, as stripe files are.)
    d.put_parts("r", &[b"0123", b"", b"456789"]).unwrap();
    assert_eq!(d.get_range("r", 0, 4).unwrap(), b"0123");
    assert_eq!(d.get_range("r", 3, 4).unwrap(), b"3456");
    assert_eq!(d.get_range("r", 8, 100).unwrap(), b"89");
    assert_eq!(d.get_range("r", 10, 5).unwrap(), b"");
    assert_eq!(d.get_range("r", u64::MAX, u64::MAX).unwrap(), b"");
    assert_eq!(d.get_range("r", 2, 0).unwrap(), b"");
    assert!(matches!(
        d.get_range("no-such", 0, 1),
        Err(valencefs::Error::NotFound)
    ));
    d.delete("r").unwrap();
    // Nested names and prefix listing.
    d.put("shards/ab/cd/x.0", b"x0").unwrap();
    d.put("shards/ab/ce/y.1", b"y1").unwrap();
    d.put("shardsX", b"z").unwrap();
    let mut all = d.list("").unwrap();
    all.sort();
    assert_eq!(
        all,
        vec!["a", "shards/ab/cd/x.0", "shards/ab/ce/y.1", "shardsX"]
    );
    let mut sh = d.list("shards/").unwrap();
    sh.sort();
    assert_eq!(sh, vec!["shards/ab/cd/x.0", "shards/ab/ce/y.1"]);
    assert_eq!(d.list("shards/ab/cd/").unwrap(), vec!["shards/ab/cd/x.0"]);
    // Delete, sync.
    d.delete("shards/ab/cd/x.0").unwrap();
    assert!(matches!(d.get("shards/ab/cd/x.0"), Err(Error::NotFound)));
    d.sync().unwrap();
    assert_eq!(d.list("shards/").unwrap(), vec!["shards/ab/ce/y.1"]);
    // Names that could escape the root or hide as temp files are refused.
    for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "x.tmp-1"] {
        assert!(d.put(bad, b"no").is_err(), "{bad:?} accepted");
    }
    // Big object.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    d.put("big", &big).unwrap();
    assert_eq!(d.get("big").unwrap(), big);
    // Bounded reads: an object over the caller's limit is refused as corrupt, never returned or read whole.
    assert_eq!(d.get_limited("big", big.len() as u64).unwrap(), big);
    let e = d.get_limited("big", big.len() as u64 - 1).unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("read limit"), "{e}");
    assert!(matches!(d.get_limited("big", 0), Err(Error::Corrupt(_))));
    assert!(matches!(d.get_limited("nothing", 10), Err(Error::NotFound)));
    d.delete("big").unwrap();
    // Concurrent writers of one name: the result is one of the written values, never a mix.
    std::thread::scope(|s| {
        for t in 0..4u8 {
            s.spawn(move || {
                for _ in 0..20 {
                    d.put("race", &vec![t; 100_000]).unwrap();
                }
            });
        }
    });
    let r = d.get("race").unwrap();
    assert_eq!(r.len(), 100_000);
    assert!(r.iter().all(|&b| b == r[0]));
    let s = d.stat();
    assert!(s.present && s.writable);
    d.sync().unwrap();
}

#[test]
fn dir_disk_conforms() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("disk");
    let d = open_dir_disk(&root);
    // A missing directory is reported, not an error. Only the disk header may create it: a shard written into a
    // directory that is not there would land on whatever filesystem lies beneath (an unmounted drive's mount point).
    assert!(!d.stat().present);
    assert!(matches!(d.put("a", b"x"), Err(Error::BadDisk { .. })));
    assert!(!root.exists());
    d.put("valencefs.hdr", b"header").unwrap();
    assert!(d.stat().present);
    d.delete("valencefs.hdr").unwrap();
    conformance(d.as_ref());
    // A directory that vanishes under a running volume stays vanished.
    let gone = tempfile::tempdir().unwrap();
    let g = open_dir_disk(gone.path());
    g.put("shards/x", b"1").unwrap();
    std::fs::remove_dir_all(gone.path()).unwrap();
    let e = g.put("shards/y", b"2").unwrap_err();
    assert!(e.to_string().contains("gone"), "{e}");
    assert!(!gone.path().exists());
    // Temp files from an interrupted put are invisible.
    std::fs::write(
        t.path().join("disk/shards/ab/ce/y.1.tmp-0000000000000001"),
        b"junk",
    )
    .unwrap();
    assert_eq!(d.list("shards/").unwrap(), vec!["shards/ab/ce/y.1"]);
}

/// Peak resident memory of this process, from /proc/self/status.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn dir_disk_refuses_oversized_objects_without_reading_them() {
    use valencefs::store::MAX_OBJECT_LEN;
    let t = tempfile::tempdir().unwrap();
    let d = open_dir_disk(t.path());
    let name = "shards/ab/cd/abcd.0";
    d.put(name, b"shard").unwrap();
    // Whoever holds the disk turns the shard into a 20 GiB sparse file: it costs them nothing.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(t.path().join(name))
        .unwrap();
    f.set_len(20 << 30).unwrap();
    for e in [
        d.get(name).unwrap_err(),
        d.get_limited(name, u64::MAX).unwrap_err(),
        d.get_limited(name, 1 << 20).unwrap_err(),
    ] {
        assert!(matches!(e, Error::Corrupt(_)), "{e}");
        assert!(e.to_string().contains(name), "{e}");
    }
    // One byte over the disk-wide ceiling is refused too; the ceiling itself is not.
    f.set_len(MAX_OBJECT_LEN + 1).unwrap();
    assert!(matches!(d.get(name), Err(Error::Corrupt(_))));
    assert!(
        peak_rss_bytes() < MAX_OBJECT_LEN,
        "peak RSS {} MiB: an oversized object was read",
        peak_rss_bytes() >> 20
    );
    f.set_len(5).unwrap();
    assert_eq!(d.get(name).unwrap(), b"shard");
    // Something other than a regular file under an object's name (a FIFO would block a plain open forever).
    let fifo = t.path().join("shards/ab/cd/abcd.1");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(matches!(
        d.get("shards/ab/cd/abcd.1"),
        Err(Error::Corrupt(_))
    ));
}

#[test]
fn dir_disk_never_follows_symlinks() {
    use std::os::unix::fs::symlink;
    let t = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let out = outside.path();
    let root = t.path().join("disk");
    let d = open_dir_disk(&root);
    d.put("valencefs.hdr", b"header").unwrap();
    let refused = |e: Error| {
        assert!(matches!(e, Error::BadDisk { .. }), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
    };
    // A disk holder points a shard directory, or `meta`, somewhere else: writes fail and nothing lands there.
    std::fs::create_dir(root.join("shards")).unwrap();
    symlink(out, root.join("shards/ab")).unwrap();
    symlink(out, root.join("meta")).unwrap();
    refused(d.put("shards/ab/cd/abcd.0", b"x").unwrap_err());
    refused(d.put("shards/ab/abcd.0", b"x").unwrap_err());
    refused(d.put("meta/pointer", b"x").unwrap_err());
    assert_eq!(std::fs::read_dir(out).unwrap().count(), 0, "wrote outside");
    // Reads and deletes through the link are refused as well, and listing does not descend into it.
    std::fs::write(out.join("abcd.0"), b"outside").unwrap();
    refused(d.get("shards/ab/abcd.0").unwrap_err());
    refused(d.delete("shards/ab/abcd.0").unwrap_err());
    assert!(out.join("abcd.0").exists());
    assert!(d.list("shards/ab/").is_err());
    assert!(d.list("").unwrap().iter().all(|n| !n.contains("abcd")));
    // A shard file that is a link to a file elsewhere is never read; a put replaces the link, not its target.
    std::fs::create_dir_all(root.join("shards/ef/01")).unwrap();
    symlink(out.join("abcd.0"), root.join("shards/ef/01/ef01.0")).unwrap();
    refused(d.get("shards/ef/01/ef01.0").unwrap_err());
    d.put("shards/ef/01/ef01.0", b"new").unwrap();
    d.sync().unwrap();
    assert_eq!(std::fs::read(out.join("abcd.0")).unwrap(), b"outside");
    let m = std::fs::symlink_metadata(root.join("shards/ef/01/ef01.0")).unwrap();
    assert!(m.is_file());
    assert_eq!(d.get("shards/ef/01/ef01.0").unwrap(), b"new");
}

#[test]
fn mem_disk_conforms() {
    conformance(&MemDisk::new());
}

#[test]
fn fault_disk_without_faults_conforms() {
    conformance(&FaultDisk::new(Arc::new(MemDisk::new())));
    let t = tempfile::tempdir().unwrap();
    conformance(&FaultDisk::new(open_dir_disk(t.path())));
}

#[test]
fn mem_disk_crash_drops_unsynced_writes() {
    let d = MemDisk::new();
    d.put("kept", b"1").unwrap();
    d.sync().unwrap();
    d.put("lost", b"2").unwrap();
    d.delete("kept").unwrap();
    d.crash();
    assert_eq!(d.get("kept").unwrap(), b"1");
    assert!(matches!(d.get("lost"), Err(Error::NotFound)));
}

#[test]
fn fault_disk_injects_each_fault() {
    use valencefs::store::Faults;
    let f = FaultDisk::new(Arc::new(MemDisk::new()));
    f.put("x", &[0u8; 64]).unwrap();
    f.set(Faults {
        read_only: true,
        ..Faults::default()
    });
    assert!(matches!(f.put("y", b"1"), Err(Error::ReadOnly)));
    assert!(!f.stat().writable);
    f.set(Faults {
        enospc: true,
        ..Faults::default()
    });
    assert!(matches!(f.put("y", b"1"), Err(Error::NoSpace { .. })));
    f.set(Faults {
        puts_before_enospc: Some(1),
        ..Faults::default()
    });
    f.put("y", b"1").unwrap();
    assert!(matches!(f.put("z", b"1"), Err(Error::NoSpace { .. })));
    f.set(Faults {
        eio_read: true,
        ..Faults::default()
    });
    assert_eq!(f.get("x").unwrap_err().errno(), libc::EIO);
    f.set(Faults {
        flip_bits: true,
        ..Faults::default()
    });
    assert_ne!(f.get("x").unwrap(), vec![0u8; 64]);
    f.set(Faults {
        truncate: true,
        ..Faults::default()
    });
    assert_eq!(f.get("x").unwrap().len(), 32);
    f.set(Faults {
        missing: true,
        ..Faults::default()
    });
    assert!(!f.stat().present);
    assert!(f.get("x").is_err());
    f.set(Faults {
        slow: Some(std::time::Duration::from_millis(20)),
        ..Faults::default()
    });
    let t = std::time::Instant::now();
    f.get("x").unwrap();
    assert!(t.elapsed() >= std::time::Duration::from_millis(20));
}

#[test]
fn s3_disk_conforms() {
    let moto = Moto::start();
    moto.create_bucket("conform");
    // A bucket that does not exist is not present.
    let nobucket = S3Disk::open("s3://no-such-bucket/v", &moto.settings()).unwrap();
    assert!(!nobucket.stat().present);
    // Two disks in one bucket under different prefixes, plus one at the bucket root.
    let a = S3Disk::open("s3://conform/vol/a", &moto.settings()).unwrap();
    let b = S3Disk::open("s3://conform/vol/ab", &moto.settings()).unwrap();
    assert_eq!(a.describe(), "s3://conform/vol/a");
    conformance(&a);
    assert!(
        b.list("").unwrap().is_empty(),
        "prefix vol/ab sees vol/a's objects"
    );
    conformance(&b);
    moto.create_bucket("conform-root");
    conformance(&S3Disk::open("s3://conform-root", &moto.settings()).unwrap());
    conformance(&FaultDisk::new(Arc::new(
        S3Disk::open("s3://conform/vol/f", &moto.settings()).unwrap(),
    )));
}

#[test]
fn s3_shards_are_put_if_absent() {
    let moto = Moto::start();
    moto.create_bucket("pia");
    let d = S3Disk::open("s3://pia/v", &moto.settings()).unwrap();
    let name = "shards/ab/cd/abcd.0";
    d.put(name, b"shard bytes").unwrap();
    assert_eq!(d.existing_identical(), 0);
    // The second put of identical bytes meets If-None-Match and is a success without rewriting.
    d.put(name, b"shard bytes").unwrap();
    assert_eq!(
        d.existing_identical(),
        1,
        "the server did not refuse the conditional put (If-None-Match: *)"
    );
    // Different bytes under a shard name are corrupt by definition: a heal replaces them.
    d.put(name, b"healed bytes").unwrap();
    assert_eq!(d.get(name).unwrap(), b"healed bytes");
    // Headers and pointers are plain overwrites.
    d.put("valencefs.hdr", b"1").unwrap();
    d.put("valencefs.hdr", b"2").unwrap();
    assert_eq!(d.get("valencefs.hdr").unwrap(), b"2");
    assert_eq!(d.existing_identical(), 1);
}

#[test]
fn s3_dead_endpoint_fails_within_the_timeout_then_fast() {
    let mut moto = Moto::start();
    moto.create_bucket("dead");
    let d = S3Disk::open("s3://dead/v", &moto.settings()).unwrap();
    d.put("x", b"1").unwrap();
    assert!(d.stat().present && d.stat().writable);
    moto.kill();
    let t = Instant::now();
    let e = d.get("x").unwrap_err();
    assert!(
        !matches!(e, Error::NotFound),
        "a dead endpoint is not an absent object: {e}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    // Set aside: every further operation fails at once, and the disk reports itself absent.
    let t = Instant::now();
    for _ in 0..20 {
        assert!(d.get("x").is_err());
        assert!(d.put("shards/ab/cd/y.1", b"y").is_err());
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "took {:?}",
        t.elapsed()
    );
    assert!(!d.stat().present);
    let msg = e.to_string();
    assert!(msg.contains("s3://dead/v"), "{msg}");
    assert!(
        !msg.contains(s3_common::SECRET) && !msg.contains(s3_common::KEY_ID),
        "{msg}"
    );
}

#[test]
fn s3_silent_endpoint_times_out_and_is_set_aside() {
    // Accepts connections (the kernel backlog does) and never answers: the slow-endpoint case.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let settings = valencefs::store::S3Settings {
        endpoint: Some(format!("http://{}", hole.local_addr().unwrap())),
        access_key_id: Some(s3_common::KEY_ID.into()),
        secret_access_key: Some(s3_common::SECRET.into()),
        timeout: Some(Duration::from_millis(800)),
        ..Default::default()
    };
    let d = S3Disk::open("s3://silent/v", &settings).unwrap();
    let t = Instant::now();
    let e = d.get("x").unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert!(e.to_string().contains("no answer within"), "{e}");
    let t = Instant::now();
    assert!(!d.stat().present);
    assert!(d.list("").is_err());
    assert!(t.elapsed() < Duration::from_millis(100));
}

#[test]
fn s3_transient_errors_are_retried_with_backoff() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A server that answers the first two requests with 503 and then serves the object.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let server = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().take(3) {
                let mut c = conn.unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e1\"\r\n\
                     Last-Modified: Sun, 22 Nov 2026 06:00:00 GMT\r\nConnection: close\r\n\r\nhello"
                };
                let _ = c.write_all(reply.as_bytes());
            }
        })
    };
    let settings = valencefs::store::S3Settings {
        endpoint: Some(format!("http://{addr}")),
        access_key_id: Some(s3_common::KEY_ID.into()),
        secret_access_key: Some(s3_common::SECRET.into()),
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let d = S3Disk::open("s3://flaky/v", &settings).unwrap();
    assert_eq!(d.get("x").unwrap(), b"hello");
    assert_eq!(seen.load(Ordering::SeqCst), 3, "expected two retries");
    assert!(!d.is_down());
    server.join().unwrap();
}
