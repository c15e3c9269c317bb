//! A mixed volume through a real FUSE mount: three directory disks and two S3 buckets (each on its own moto server,
//! as two providers would be), personal 3+2. Round trip; one server killed in the middle of a write (reads go on
//! degraded, writes go on: k+1 = 4 disks remain); the second killed too (reads go on from the k = 3 directories,
//! writes wait with an error); both restarted empty; `disk replace` rebuilds each bucket; scrub is clean; and a
//! read-only mount with two directory disks gone reads everything from the rebuilt buckets.

mod common;
mod s3_common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use s3_common::{Moto, KEY_ID, SECRET};
use valencefs::store::{Disk, S3Disk};

fn no_secrets(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET) && !text.contains(KEY_ID),
        "{what} shows a credential:\n{text}"
    );
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn shard_count(moto: &Moto, bucket: &str) -> usize {
    let d = S3Disk::open(&format!("s3://{bucket}/vol"), &moto.settings()).unwrap();
    d.list("shards/").unwrap().len()
}

#[test]
fn mixed_volume_with_two_buckets() {
    if !fuse_available() {
        return;
    }
    let mut a = Moto::start();
    let mut b = Moto::start();
    a.create_bucket("vfs-a");
    b.create_bucket("vfs-b");
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    let pass = p.join("pass");
    write_passfile(&pass, "correct horse battery staple\n");
    let s3toml = p.join("s3.toml");
    std::fs::write(
        &s3toml,
        format!(
            "[s3]\nregion = \"us-east-1\"\naccess_key_id = \"{KEY_ID}\"\nsecret_access_key = \"{SECRET}\"\n\
             timeout_secs = 2\n\
             [s3.disk.\"s3://vfs-a/vol\"]\nendpoint = \"{}\"\n\
             [s3.disk.\"s3://vfs-b/vol\"]\nendpoint = \"{}\"\n",
            a.endpoint(),
            b.endpoint()
        ),
    )
    .unwrap();
    let cfg = p.join("vol.toml");
    let (cfgs, passs, state) = (
        cfg.display().to_string(),
        pass.display().to_string(),
        p.join("state").display().to_string(),
    );
    let dirs: Vec<String> = (1..=3)
        .map(|i| p.join(format!("disk{i}")).display().to_string())
        .collect();
    let mut args = vec![
        "init",
        "--config",
        &cfgs,
        "--passfile",
        &passs,
        "--state",
        &state,
        "--s3-config",
    ];
    let s3s = s3toml.display().to_string();
    args.push(&s3s);
    args.extend(dirs.iter().map(String::as_str));
    args.extend(["s3://vfs-a/vol", "s3://vfs-b/vol"]);
    let o = vfs(&args);
    assert!(o.status.success(), "init: {}", out(&o));
    no_secrets("init", &out(&o));
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains("s3://vfs-a/vol") && text.contains(SECRET),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let mnt = p.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mnt.display().to_string();
    let log = || std::fs::read_to_string(p.join("state/valencefs.log")).unwrap_or_default();
    let mount = |opts: &str| {
        let g = MountGuard::new(&mnt);
        let o = vfs(&["mount", "-o", opts, &cfgs, &m]);
        assert!(o.status.success(), "mount: {}\n{}", out(&o), log());
        no_secrets("mount", &out(&o));
        g
    };
    let passopt = format!("passfile={passs}");
    let src = p.join("src");
    std::fs::create_dir(&src).unwrap();
    let srcs = src.display().to_string();
    sh(&format!(
        "head -c 6000000 /dev/urandom > {srcs}/a && head -c 1234 /dev/urandom > {srcs}/b \
         && head -c 9000000 /dev/urandom > {srcs}/e && head -c 3000000 /dev/urandom > {srcs}/g"
    ));
    let sum = |f: &str| sh(&format!("sha256sum < {f}"));

    // 1. Round trip through the mount and a remount.
    let g = mount(&passopt);
    sh(&format!(
        "cp {srcs}/a {srcs}/b {m}/ && mkdir {m}/d && cp {srcs}/b {m}/d/c"
    ));
    g.umount();
    assert!(shard_count(&a, "vfs-a") > 0 && shard_count(&b, "vfs-b") > 0);
    let g = mount(&passopt);
    for (f, s) in [("a", "a"), ("b", "b"), ("d/c", "b")] {
        assert_eq!(sum(&format!("{m}/{f}")), sum(&format!("{srcs}/{s}")), "{f}");
    }
    let st = vfs(&["status", &cfgs]);
    no_secrets("status", &out(&st));
    assert!(out(&st).contains("s3://vfs-b/vol"), "{}", out(&st));

    // 2. Server B dies in the middle of a write: the write completes on the 4 remaining disks (k+1), reads go on.
    let writer = {
        let (srcs, m) = (srcs.clone(), m.clone());
        std::thread::spawn(move || {
            Command::new("bash")
                .args(["-c", &format!("dd if={srcs}/e of={m}/e bs=1M conv=fsync")])
                .status()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    b.kill();
    let st = writer.join().unwrap();
    assert!(st.success(), "write with one bucket dead failed\n{}", log());
    sh("echo 3 > /proc/sys/vm/drop_caches");
    let t0 = Instant::now();
    for (f, s) in [("a", "a"), ("b", "b"), ("d/c", "b"), ("e", "e")] {
        assert_eq!(
            sum(&format!("{m}/{f}")),
            sum(&format!("{srcs}/{s}")),
            "{f}\n{}",
            log()
        );
    }
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "degraded reads took {:?}",
        t0.elapsed()
    );
    g.umount();
    // Remounting with the dead server: the bucket is missing, the volume opens degraded.
    let g = mount(&passopt);
    sh("echo 3 > /proc/sys/vm/drop_caches");
    assert_eq!(sum(&format!("{m}/e")), sum(&format!("{srcs}/e")));

    // 3. Server A dies too: only k = 3 disks are left. Reads go on; a durable write cannot be placed (k+1 needed)
    // and fsync reports the error instead of hanging.
    a.kill();
    sh("echo 3 > /proc/sys/vm/drop_caches");
    for (f, s) in [("a", "a"), ("e", "e")] {
        assert_eq!(
            sum(&format!("{m}/{f}")),
            sum(&format!("{srcs}/{s}")),
            "{f}\n{}",
            log()
        );
    }
    let t0 = Instant::now();
    let o = Command::new("bash")
        .args(["-c", &format!("dd if={srcs}/g of={m}/g bs=1M conv=fsync")])
        .output()
        .unwrap();
    assert!(!o.status.success(), "fsync succeeded with only k disks");
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "fsync took {:?}",
        t0.elapsed()
    );
    no_secrets("daemon log", &log());

    // 4. Both servers come back empty (state lost); the pending data flushes once the buckets answer again.
    let (pa, pb) = (a.port, b.port);
    a = Moto::start_on(pa).unwrap();
    b = Moto::start_on(pb).unwrap();
    a.create_bucket("vfs-a");
    b.create_bucket("vfs-b");
    // The disks were set aside for 6 × the 2 s timeout; after that the next request tries again.
    std::thread::sleep(Duration::from_secs(13));
    // (`sync -f` is syncfs, which Linux does not pass to FUSE: fsync the file itself.)
    sh(&format!(
        "python3 -c 'import os; os.fsync(os.open(\"{m}/g\", os.O_RDONLY))'"
    ));
    g.umount();

    // 5. Keyless scrub sees the lost shards; disk replace rebuilds each bucket in place; scrub is then clean.
    let o = vfs(&["scrub", &cfgs]);
    assert_eq!(o.status.code(), Some(1), "scrub: {}", out(&o));
    no_secrets("scrub", &out(&o));
    for url in ["s3://vfs-a/vol", "s3://vfs-b/vol"] {
        let o = vfs(&["disk", "replace", &cfgs, url, url, "--passfile", &passs]);
        assert!(o.status.success(), "replace {url}: {}", out(&o));
        no_secrets("disk replace", &out(&o));
    }
    let o = vfs(&["scrub", &cfgs, "--json"]);
    assert!(o.status.success(), "scrub after replace: {}", out(&o));
    assert!(shard_count(&a, "vfs-a") > 0 && shard_count(&b, "vfs-b") > 0);

    // 6. Two directory disks gone: everything reads from disk3 and the two rebuilt buckets.
    std::fs::remove_dir_all(Path::new(&dirs[0])).unwrap();
    std::fs::remove_dir_all(Path::new(&dirs[1])).unwrap();
    let g = mount(&format!("ro,{passopt}"));
    for (f, s) in [("a", "a"), ("b", "b"), ("d/c", "b"), ("e", "e"), ("g", "g")] {
        assert_eq!(
            sum(&format!("{m}/{f}")),
            sum(&format!("{srcs}/{s}")),
            "{f}\n{}",
            log()
        );
    }
    g.umount();
    no_secrets("daemon log", &log());
}

use std::process::Command;
