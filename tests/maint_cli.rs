//! The maintenance subcommands end to end through the binary: scrub (keyless, then --repair), fsck exit codes as
//! fsck(8), gc, disk replace (config updated) and status --json with usage.

mod common;

use std::ffi::OsStr;
use std::sync::Arc;

use common::{stderr, vfs, Vol};
use valencefs::fs::{Chunks, Ctx, Fs, FsOptions, ROOT_INO};
use valencefs::store::{open_dir_disk, Store};

const PASS: &[u8] = b"correct horse battery staple";

fn store(v: &Vol) -> Arc<Store> {
    let disks = (1..=5).map(|i| open_dir_disk(&v.disk(i))).collect();
    Arc::new(Store::open(disks, PASS).unwrap())
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn maintenance_subcommands_end_to_end() {
    let v = Vol::new("personal");
    let cfg = v.config.to_str().unwrap().to_string();
    let pf = v.passfile.to_str().unwrap().to_string();
    let content: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    {
        let fs = Fs::start(
            store(&v) as Arc<dyn Chunks>,
            &v.state(),
            FsOptions::default(),
        )
        .unwrap();
        let (a, fh) = fs
            .create(
                &Ctx::ROOT,
                ROOT_INO,
                OsStr::new("f"),
                0o644,
                0,
                libc::O_RDWR,
            )
            .unwrap();
        fs.write(a.ino, fh, 0, &content).unwrap();
        fs.release(a.ino, fh).unwrap();
        fs.shutdown().unwrap();
    }

    // The integrity proof with the key: every chunk proven against the root sealed at unmount.
    let o = vfs(&["scrub", &cfg, "--integrity", "--passfile", &pf, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json(&o);
    assert!(j["root_matches"].as_bool().unwrap());
    assert!(j["proven"].as_u64().unwrap() >= 1, "{j}");
    assert_eq!(j["proven"], j["referenced"]);

    // Keyless scrub: clean; then one rotten shard is found (exit 1) and repaired with the key.
    let o = vfs(&["scrub", &cfg, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["bad_chunks"].as_array().unwrap().len(), 0);
    let shard = common::sh(&format!(
        "find {}/shards -type f | head -1",
        v.disk(3).display()
    ));
    let shard = shard.trim();
    let mut b = std::fs::read(shard).unwrap();
    let n = b.len();
    b[n - 1] ^= 0x40;
    std::fs::write(shard, b).unwrap();
    let o = vfs(&["scrub", &cfg, "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(json(&o)["disks"][2]["corrupt"], 1);
    let o = vfs(&["scrub", &cfg, "--repair", "--passfile", &pf]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = vfs(&["scrub", &cfg, "--sample", "50"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // fsck: clean 0; damaged 4; repaired 1; clean 0.
    let o = vfs(&["fsck", &cfg]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        stderr(&o),
        String::from_utf8_lossy(&o.stdout)
    );
    {
        let meta = valencefs::maint::open_meta(&v.state()).unwrap();
        let mut tx = meta.write().unwrap();
        let mut root = tx.inode(ROOT_INO).unwrap().unwrap();
        root.nlink = 40;
        tx.put_inode(&root).unwrap();
        tx.commit(true).unwrap();
    }
    assert_eq!(vfs(&["fsck", &cfg]).status.code(), Some(4));
    let o = vfs(&[
        "fsck",
        &cfg,
        "--repair",
        "--shards",
        "--passfile",
        &pf,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(json(&o)["problems"][0]["kind"], "wrong-nlink");
    assert_eq!(vfs(&["fsck", &cfg]).status.code(), Some(0));

    // gc on a tidy volume frees nothing.
    let o = vfs(&["gc", &cfg, "--json", "--passfile", &pf]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["orphan_chunks_freed"], 0);

    // Disk 2 dies; replace it onto a new directory; the config now names the new one.
    std::fs::remove_dir_all(v.disk(2)).unwrap();
    let new = v.dir.path().join("disk2b");
    let o = vfs(&[
        "disk",
        "replace",
        &cfg,
        v.disk(2).to_str().unwrap(),
        new.to_str().unwrap(),
        "--passfile",
        &pf,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&v.config)
        .unwrap()
        .contains("disk2b"));

    let o = vfs(&["status", &cfg, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["health"], "healthy");
    assert_eq!(j["redundancy_now"], 2);
    assert_eq!(j["disks"][1]["state"], "ok");
    assert!(j["disks"][1]["shards"].as_u64().unwrap() > 0);
    assert_eq!(j["usage"]["logical_bytes"], content.len() as u64);

    // Two other disks gone: the file still reads right through the rebuilt one.
    std::fs::remove_dir_all(v.disk(1)).unwrap();
    std::fs::remove_dir_all(v.disk(5)).unwrap();
    let disks = [v.disk(1), new, v.disk(3), v.disk(4), v.disk(5)]
        .iter()
        .map(|p| open_dir_disk(p))
        .collect();
    let st = Arc::new(Store::open(disks, PASS).unwrap());
    let fs = Fs::start(st as Arc<dyn Chunks>, &v.state(), FsOptions::default()).unwrap();
    let a = fs.lookup(&Ctx::ROOT, ROOT_INO, OsStr::new("f")).unwrap();
    let fh = fs.open(&Ctx::ROOT, a.ino, libc::O_RDONLY).unwrap();
    let mut got = Vec::new();
    while got.len() < content.len() {
        let b = fs.read(a.ino, fh, got.len() as u64, 1 << 20).unwrap();
        assert!(!b.is_empty());
        got.extend_from_slice(&b);
    }
    assert!(got == content);
    fs.release(a.ino, fh).unwrap();
    fs.shutdown().unwrap();
}
