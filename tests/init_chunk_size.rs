//! `init --chunk-size`: the chosen FastCDC sizes reach every disk header; a bad size is refused before anything
//! is created.

mod common;
use common::*;
use valencefs::store::format::DiskHeader;
use valencefs::store::ChunkerParams;

fn init(dir: &std::path::Path, size: &str) -> std::process::Output {
    let pass = dir.join("pass");
    write_passfile(&pass, "pw\n");
    let d = |i: usize| dir.join(format!("d{i}")).display().to_string();
    vfs(&[
        "init",
        "--config",
        dir.join("v.toml").to_str().unwrap(),
        "--passfile",
        pass.to_str().unwrap(),
        "--state",
        dir.join("state").to_str().unwrap(),
        "--chunk-size",
        size,
        &d(1),
        &d(2),
        &d(3),
        &d(4),
        &d(5),
    ])
}

#[test]
fn chunk_size_is_recorded_in_every_header() {
    let t = tempfile::tempdir().unwrap();
    let o = init(t.path(), "64K");
    assert!(o.status.success(), "{}", stderr(&o));
    for i in 1..=5 {
        let b = std::fs::read(t.path().join(format!("d{i}/valencefs.hdr"))).unwrap();
        let h = DiskHeader::decode(&b).unwrap();
        assert_eq!(
            h.chunker,
            ChunkerParams {
                min: 16 << 10,
                avg: 64 << 10,
                max: 256 << 10
            }
        );
    }
}

#[test]
fn bad_chunk_size_is_refused_before_creating_anything() {
    for bad in ["3K", "96K", "8M", "lots"] {
        let t = tempfile::tempdir().unwrap();
        let o = init(t.path(), bad);
        assert_eq!(o.status.code(), Some(3), "{bad}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("chunk size") || stderr(&o).contains("size"),
            "{bad}: {}",
            stderr(&o)
        );
        assert!(!t.path().join("d1").exists(), "{bad}: disk created");
        assert!(!t.path().join("v.toml").exists(), "{bad}: config written");
    }
}
