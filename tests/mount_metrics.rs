//! Observability of a real mount: the Prometheus endpoint (`-o metrics=`), `valencefs stats`, heal-on-read
//! counters and log lines, and the lifetime counters `status` shows after unmount.

mod common;
use common::*;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;
use valencefs::metrics::exposition::{self, Samples};

fn stats_json(mnt: &Path) -> serde_json::Value {
    let out = vfs(&["stats", "--json", mnt.to_str().unwrap()]);
    assert!(out.status.success(), "stats failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("stats --json prints JSON")
}

/// One HTTP/1.0 request; returns (status line, headers, body).
fn http_get(addr: &str, path: &str) -> (String, String, String) {
    let mut c = std::net::TcpStream::connect(addr).expect("connect to metrics");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

fn scrape(addr: &str) -> Samples {
    let (status, headers, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    exposition::parse(&body).unwrap_or_else(|e| panic!("not exposition format: {e}\n{body}"))
}

fn get(s: &Samples, key: &str) -> f64 {
    *s.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:?}", s.keys().collect::<Vec<_>>()))
}

fn disk_key(name: &str, v: &Vol, i: usize) -> String {
    format!(
        "{name}{{disk=\"{}\",index=\"{}\"}}",
        v.disk(i + 1).display(),
        i
    )
}

#[test]
fn metrics_endpoint_counts_a_workload() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let g = v.mount_with("metrics=127.0.0.1:0");
    let addr = stats_json(&v.mnt)["metrics_address"]
        .as_str()
        .expect("metrics address in stats")
        .to_string();
    let before = scrape(&addr);
    assert_eq!(get(&before, "valencefs_written_bytes_total"), 0.0);
    assert_eq!(get(&before, "valencefs_redundancy_disks_usable"), 5.0);
    assert_eq!(get(&before, "valencefs_redundancy_disks_target"), 5.0);
    assert_eq!(get(&before, "valencefs_redundancy_tolerable_losses"), 2.0);

    // Written, not yet flushed: bytes and write requests counted, the data sits in the write-back cache.
    let m = v.mnt.display();
    sh(&format!("head -c 3000000 /dev/urandom > {m}/a"));
    let during = scrape(&addr);
    assert_eq!(get(&during, "valencefs_written_bytes_total"), 3_000_000.0);
    let writes = get(&during, "valencefs_fuse_requests_total{op=\"write\"}");
    assert!(writes >= 1.0);
    assert_eq!(
        get(
            &during,
            "valencefs_fuse_request_duration_seconds_count{op=\"write\"}"
        ),
        writes
    );
    assert!(
        get(&during, "valencefs_cache_dirty_bytes") > 0.0,
        "dirty bytes should show unflushed data"
    );

    // fsync: the data goes to the disks; every disk of a 3+2 volume over 5 disks gets one shard per chunk.
    sh(&format!(
        "dd if=/dev/null of={m}/a conv=notrunc,fsync status=none"
    ));
    let after = scrape(&addr);
    assert_eq!(get(&after, "valencefs_cache_dirty_bytes"), 0.0);
    assert!(get(&after, "valencefs_chunks_stored_total") >= 1.0);
    for i in 0..5 {
        let w = get(
            &after,
            &disk_key("valencefs_disk_shard_writes_total", &v, i),
        );
        assert!(w >= 1.0, "disk {i} got no shard writes");
        assert_eq!(
            get(&after, &disk_key("valencefs_disk_errors_total", &v, i)),
            0.0
        );
    }
    assert!(get(&after, "valencefs_fuse_requests_total{op=\"fsync\"}") >= 1.0);
    assert!(get(&after, "valencefs_stored_bytes") >= 0.0);

    // A failure counts as an error; a lookup of a name that does not exist (creating `a`) does not.
    // (rmdir of a non-empty directory: only the filesystem knows, so the kernel has to ask.)
    sh(&format!(
        "mkdir {m}/d && touch {m}/d/x && ! rmdir {m}/d 2>/dev/null"
    ));
    let s = scrape(&addr);
    assert_eq!(get(&s, "valencefs_fuse_errors_total{op=\"rmdir\"}"), 1.0);
    assert_eq!(get(&s, "valencefs_fuse_requests_total{op=\"rmdir\"}"), 1.0);
    assert_eq!(get(&s, "valencefs_fuse_errors_total{op=\"lookup\"}"), 0.0);
    assert!(get(&s, "valencefs_fuse_requests_total{op=\"lookup\"}") >= 1.0);

    // Other paths and methods are refused politely.
    assert_eq!(http_get(&addr, "/nope").0, "HTTP/1.0 404 Not Found");

    // `stats` shows the same counters, as JSON and as a table.
    let j = stats_json(&v.mnt);
    assert_eq!(j["io"]["written_bytes"], 3_000_000);
    assert_eq!(j["store"]["k"], 3);
    assert_eq!(j["store"]["disks"].as_array().unwrap().len(), 5);
    assert!(j["store"]["disks"][0]["shard_writes"].as_u64().unwrap() >= 1);
    let out = vfs(&["stats", v.mnt.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains("3+2: 5/5 disks usable"),
        "{table}"
    );
    g.umount();
    // The listener went away with the mount.
    assert!(std::net::TcpStream::connect(&addr).is_err());
}

#[test]
fn stats_without_metrics_option() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let g = v.mount();
    sh(&format!(
        "echo hello > {}/f && cat {}/f",
        v.mnt.display(),
        v.mnt.display()
    ));
    let j = stats_json(&v.mnt);
    assert_eq!(
        j["mountpoint"],
        std::fs::canonicalize(&v.mnt).unwrap().display().to_string()
    );
    assert!(j["metrics_address"].is_null());
    assert_eq!(j["io"]["written_bytes"], 6);
    assert!(j["ops"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["op"] == "create" && o["count"] == 1));
    let out = vfs(&["stats", "--prometheus", v.mnt.to_str().unwrap()]);
    exposition::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    g.umount();
    // Not mounted any more: a clear error and NOT_MOUNTED.
    let out = vfs(&["stats", v.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not mounted"), "{}", stderr(&out));
}

#[test]
fn heal_on_read_is_counted_logged_and_recorded() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let m = v.mnt.display().to_string();
    let sum = {
        let g = v.mount();
        sh(&format!("head -c 4000000 /dev/urandom > {m}/a"));
        let sum = sh(&format!("sha256sum < {m}/a"));
        g.umount();
        sum
    };
    // Rot every shard on disks 2 and 4 (indexes 1 and 3). A chunk's parity shards sit on two consecutive disks,
    // so every chunk has a rotten data shard and its read must reconstruct and heal.
    for i in [2, 4] {
        sh(&format!(
            "find {} -path '*shards*' -type f -size +100c | while read f; do \
             printf 'ROTROTROT' | dd of=\"$f\" bs=1 seek=$(( $(stat -c %s \"$f\") - 9 )) conv=notrunc status=none; done",
            v.disk(i).display()
        ));
    }
    let g = v.mount_with("metrics=127.0.0.1:0");
    let addr = stats_json(&v.mnt)["metrics_address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sh(&format!("sha256sum < {m}/a")), sum, "{}", v.log());
    let s = scrape(&addr);
    let (mut repairs, mut errors) = (0.0, 0.0);
    // The rotten disk with the most repairs, and its count (replaced at the end).
    let mut victim = (1, -1.0);
    for i in 0..5 {
        let r = get(&s, &disk_key("valencefs_disk_repairs_total", &v, i));
        let e = get(&s, &disk_key("valencefs_disk_errors_total", &v, i));
        if i == 1 || i == 3 {
            if r > victim.1 {
                victim = (i, r);
            }
            repairs += r;
            errors += e;
            assert_eq!(
                r,
                get(&s, &disk_key("valencefs_disk_degraded_reads_total", &v, i))
            );
        } else {
            assert_eq!((r, e), (0.0, 0.0), "disk {i} was healthy");
        }
    }
    assert!(repairs >= 1.0, "no heal counted\n{}", v.log());
    assert_eq!(errors, repairs);
    assert!(get(&s, "valencefs_degraded_reads_total") >= 1.0);
    assert_eq!(get(&s, "valencefs_unrecoverable_reads_total"), 0.0);
    // While mounted, status gets the per-disk totals from the daemon (the database is the daemon's).
    let out = vfs(&["status", "--json", v.config.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let live: u64 = j["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["repaired"].as_u64().expect("repaired while mounted"))
        .sum();
    assert_eq!(live as f64, repairs, "{j}");
    g.umount();

    // One line per event, naming the disk.
    let log = v.log();
    let named = |what: &str| {
        [2, 4].iter().any(|&i| {
            log.lines()
                .any(|l| l.contains(&format!("disk {}: ", v.disk(i).display())) && l.contains(what))
        })
    };
    assert!(named("is corrupt"), "no corrupt-shard line:\n{log}");
    assert!(named("repaired shard"), "no repair line:\n{log}");

    // The lifetime totals survive the unmount: status (offline) shows them per disk.
    let out = vfs(&["status", "--json", v.config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let disks = j["disks"].as_array().unwrap();
    let total = |k: &str| -> u64 { disks.iter().map(|d| d[k].as_u64().unwrap()).sum() };
    assert_eq!(total("repaired") as f64, repairs);
    assert_eq!(total("errors_seen") as f64, errors);
    for i in [0, 2, 4] {
        assert_eq!(disks[i]["repaired"], 0, "{j}");
    }
    let text =
        String::from_utf8_lossy(&vfs(&["status", v.config.to_str().unwrap()]).stdout).into_owned();
    assert!(text.contains("errors seen"), "{text}");

    // The heal was written back: the next mount reads clean, and the totals stay as they were.
    let g = v.mount_with("metrics=127.0.0.1:0");
    let addr = stats_json(&v.mnt)["metrics_address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sh(&format!("sha256sum < {m}/a")), sum);
    let s = scrape(&addr);
    for i in 0..5 {
        assert_eq!(
            get(&s, &disk_key("valencefs_disk_repairs_total", &v, i)),
            0.0
        );
    }
    g.umount();
    let out = vfs(&["status", "--json", v.config.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let again: u64 = j["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["repaired"].as_u64().unwrap())
        .sum();
    assert_eq!(again as f64, repairs);

    // A replaced disk starts with a clean record; the others keep theirs.
    let (slot, slot_repairs) = victim;
    assert!(slot_repairs >= 1.0);
    let new = v.dir.path().join("replacement");
    let out = vfs(&[
        "disk",
        "replace",
        v.config.to_str().unwrap(),
        v.disk(slot + 1).to_str().unwrap(),
        new.to_str().unwrap(),
        "--passfile",
        v.passfile.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = vfs(&["status", "--json", v.config.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let disks = j["disks"].as_array().unwrap();
    assert_eq!(disks[slot]["path"], new.display().to_string());
    assert_eq!(disks[slot]["repaired"], 0, "{j}");
    assert_eq!(disks[slot]["errors_seen"], 0, "{j}");
    let kept: u64 = disks.iter().map(|d| d["repaired"].as_u64().unwrap()).sum();
    assert_eq!(kept as f64, repairs - slot_repairs);
}

#[test]
fn bad_metrics_and_log_options_are_refused() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let _g = MountGuard::new(&v.mnt);
    let mount = |o: &str| {
        vfs(&[
            "mount",
            "-o",
            &format!("{},{o}", v.passopt()),
            v.config.to_str().unwrap(),
            v.mnt.to_str().unwrap(),
        ])
    };
    let out = mount("metrics=nonsense");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("metrics=nonsense: expected IP:PORT"),
        "{}",
        stderr(&out)
    );
    let out = mount("log=loud");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("log level 'loud'"),
        "{}",
        stderr(&out)
    );
    let out = vfs(&["--log-level", "loud", "status", v.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A port in use: the mount fails with the reason instead of going live without metrics.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = mount(&format!("metrics={}", busy.local_addr().unwrap()));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot listen there"),
        "{}",
        stderr(&out)
    );
    assert!(!is_mounted(&v.mnt));
}

/// Removes the socket it bound at `/dev/log` on every path.
struct DevLog(std::os::unix::net::UnixDatagram);

impl Drop for DevLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file("/dev/log");
    }
}

#[test]
fn daemon_logs_to_syslog_when_dev_log_exists() {
    if !fuse_available() {
        return;
    }
    if Path::new("/dev/log").exists() {
        // A real syslog daemon owns it; its messages cannot be intercepted here.
        eprintln!("SKIPPED: /dev/log exists");
        return;
    }
    let sock = match std::os::unix::net::UnixDatagram::bind("/dev/log") {
        Ok(s) => DevLog(s),
        Err(e) => {
            eprintln!("SKIPPED: cannot bind /dev/log: {e}");
            return;
        }
    };
    sock.0
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let v = Vol::new("personal");
    let g = v.mount();
    let want = format!(
        "mounted at {}",
        std::fs::canonicalize(&v.mnt).unwrap().display()
    );
    let mut buf = vec![0u8; 8192];
    let line = loop {
        let n = sock
            .0
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no syslog line ({e}); log file:\n{}", v.log()));
        let l = String::from_utf8_lossy(&buf[..n]).into_owned();
        if l.contains(&want) {
            break l;
        }
    };
    g.umount();
    // <facility daemon (3) * 8 + info (6)> ... valencefs[pid]: message, without the file's timestamp and level.
    assert!(line.starts_with("<30>"), "{line}");
    assert!(line.contains("valencefs["), "{line}");
    assert!(!line.contains("INFO"), "{line}");
    // The log file still gets every line.
    assert!(v.log().contains(&want), "{}", v.log());
}
