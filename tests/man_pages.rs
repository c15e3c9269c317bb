//! The committed man pages match what the binary generates, and the hand-written valencefs(5) matches the code.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use valencefs::mount_opts::{MountOpts, IGNORED};

/// Pages in man/ written by hand rather than generated.
const HAND_WRITTEN: &[&str] = &["valencefs.5", "valencefs-format.7"];
const FIX: &str = "run `cargo run -- generate man man/` and commit the result";

fn man_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/man"))
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn generated_pages_are_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    let out = vfs(&["generate", "man", tmp.path().to_str().unwrap()]);
    assert!(out.status.success(), "generate man: {}", stderr(&out));
    let fresh = names(tmp.path());
    for must in [
        "valencefs.8",
        "mount.valencefs.8",
        "valencefs-mount.8",
        "valencefs-disk-replace.8",
    ] {
        assert!(fresh.contains(must), "generator wrote no {must}: {fresh:?}");
    }
    let committed: BTreeSet<String> = names(man_dir())
        .into_iter()
        .filter(|n| !HAND_WRITTEN.contains(&n.as_str()))
        .collect();
    let mut problems = vec![];
    for n in fresh.difference(&committed) {
        problems.push(format!("man/{n} is missing"));
    }
    for n in committed.difference(&fresh) {
        problems.push(format!("man/{n} is no longer generated (stale)"));
    }
    for n in fresh.intersection(&committed) {
        let want = std::fs::read(tmp.path().join(n)).unwrap();
        if std::fs::read(man_dir().join(n)).unwrap() != want {
            problems.push(format!("man/{n} differs from the generated page"));
        }
    }
    assert!(
        problems.is_empty(),
        "man pages out of date:\n  {}\n{FIX}",
        problems.join("\n  ")
    );
}

#[test]
fn hand_written_pages_name_this_version() {
    for page in HAND_WRITTEN {
        let text = std::fs::read_to_string(man_dir().join(page)).unwrap();
        let th = text.lines().find(|l| l.starts_with(".TH ")).unwrap();
        assert!(
            th.contains(&format!("\"valencefs {}\"", env!("CARGO_PKG_VERSION"))),
            "man/{page}: .TH line should name valencefs {}: {th}",
            env!("CARGO_PKG_VERSION")
        );
    }
}

/// The words a roff line sets in bold/italic/roman, without quotes and punctuation-only pieces.
fn roff_words(line: &str) -> Vec<String> {
    let body = line.split_once(' ').map_or("", |(_, b)| b);
    let mut words = vec![];
    for (i, piece) in body.split('"').enumerate() {
        if i % 2 == 1 {
            continue; // quoted separators such as ", "
        }
        words.extend(piece.split_whitespace().map(|w| w.replace("\\-", "-")));
    }
    words
}

/// Every option valencefs(5) documents is accepted by the parser, and every option the parser ignores is documented.
#[test]
fn valencefs_5_matches_the_option_parser() {
    let text = std::fs::read_to_string(man_dir().join("valencefs.5")).unwrap();
    let section = |from: &str, to: &str| -> Vec<String> {
        let start = text.find(from).unwrap_or_else(|| panic!("no {from}"));
        let end = start + text[start..].find(to).unwrap_or_else(|| panic!("no {to}"));
        text[start..end].lines().map(str::to_string).collect()
    };
    // Honoured options: the line after each .TP.
    let honoured_lines = section(".SH MOUNT OPTIONS", ".SS Options accepted and ignored");
    let mut honoured = vec![];
    for pair in honoured_lines.windows(2) {
        if pair[0] == ".TP" {
            let words = roff_words(&pair[1]);
            if pair[1].starts_with(".BI ") {
                honoured.push(words[0].clone()); // `passfile=` FILE
            } else {
                honoured.extend(words);
            }
        }
    }
    assert!(honoured.len() >= 10, "parsed too few options: {honoured:?}");
    for o in &honoured {
        let o = if o.ends_with('=') {
            // A sample value the option accepts (most take a number).
            match o.as_str() {
                "metrics=" => "metrics=127.0.0.1:9100".to_string(),
                "log=" => "log=info".to_string(),
                _ => format!("{o}1"),
            }
        } else {
            o.clone()
        };
        assert!(
            MountOpts::parse([o.as_str()]).is_ok(),
            "valencefs(5) documents '{o}' but the parser refuses it"
        );
    }
    // Ignored options: the .B/.BR lines of that subsection's list, after "...works everywhere:" up to .PP.
    let ignored_lines = section(".SS Options accepted and ignored", ".SH FSTAB");
    let documented: BTreeSet<String> = ignored_lines
        .iter()
        .skip_while(|l| !l.ends_with("everywhere:"))
        .take_while(|l| *l != ".PP")
        .filter(|l| l.starts_with(".BR ") || l.starts_with(".B "))
        .flat_map(|l| roff_words(l))
        .map(|w| w.trim_end_matches(',').to_string())
        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    assert!(
        documented.len() >= IGNORED.len(),
        "parsed too few: {documented:?}"
    );
    for o in IGNORED {
        assert!(
            documented.contains(*o) || honoured.iter().any(|h| h == o),
            "ignored option {o} is not in valencefs(5)"
        );
    }
    for o in &documented {
        let o = if o.ends_with('=') {
            format!("{o}x")
        } else {
            o.clone()
        };
        let parsed = MountOpts::parse([o.as_str()])
            .unwrap_or_else(|e| panic!("valencefs(5) says '{o}' is ignored, parser: {e}"));
        assert_eq!(
            parsed,
            MountOpts::default(),
            "'{o}' is documented as ignored but changes something"
        );
    }
}

/// Every key of the config file is documented in valencefs(5) (keys taken from the Config type itself).
#[test]
fn valencefs_5_documents_every_config_key() {
    let text = std::fs::read_to_string(man_dir().join("valencefs.5")).unwrap();
    let cfg = valencefs::volume::Config {
        disks: vec![],
        state_dir: "/s".into(),
        cache_size: valencefs::volume::Size::Bytes(1),
        redundancy: "personal".into(),
        compression: "zstd".into(),
        s3: Some(Default::default()),
    };
    let v = serde_json::to_value(&cfg).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6);
    for k in keys {
        assert!(
            text.contains(&format!(".BR {k} ")),
            "config key {k} is not documented in man/valencefs.5"
        );
    }
}

/// Every page in man/ renders without a groff warning (unknown macros, bad escapes), as man(1) would format it.
#[test]
fn pages_render_without_warnings() {
    let have_groff = std::process::Command::new("groff")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_groff {
        eprintln!("SKIPPED: groff not found (apt-get install groff-base)");
        return;
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(man_dir()).unwrap() {
        let page = entry.unwrap().path();
        let out = std::process::Command::new("groff")
            .args(["-man", "-ww", "-z", "-K", "utf8"])
            .arg(&page)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "{}: {err}",
            page.display()
        );
        checked += 1;
    }
    assert!(checked >= 10);
}

/// Until key rotation exists, the pages must not let anyone believe `passwd` revokes an old passphrase: the master
/// key stays the same, so an old header copy with the old passphrase still decrypts the volume.
#[test]
fn pages_say_passwd_does_not_rotate_the_master_key() {
    for page in ["valencefs-passwd.8", "valencefs-format.7"] {
        let text = std::fs::read_to_string(man_dir().join(page)).unwrap();
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains("rotate") && flat.contains("master key"),
            "man/{page} does not say the master key is not rotated"
        );
    }
}
