//! The `-o` mount option language: which options valencefs honours, which fstab/systemd noise it ignores.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Parsed `-o` options. Unknown options are an error, never silently dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOpts {
    pub passfile: Option<PathBuf>,
    pub cache_size: Option<u64>,
    pub allow_other: bool,
    pub read_only: bool,
    pub sync: bool,
    pub noatime: bool,
    pub nodev: bool,
    pub nosuid: bool,
    pub noexec: bool,
    /// Kernel writeback cache (FUSE_WRITEBACK_CACHE): `Some` when `writeback_cache` / `no_writeback_cache` was
    /// given; see [`MountOpts::kernel_writeback`] for the default.
    pub writeback_cache: Option<bool>,
    /// Worker threads for I/O requests.
    pub workers: Option<usize>,
    /// Serve Prometheus metrics over HTTP on this address (`metrics=127.0.0.1:9100`); off unless asked for.
    pub metrics: Option<SocketAddr>,
    /// Log level (`log=debug`); overrides `--log-level` and `VALENCEFS_LOG`. Kept as given, validated.
    pub log: Option<String>,
}

/// Options that fstab, systemd or mount(8) add and a helper must accept and ignore.
pub const IGNORED: &[&str] = &[
    "_netdev",
    "nofail",
    "noauto",
    "auto",
    "user",
    "users",
    "owner",
    "group",
    "defaults",
    "rw",
    "exec",
    "suid",
    "dev",
    "atime",
    "relatime",
    "strictatime",
    "nodiratime",
    "async",
    "loop",
    // valencefs always mounts with `default_permissions`, so asking for it changes nothing.
    "default_permissions",
];

impl MountOpts {
    /// Parses one or more comma-separated option lists (each `-o` argument is one list).
    pub fn parse<'a>(lists: impl IntoIterator<Item = &'a str>) -> Result<MountOpts, String> {
        let mut o = MountOpts::default();
        for list in lists {
            for opt in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                o.apply(opt)?;
            }
        }
        if o.sync && o.writeback_cache == Some(true) {
            return Err(
                "mount options sync and writeback_cache contradict each other: with the kernel's \
                        writeback cache a write returns before valencefs sees it"
                    .into(),
            );
        }
        Ok(o)
    }

    /// Whether the kernel caches writes (FUSE writeback cache). On by default: the kernel merges small writes
    /// into page-sized and larger requests, which halves the daemon's work for 4 KiB writers such as `pg_dump`
    /// (bench/pg_dump_speed.sh). Off with `sync` (a write must be durable when it returns) and
    /// `no_writeback_cache`.
    pub fn kernel_writeback(&self) -> bool {
        self.writeback_cache.unwrap_or(!self.sync)
    }

    fn apply(&mut self, opt: &str) -> Result<(), String> {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        match (key, value) {
            ("passfile", Some(v)) if !v.is_empty() => self.passfile = Some(PathBuf::from(v)),
            ("cache_size", Some(v)) => {
                self.cache_size =
                    Some(parse_size(v).map_err(|e| format!("mount option cache_size: {e}"))?)
            }
            ("workers", Some(v)) => {
                let n: usize = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| format!("mount option workers={v}: expected 1..64"))?;
                self.workers = Some(n);
            }
            ("metrics", Some(v)) => self.metrics = Some(parse_metrics_addr(v)?),
            ("log", Some(v)) => {
                crate::logging::parse_level(v).map_err(|e| format!("mount option log: {e}"))?;
                self.log = Some(v.trim().to_ascii_lowercase());
            }
            ("allow_other", None) => self.allow_other = true,
            ("ro", None) => self.read_only = true,
            ("sync", None) => self.sync = true,
            ("noatime", None) => self.noatime = true,
            ("nodev", None) => self.nodev = true,
            ("nosuid", None) => self.nosuid = true,
            ("noexec", None) => self.noexec = true,
            ("writeback_cache", None) => self.writeback_cache = Some(true),
            ("no_writeback_cache", None) => self.writeback_cache = Some(false),
            (k, _) if k.starts_with("x-systemd.") || k.starts_with("x-") => {}
            (k, None) if IGNORED.contains(&k) => {}
            // fstab `user`-style options and `comment=` may carry values; for a user mount of a `user` fstab line
            // libmount records (and may pass on) `user=NAME`.
            ("comment" | "uid" | "gid" | "user", Some(_)) => {}
            ("passfile" | "cache_size" | "workers" | "metrics" | "log", _) => {
                return Err(format!("mount option {key} needs a value ({key}=...)"))
            }
            _ => return Err(format!("unknown mount option '{opt}'")),
        }
        Ok(())
    }
}

/// Parses `metrics=IP:PORT` (`127.0.0.1:9100`, `[::1]:9100`; port 0 picks a free port, which `valencefs stats`
/// then shows). A host name is refused: the daemon must not depend on name resolution to start.
pub fn parse_metrics_addr(v: &str) -> Result<SocketAddr, String> {
    v.trim().parse::<SocketAddr>().map_err(|_| {
        format!(
            "mount option metrics={v}: expected IP:PORT to serve Prometheus metrics on, e.g. metrics=127.0.0.1:9100 \
             or metrics=[::1]:9100"
        )
    })
}

/// Parses a byte count: `1048576`, `256M`, `1G`, `512K`, `2GiB`, `64MB` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 268435456 or 256M)"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "'{s}': unknown size unit '{unit}' (use K, M, G or T)"
            ))
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_fstab_noise_and_honours_known_options() {
        let o = MountOpts::parse([
            "rw,_netdev,nofail,x-systemd.automount,x-systemd.idle-timeout=60,defaults,user=alice",
            "passfile=/etc/p,cache_size=64M,allow_other,noatime,sync,ro",
        ])
        .unwrap();
        assert_eq!(o.passfile, Some(PathBuf::from("/etc/p")));
        assert_eq!(o.cache_size, Some(64 << 20));
        assert!(o.allow_other && o.noatime && o.sync && o.read_only);
    }

    #[test]
    fn rejects_unknown_and_valueless() {
        assert!(MountOpts::parse(["bogus"])
            .unwrap_err()
            .contains("unknown mount option 'bogus'"));
        assert!(MountOpts::parse(["passfile"]).is_err());
        assert!(MountOpts::parse(["ro=1"]).is_err());
        assert!(MountOpts::parse(["cache_size=12Q"]).is_err());
    }

    #[test]
    fn metrics_and_log_options() {
        let o = MountOpts::parse(["metrics=127.0.0.1:9100,log=DEBUG"]).unwrap();
        assert_eq!(o.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(o.log.as_deref(), Some("debug"));
        assert!(MountOpts::parse(["metrics=[::1]:0"]).is_ok());
        for bad in [
            "metrics=localhost:9100",
            "metrics=9100",
            "metrics=1.2.3.4:99999",
            "metrics",
        ] {
            let e = MountOpts::parse([bad]).unwrap_err();
            assert!(e.contains("metrics"), "{bad}: {e}");
        }
        assert!(MountOpts::parse(["metrics=nonsense"])
            .unwrap_err()
            .contains("expected IP:PORT"));
        assert!(MountOpts::parse(["log=loud"])
            .unwrap_err()
            .contains("expected off, error, warn"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
