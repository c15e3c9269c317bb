//! A real mount of a format v3 (packed stripes, experimental) volume: a tree of small files and an fsynced large
//! file land in a few stripe files per disk, and read back the same after an unmount and a remount.

mod common;
use common::*;

fn count_files(dir: &std::path::Path) -> usize {
    if !dir.exists() {
        return 0;
    }
    sh(&format!("find {} -type f | wc -l", dir.display()))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn small_files_pack_into_few_stripe_files_and_survive_a_remount() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new_init(
        "personal",
        &["--format", "3", "--chunk-size", "64K"],
        |_| {},
    );
    let m = v.mnt.display().to_string();
    let src = v.dir.path().join("src");
    let s = src.display().to_string();
    // 512 small files in 16 directories, and a 3 MB file.
    sh(&format!(
        "for d in $(seq 1 16); do mkdir -p {s}/t/$d; for f in $(seq 1 32); do \
         head -c $((d * 300 + f * 37)) /dev/urandom > {s}/t/$d/$f; done; done; \
         head -c 3000000 /dev/urandom > {s}/big"
    ));
    let sums = |root: &str| {
        sh(&format!(
            "cd {root} && find t big -type f | sort | xargs sha256sum"
        ))
    };
    let want = sums(&s);
    {
        let g = v.mount();
        sh(&format!(
            "tar -C {s} -cf - t | tar -C {m} -xf - && dd if={s}/big of={m}/big bs=1M conv=fsync status=none && sync"
        ));
        assert_eq!(sums(&m), want);
        g.umount();
    }
    let stripes: Vec<usize> = (1..=5)
        .map(|i| count_files(&v.disk(i).join("stripes")))
        .collect();
    let shards: usize = (1..=5)
        .map(|i| count_files(&v.disk(i).join("shards")))
        .sum();
    eprintln!("513 files -> stripe files per disk {stripes:?}, shard files {shards}");
    assert_eq!(shards, 0, "a v3 volume writes no per-chunk shard files");
    // At most one file per disk per 64 user files, with room for the short stripes of syncs and snapshots.
    assert!(stripes.iter().all(|&n| (1..=8).contains(&n)), "{stripes:?}");
    let g = v.mount();
    assert_eq!(sums(&m), want);
    g.umount();
    // status counts the stripe files (healthy), and scrub checks every stripe (keyless) and finds it clean.
    let st = vfs(&["status", v.config.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&st.stdout).to_string();
    assert!(out.contains("health      healthy"), "{out}{}", stderr(&st));
    let sc = vfs(&["scrub", v.config.to_str().unwrap()]);
    assert!(
        sc.status.success(),
        "{}{}",
        String::from_utf8_lossy(&sc.stdout),
        stderr(&sc)
    );
}
