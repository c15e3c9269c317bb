//! `packaging/build-deb.sh` builds a .deb from this test's binary that installs every file where Debian and
//! mount(8) look for it, and whose programs run from the unpacked tree.

mod common;
use common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds the package into a scratch directory and unpacks it with `dpkg -x`: (scratch, .deb, unpacked root).
fn build_and_unpack() -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    if !have("dpkg-deb") {
        eprintln!("SKIPPED: dpkg-deb not found (not a Debian system)");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = run(Command::new(repo().join("packaging/build-deb.sh"))
        .arg(bin())
        .arg(tmp.path().join("out"))
        // gzip: xz spends seconds on the binary, and the test is about contents.
        .env("VALENCEFS_DEB_COMPRESS", "gzip"));
    let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(deb.is_file(), "build-deb.sh printed {deb:?}, not a file");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("valencefs_{version}_")),
        "{deb:?}"
    );
    let root = tmp.path().join("root");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root));
    Some((tmp, deb, root))
}

fn gunzip(p: &Path) -> Vec<u8> {
    run(Command::new("gzip").arg("-dc").arg(p)).stdout
}

#[test]
fn deb_installs_everything_where_it_belongs() {
    let Some((_tmp, deb, root)) = build_and_unpack() else {
        return;
    };

    // Control data: the dependencies a FUSE file system needs, and this build's version.
    let info = String::from_utf8_lossy(&run(Command::new("dpkg-deb").arg("-I").arg(&deb)).stdout)
        .into_owned();
    let field = |name: &str| -> String {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} field in:\n{info}"))
            .to_string()
    };
    assert_eq!(field("Package"), "valencefs");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    let depends: Vec<String> = field("Depends")
        .split(',')
        .map(|d| d.trim().to_string())
        .collect();
    assert!(depends.iter().any(|d| d == "fuse3"), "Depends: {depends:?}");
    assert!(
        depends.iter().any(|d| d.starts_with("libc6")),
        "Depends: {depends:?}"
    );

    // Every member owned by root (--root-owner-group), whoever built it.
    let listing =
        String::from_utf8_lossy(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout)
            .into_owned();
    for line in listing.lines() {
        assert!(
            line.split_whitespace().nth(1) == Some("root/root"),
            "not owned by root: {line}"
        );
    }

    // The binary, and the mount(8) helper where mount(8) looks for it.
    let exe = root.join("usr/bin/valencefs");
    let meta = std::fs::metadata(&exe).expect("usr/bin/valencefs");
    assert!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0);
    let helper = root.join("sbin/mount.valencefs");
    let target = std::fs::read_link(&helper).expect("sbin/mount.valencefs is a symlink");
    assert_eq!(target, Path::new("/usr/bin/valencefs"));

    let out = run(Command::new(&exe).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("valencefs {}", env!("CARGO_PKG_VERSION"))
    );
    // The link is absolute (it crosses top-level directories, and /sbin may be a link to /usr/sbin), so inside the
    // unpacked tree run its target with argv[0] set to the link, exactly as mount(8) will run it once installed.
    let run_helper = |args: &[&str]| {
        Command::new(root.join(target.strip_prefix("/").unwrap()))
            .arg0(&helper)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run_helper(&["--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: mount.valencefs") && help.contains("-o <OPTS>"),
        "{help}"
    );
    let out = run_helper(&["/nonexistent.toml", "/mnt", "-o", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("mount.valencefs: unknown mount option 'frobnicate'"));

    // Man pages: every page in man/, gzipped into its section, byte for byte the committed page.
    let mut pages = 0;
    for entry in std::fs::read_dir(repo().join("man")).unwrap() {
        let src = entry.unwrap().path();
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        let section = name.rsplit('.').next().unwrap();
        let packaged = root.join(format!("usr/share/man/man{section}/{name}.gz"));
        assert!(packaged.is_file(), "{} missing", packaged.display());
        assert_eq!(
            gunzip(&packaged),
            std::fs::read(&src).unwrap(),
            "{name} differs"
        );
        pages += 1;
    }
    for must in [
        "man8/valencefs.8.gz",
        "man8/mount.valencefs.8.gz",
        "man5/valencefs.5.gz",
        "man7/valencefs-format.7.gz",
    ] {
        assert!(root.join("usr/share/man").join(must).is_file(), "{must}");
    }
    assert!(pages >= 10, "only {pages} man pages in man/");

    // Completions where bash-completion, zsh and fish look for vendor scripts; bash's must load and register.
    let bash = root.join("usr/share/bash-completion/completions/valencefs");
    for (p, marker) in [
        (&bash, "complete -F"),
        (
            &root.join("usr/share/zsh/vendor-completions/_valencefs"),
            "#compdef valencefs",
        ),
        (
            &root.join("usr/share/fish/vendor_completions.d/valencefs.fish"),
            "complete -c valencefs",
        ),
    ] {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(text.contains(marker), "{} lacks {marker}", p.display());
        assert!(
            text.contains("quickstart"),
            "{} lacks subcommands",
            p.display()
        );
    }
    if have("bash") {
        let out = run(Command::new("bash").arg("-c").arg(format!(
            "source '{}' && complete -p valencefs",
            bash.display()
        )));
        assert!(String::from_utf8_lossy(&out.stdout).contains("valencefs"));
    }

    // systemd: the template is installed; .mount/.automount examples and the config examples are documentation.
    let unit = root.join("lib/systemd/system/valencefs@.service");
    let text = std::fs::read_to_string(&unit).expect("valencefs@.service");
    assert!(
        text.contains("ExecStart=/usr/bin/valencefs mount"),
        "{text}"
    );
    let examples = root.join("usr/share/doc/valencefs/examples");
    for f in [
        "mnt-photos.mount",
        "mnt-photos.automount",
        "photos.toml",
        "photos.env",
        "fstab",
    ] {
        assert!(examples.join(f).is_file(), "examples/{f} missing");
    }
    for f in [
        "copyright",
        "changelog.gz",
        "README.md.gz",
        "FORMAT.md.gz",
        "SECURITY.md.gz",
    ] {
        assert!(
            root.join("usr/share/doc/valencefs").join(f).is_file(),
            "doc/{f}"
        );
    }
    // md5sums (for `dpkg --verify`) lists every file, with the sums of what was unpacked.
    let control = root.join("DEBIAN");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let sums = std::fs::read_to_string(control.join("md5sums")).expect("DEBIAN/md5sums");
    assert!(sums.contains("  usr/bin/valencefs\n"), "{sums}");
    assert!(
        sums.contains("  usr/share/man/man5/valencefs.5.gz\n"),
        "{sums}"
    );
    run(Command::new("md5sum")
        .args(["-c", "--quiet", "DEBIAN/md5sums"])
        .current_dir(&root));
    verify_units(&unit, &examples);
}

/// `systemd-analyze verify` on the units (where systemd is installed): syntax, unit names matching mount points,
/// known keys. The only complaint allowed is that /usr/bin/valencefs is not installed on this machine.
fn verify_units(unit: &Path, examples: &Path) {
    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze not found; unit files not verified");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let instance = dir.path().join("valencefs@photos.service");
    std::fs::copy(unit, &instance).unwrap();
    let mut args = vec![instance];
    for f in ["mnt-photos.mount", "mnt-photos.automount"] {
        std::fs::copy(examples.join(f), dir.path().join(f)).unwrap();
        args.push(dir.path().join(f));
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let bad: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("Command /usr/bin/valencefs is not executable"))
        .map(str::to_string)
        .collect();
    assert!(
        bad.is_empty(),
        "systemd-analyze verify:\n{}",
        bad.join("\n")
    );
}

/// The commands of `valencefs@.service`, run as systemd would run them for `valencefs@photos` (instance and
/// `${VAR}` substitution, the optional EnvironmentFile), with /etc/valencefs moved into a scratch directory and
/// /usr/bin/valencefs being this build: start mounts the volume by the naming convention, stop unmounts it durably.
#[test]
fn service_template_mounts_and_unmounts_by_convention() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let etc = v.dir.path().join("etc/valencefs");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(&v.config, etc.join("photos.toml")).unwrap();
    std::fs::copy(&v.passfile, etc.join("photos.pass")).unwrap();
    let mnt = v.dir.path().join("srv/photos"); // does not exist yet: ExecStartPre creates it
    std::fs::write(
        etc.join("photos.env"),
        format!("# where to mount\nMOUNTPOINT={}\n", mnt.display()),
    )
    .unwrap();

    let unit =
        std::fs::read_to_string(repo().join("packaging/systemd/valencefs@.service")).unwrap();
    let etc_prefix = format!("{}/", etc.display());
    let localize = |s: &str| {
        s.replace("%I", "photos")
            .replace("%i", "photos")
            .replace("/etc/valencefs/", &etc_prefix)
    };
    let mut env: Vec<(String, String)> = vec![];
    let set = |line: &str, env: &mut Vec<(String, String)>| {
        if let Some((k, val)) = line.split_once('=') {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), val.to_string()));
        }
    };
    let (mut pre, mut start, mut stop) = (vec![], None, None);
    for line in unit.lines().map(localize) {
        if let Some(kv) = line.strip_prefix("Environment=") {
            set(kv, &mut env);
        } else if let Some(f) = line.strip_prefix("EnvironmentFile=") {
            let (optional, f) = f.strip_prefix('-').map_or((false, f), |f| (true, f));
            match std::fs::read_to_string(f) {
                Ok(text) => text
                    .lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                    .for_each(|l| set(l, &mut env)),
                Err(e) => assert!(optional, "EnvironmentFile {f}: {e}"),
            }
        } else if let Some(c) = line.strip_prefix("ExecStartPre=") {
            pre.push(c.to_string());
        } else if let Some(c) = line.strip_prefix("ExecStart=") {
            start = Some(c.to_string());
        } else if let Some(c) = line.strip_prefix("ExecStop=") {
            stop = Some(c.to_string());
        }
    }
    // ${VAR} is one word in systemd; none of our values contain spaces, so splitting after substitution is exact.
    let exec = |cmd: &str| -> Output {
        let mut cmd = cmd.to_string();
        for (k, val) in &env {
            cmd = cmd.replace(&format!("${{{k}}}"), val);
        }
        assert!(!cmd.contains("${"), "unset variable in {cmd}");
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let prog = if words[0] == "/usr/bin/valencefs" {
            bin()
        } else {
            words[0]
        };
        Command::new(prog)
            .args(&words[1..])
            .env("VALENCEFS_INSECURE_FAST_KDF", "1")
            .env_remove("VALENCEFS_PASSPHRASE")
            .output()
            .unwrap()
    };
    // The override file must win over the unit's default (/mnt/photos), or this test would mount on the host's /mnt.
    let mountpoint = env
        .iter()
        .find(|(k, _)| k == "MOUNTPOINT")
        .map(|(_, v)| v.as_str());
    assert_eq!(mountpoint, mnt.to_str(), "NAME.env did not set MOUNTPOINT");
    let (start, stop) = (start.expect("ExecStart"), stop.expect("ExecStop"));
    let _g = MountGuard::new(&mnt); // canonicalizes lazily: mnt does not exist yet, and that is fine
    for c in &pre {
        let o = exec(c);
        assert!(o.status.success(), "{c}: {}", stderr(&o));
    }
    let o = exec(&start);
    assert!(o.status.success(), "{start}: {}\n{}", stderr(&o), v.log());
    assert!(
        is_mounted(&mnt),
        "ExecStart returned 0 but {} is not mounted",
        mnt.display()
    );
    std::fs::write(mnt.join("f"), b"via the unit").unwrap();
    let o = exec(&stop);
    assert!(o.status.success(), "{stop}: {}", stderr(&o));
    assert!(!is_mounted(&mnt));
    // Stop means durable and the daemon gone: the volume mounts again at once and has the file.
    assert_eq!(
        valencefs::volume::StateLock::holder(&v.state()),
        None,
        "ExecStop returned but the daemon still holds the state lock"
    );
    let o = exec(&start);
    assert!(o.status.success(), "restart: {}", stderr(&o));
    assert_eq!(std::fs::read(mnt.join("f")).unwrap(), b"via the unit");
    let o = exec(&stop);
    assert!(o.status.success(), "{}", stderr(&o));
}
