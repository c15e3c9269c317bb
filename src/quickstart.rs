//! `valencefs quickstart`: a personal 3+2 volume over five directory disks in a default data directory, mounted.

use crate::cli::{Code, Failure};
use crate::daemon::{self, MountRequest};
use crate::mount_opts::MountOpts;
use crate::volume::{self, InitRequest, Size};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `/var/lib/valencefs/quickstart` as root, else `$XDG_DATA_HOME/valencefs/quickstart`.
fn default_data_dir() -> PathBuf {
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/valencefs/quickstart");
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("valencefs/quickstart")
}

/// Creates the volume on the first run, then mounts it; a second run finds it mounted and says so.
pub fn run(mountpoint: &Path, data_dir: Option<PathBuf>) -> Result<(), Failure> {
    daemon::check_fuse()?;
    let dir = data_dir.unwrap_or_else(default_data_dir);
    let fail = |m: String| Failure::new(Code::Failure, m);
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    let config = dir.join("volume.toml");
    let passfile = dir.join("passphrase");
    if !config.exists() {
        write_passfile(&passfile)?;
        let pass = crate::cli::passphrase(Some(&passfile), false)?;
        volume::init(&InitRequest {
            s3: None,
            config_path: &config,
            disks: (1..=5).map(|i| dir.join(format!("disk{i}"))).collect(),
            state_dir: dir.join("state"),
            redundancy: "personal".into(),
            compression: "zstd".into(),
            cache_size: Size::Text("256M".into()),
            chunk_size: None,
            passphrase: &pass,
            insecure_fast_kdf: volume::insecure_fast_kdf_requested(false),
            format: None,
        })?;
        println!(
            "created a personal (3+2) volume over 5 disks in {}",
            dir.display()
        );
        println!(
            "passphrase file {} (keep a copy somewhere safe)",
            passfile.display()
        );
    }
    std::fs::create_dir_all(mountpoint)
        .map_err(|e| fail(format!("creating {}: {e}", mountpoint.display())))?;
    let canon = std::fs::canonicalize(mountpoint)
        .map_err(|e| fail(format!("{}: {e}", mountpoint.display())))?;
    let source = std::fs::canonicalize(&config).unwrap_or(config.clone());
    if crate::cli::mounts_of(&source.display().to_string()).as_deref()
        == Some(&*canon.to_string_lossy())
    {
        println!("already mounted at {}", canon.display());
        return Ok(());
    }
    let opts = MountOpts {
        passfile: Some(passfile),
        ..MountOpts::default()
    };
    daemon::mount(&MountRequest {
        config: config.clone(),
        mountpoint: canon.clone(),
        opts,
        foreground: false,
        fake: false,
        daemon_child: false,
    })?;
    println!("mounted at {}", canon.display());
    println!("unmount:   valencefs umount {}", canon.display());
    println!("status:    valencefs status {}", config.display());
    Ok(())
}

/// A random 256-bit passphrase (hex) in a new 0600 file.
fn write_passfile(path: &Path) -> Result<(), Failure> {
    use rand::RngCore;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut *key);
    let hex: zeroize::Zeroizing<String> =
        zeroize::Zeroizing::new(key.iter().map(|b| format!("{b:02x}")).collect());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| {
            f.write_all(hex.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        })
        .map_err(|e| Failure::new(Code::Failure, format!("{}: {e}", path.display())))
}
