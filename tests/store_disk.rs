//! One conformance suite run against every `Disk` implementation: directory, memory, fault (no faults).

use std::sync::Arc;

use valencefs::store::{open_dir_disk, Disk, FaultDisk, MemDisk};
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
