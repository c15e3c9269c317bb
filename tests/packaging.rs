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
    assert!(root.join("usr/share/doc/valencefs/copyright").is_file());
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
