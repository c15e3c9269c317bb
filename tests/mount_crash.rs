//! Crash loop: a writer fsyncs files of varied sizes on a real mount and logs each acknowledged fsync outside it;
//! the daemon gets SIGKILL at a random moment; after remounting, every acknowledged file has exactly its content,
//! and `fsck` of the volume is clean both straight after the crash (as the crash left it) and after the remount.
//! TRIALS (env VALENCEFS_CRASH_TRIALS, default 50) rounds; bench/crash.sh runs more.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Writes files `f<round>_<i>` with deterministic content (sizes vary from 0 to ~600 KB, some overwrite a
/// previous file), fsyncs each, then appends "name sha256" to the log and fsyncs the log.
const WRITER: &str = r#"
import hashlib, os, random, sys
mnt, log, rnd = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = random.Random(rnd)
lf = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
i = 0
while True:
    size = r.choice([0, 1, 100, 4096, 65536, 200000, r.randrange(600000)])
    data = r.randbytes(size) if r.random() < 0.7 else bytes([i % 251]) * size
    name = "f%d_%d" % (rnd, i)
    try:
        fd = os.open(os.path.join(mnt, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        sys.exit(0)
    os.write(lf, ("%s %s\n" % (name, hashlib.sha256(data).hexdigest())).encode())
    os.fsync(lf)
    i += 1
"#;

fn sha256(path: &std::path::Path) -> Option<String> {
    let out = Command::new("sha256sum").arg(path).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout)[..64].to_string())
}

fn fsck_clean(v: &Vol, round: u64, shards: bool) {
    let config = v.config.to_str().unwrap();
    let passfile = v.passfile.to_str().unwrap();
    let mut args = vec!["fsck", config, "--passfile", passfile];
    if shards {
        args.push("--shards");
    }
    let out = vfs(&args);
    assert!(
        out.status.success(),
        "round {round}: fsck (shards={shards}) not clean: exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

#[test]
fn acknowledged_fsyncs_survive_sigkill() {
    crash_loop(&[], 50, true);
}

/// The same over packed stripes (format v3): a stripe is written at each fsync's sync, and a kill can tear one.
/// fsck checks the metadata only (its shard check does not read stripes yet); every acknowledged file is read.
#[test]
fn acknowledged_fsyncs_survive_sigkill_over_packed_stripes() {
    crash_loop(&["--format", "3"], 15, false);
}

fn crash_loop(init_args: &[&str], default_trials: u64, shard_check: bool) {
    if !fuse_available() {
        return;
    }
    let trials: u64 = std::env::var("VALENCEFS_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_trials);
    let v = Vol::new_init("personal", init_args, |_| {});
    let log = v.dir.path().join("acked.log");
    let script = v.dir.path().join("writer.py");
    std::fs::write(&script, WRITER).unwrap();
    let mut seed = 0x5eed_u64 ^ std::process::id() as u64;
    eprintln!("crash loop seed {seed:#x}");
    let mut acked_total = 0;
    for round in 0..trials {
        let g = v.mount();
        let mut writer = Command::new("python3")
            .arg(&script)
            .arg(&v.mnt)
            .arg(&log)
            .arg(round.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("python3");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(50 + seed % 400));
        let pid = daemon_pid(&v.state()).expect("daemon pid");
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_until("daemon death", Duration::from_secs(10), || unsafe {
            libc::kill(pid, 0) != 0
        });
        let _ = writer.wait();
        g.umount(); // clears the dead mount
        drop(g);
        // As the crash left it: leftovers must be harmless (unreferenced shards are gc's business, not errors).
        // Every 10th round also checks every referenced chunk's shards (slower).
        fsck_clean(&v, round, shard_check && round % 10 == 9);

        let g = v.mount();
        let acked = std::fs::read_to_string(&log).unwrap_or_default();
        for line in acked.lines() {
            let (name, want) = line.split_once(' ').unwrap();
            let got = sha256(&v.mnt.join(name));
            assert_eq!(
                got.as_deref(),
                Some(want),
                "round {round}: acknowledged {name} lost or wrong\n{}",
                v.log()
            );
        }
        acked_total = acked.lines().count();
        g.umount();
        fsck_clean(&v, round, false);
    }
    assert!(
        acked_total * 5 >= trials as usize,
        "the writer barely ran: {acked_total} fsyncs acknowledged"
    );
    eprintln!("{trials} crash trials, {acked_total} acknowledged fsyncs all intact");
}
