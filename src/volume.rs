//! The composition root: a volume's config file, its state-directory lock, and config + passphrase + disks → [`Fs`].

use crate::error::{Error, Result};
use crate::fs::{Chunks, Fs, FsOptions};
use crate::store::disk::{is_s3_url, open_s3_disk, S3Settings};
use crate::store::{
    open_dir_disk, ChunkerParams, CreateOptions, Disk, KdfParams, Redundancy, Store,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The volume's config file (TOML), written by `valencefs init`. Unknown keys are rejected.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Disk directories, in slot order.
    pub disks: Vec<PathBuf>,
    /// Local state: metadata database, lock file, daemon log.
    pub state_dir: PathBuf,
    /// Write-back cache budget: bytes, or a size such as "256M".
    #[serde(default = "default_cache_size")]
    pub cache_size: Size,
    /// `personal`, `minimal`, `federation`, `paranoid` or `K+M`.
    #[serde(default = "default_redundancy")]
    pub redundancy: String,
    /// Chunk compression: `zstd` or `none`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Endpoint, region and credentials of `s3://bucket/prefix` disks (else from the AWS environment variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
}

/// How to reach S3 disks: the `[s3]` table of the config file. Every field is optional; what is unset comes from
/// the environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`). `[s3.disk."s3://bucket/prefix"]` overrides any of them for one disk (e.g. two providers).
/// `Debug` never shows credentials.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// Allow a plain-http endpoint (default: only loopback endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
    /// Per-request deadline in seconds, retries included (default 5); a disk that misses it is set aside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Per-disk overrides, keyed by the disk's `s3://` URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub disk: BTreeMap<String, S3Endpoint>,
}

/// One disk's overrides of the `[s3]` settings (see [`S3Config`]).
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
}

// Timeouts are finite numbers from a config file (NaN is refused by TOML), so equality is total.
impl Eq for S3Config {}
impl Eq for S3Endpoint {}

impl S3Endpoint {
    fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: self.session_token.clone(),
            allow_http: self.allow_http,
            timeout: self
                .timeout_secs
                .filter(|t| t.is_finite() && *t > 0.0)
                .map(Duration::from_secs_f64),
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("default", &self.defaults())
            .field(
                "disk",
                &self
                    .disk
                    .iter()
                    .map(|(k, v)| (k, v.settings()))
                    .collect::<BTreeMap<_, _>>(),
            )
            .finish()
    }
}

impl std::fmt::Debug for S3Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.settings().fmt(f)
    }
}

impl S3Config {
    /// Settings for the disk `url`: its own table, then the `[s3]` defaults, then the environment.
    pub fn settings_for(&self, url: &str) -> S3Settings {
        let own = self
            .disk
            .get(url)
            .or_else(|| self.disk.get(url.trim_end_matches('/')))
            .map(S3Endpoint::settings)
            .unwrap_or_default();
        own.or(&self.defaults()).or(&S3Settings::from_env())
    }

    fn defaults(&self) -> S3Settings {
        S3Endpoint {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: self.session_token.clone(),
            allow_http: self.allow_http,
            timeout_secs: self.timeout_secs,
        }
        .settings()
    }
}

/// Reads an `[s3]` table (the file may hold it as `[s3]` or as top-level keys) for `init --s3-config`.
pub fn load_s3_config(path: &Path) -> Result<S3Config> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapped {
        s3: S3Config,
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
    toml::from_str::<Wrapped>(&text)
        .map(|w| w.s3)
        .or_else(|_| toml::from_str::<S3Config>(&text))
        .map_err(|e| Error::Volume(format!("{}: {}", path.display(), e.message())))
}

/// Whether a configured disk is an S3 bucket (`s3://bucket/prefix`) rather than a directory.
pub fn is_s3_disk(spec: &Path) -> bool {
    spec.to_str().is_some_and(is_s3_url)
}

/// The disk behind one entry of the disk list: an S3 bucket for `s3://…`, else a directory.
pub fn open_disk(spec: &Path, s3: Option<&S3Config>) -> Result<Arc<dyn Disk>> {
    match spec.to_str() {
        Some(url) if is_s3_url(url) => {
            let settings = match s3 {
                Some(c) => c.settings_for(url),
                None => S3Settings::from_env(),
            };
            open_s3_disk(url, &settings)
        }
        _ => Ok(open_dir_disk(spec)),
    }
}

/// Every configured disk, in slot order.
pub fn config_disks(cfg: &Config) -> Result<Vec<Arc<dyn Disk>>> {
    cfg.disks
        .iter()
        .map(|d| open_disk(d, cfg.s3.as_ref()))
        .collect()
}

/// Whether a configured disk is there: a directory exists, or a bucket answers (within its timeout).
pub fn disk_present(cfg: &Config, spec: &Path) -> bool {
    if is_s3_disk(spec) {
        open_disk(spec, cfg.s3.as_ref()).is_ok_and(|d| d.stat().present)
    } else {
        spec.is_dir()
    }
}

/// A byte count written either as an integer or as a string with a unit ("256M").
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    pub fn bytes(&self) -> Result<u64> {
        match self {
            Size::Bytes(n) => Ok(*n),
            Size::Text(s) => crate::mount_opts::parse_size(s).map_err(Error::Volume),
        }
    }
}

fn default_cache_size() -> Size {
    Size::Text("256M".into())
}
fn default_redundancy() -> String {
    "personal".into()
}
fn default_compression() -> String {
    "zstd".into()
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
        let cfg: Config = toml::from_str(&text)
            .map_err(|e| Error::Volume(format!("{}: {}", path.display(), e.message())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Writes the config (mode 0600); refuses to overwrite an existing file.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let text = toml::to_string_pretty(self).map_err(|e| Error::Volume(e.to_string()))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(path.display(), e))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(path.display(), e))
    }

    pub fn validate(&self) -> Result<()> {
        self.cache_size.bytes()?;
        let (k, m) = parse_redundancy(&self.redundancy)?;
        if self.disks.len() < k + m {
            return Err(Error::Volume(format!(
                "redundancy {}+{} needs {} disks, {} given: with {} disks a stripe could survive only {} lost disk(s)",
                k,
                m,
                k + m,
                self.disks.len(),
                self.disks.len(),
                self.disks.len().saturating_sub(k)
            )));
        }
        for d in self.disks.iter().filter(|d| is_s3_disk(d)) {
            crate::store::disk::parse_s3_url(&d.display().to_string())
                .map_err(|e| Error::Volume(e.to_string()))?;
        }
        if !matches!(self.compression.as_str(), "zstd" | "none") {
            return Err(Error::Volume(format!(
                "compression '{}': expected zstd or none",
                self.compression
            )));
        }
        Ok(())
    }
}

/// Redundancy presets and `K+M` → (data shards, parity shards), as the store defines them.
pub fn parse_redundancy(s: &str) -> Result<(usize, usize)> {
    let r: Redundancy = s.parse()?;
    Ok((r.k as usize, r.m as usize))
}

/// What `valencefs init` needs.
pub struct InitRequest<'a> {
    pub config_path: &'a Path,
    pub disks: Vec<PathBuf>,
    pub state_dir: PathBuf,
    pub redundancy: String,
    pub compression: String,
    pub cache_size: Size,
    /// Average FastCDC chunk size (min = avg/4, max = 4×avg); `None` for the default.
    pub chunk_size: Option<Size>,
    pub passphrase: &'a [u8],
    /// Weak, fast key derivation, for tests only.
    pub insecure_fast_kdf: bool,
    /// On-disk format version; `None` for the default (`store::format::FORMAT_VERSION`).
    pub format: Option<u16>,
    /// The `[s3]` table to write into the config (endpoint and credentials of `s3://` disks).
    pub s3: Option<S3Config>,
}

/// Creates a volume: formats the disks, creates the state directory and writes the config file.
pub fn init(req: &InitRequest<'_>) -> Result<Config> {
    if req.config_path.exists() {
        return Err(Error::Exists);
    }
    let absolute = |p: &Path| -> Result<PathBuf> {
        if is_s3_disk(p) {
            return Ok(p.to_path_buf());
        }
        std::path::absolute(p).map_err(|e| Error::io(p.display(), e))
    };
    let cfg = Config {
        disks: req
            .disks
            .iter()
            .map(|d| absolute(d))
            .collect::<Result<_>>()?,
        state_dir: absolute(&req.state_dir)?,
        cache_size: req.cache_size.clone(),
        redundancy: req.redundancy.clone(),
        compression: req.compression.clone(),
        s3: req.s3.clone(),
    };
    cfg.validate()?;
    let chunker = match &req.chunk_size {
        Some(s) => ChunkerParams::with_avg(s.bytes()?).map_err(|e| match e {
            Error::Format(m) => Error::Volume(m),
            e => e,
        })?,
        None => ChunkerParams::default(),
    };
    for d in cfg.disks.iter().filter(|d| !is_s3_disk(d)) {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d.display(), e))?;
    }
    crate::fs::ensure_private(&cfg.state_dir)?;
    let opts = CreateOptions {
        redundancy: cfg.redundancy.parse()?,
        compression: cfg.compression == "zstd",
        kdf: keyslot_kdf(req.insecure_fast_kdf),
        chunker,
        format: req.format.unwrap_or(crate::store::format::FORMAT_VERSION),
    };
    Store::create(config_disks(&cfg)?, &opts, req.passphrase)?;
    if req.insecure_fast_kdf {
        warn_insecure_keyslot();
    }
    cfg.write_new(req.config_path)?;
    Ok(cfg)
}

/// Opens the volume: unlocks the key with the passphrase, opens the disks and starts the core.
/// The caller must hold the [`StateLock`].
pub fn open(cfg: &Config, passphrase: &[u8], opts: FsOptions) -> Result<Arc<Fs>> {
    crate::fs::ensure_private(&cfg.state_dir)?;
    let chunks = open_chunks(cfg, passphrase)?;
    Fs::start(chunks, &cfg.state_dir, opts)
}

/// Rebuilds a volume whose state directory and config file were lost, from its disks and passphrase alone:
/// orders the given disk directories by the index in their headers (missing ones get placeholder paths that
/// `disk replace` can later swap), restores the newest metadata snapshot into `state_dir` and writes `config_path`.
/// Returns the config and what was restored (the snapshot's sealed generation, and whether it fell back).
pub fn recover(
    config_path: &Path,
    disk_dirs: &[PathBuf],
    state_dir: &Path,
    passphrase: &[u8],
) -> Result<(Config, crate::fs::Recovered)> {
    use crate::store::format::{DiskHeader, DISK_HEADER_NAME};
    if config_path.exists() {
        return Err(Error::Exists);
    }
    let mut slots: Vec<Option<PathBuf>> = Vec::new();
    let mut volume: Option<[u8; 16]> = None;
    for d in disk_dirs {
        let d = if is_s3_disk(d) {
            d.clone()
        } else {
            std::path::absolute(d).map_err(|e| Error::io(d.display(), e))?
        };
        // S3 disks are reached with the AWS environment variables here (there is no config file yet).
        let bytes = open_disk(&d, None)?
            .get(DISK_HEADER_NAME)
            .map_err(|e| match e {
                Error::NotFound => Error::BadDisk {
                    disk: d.display().to_string(),
                    reason: "no valencefs header".into(),
                },
                e => e,
            })?;
        let h = DiskHeader::decode(&bytes)?;
        if *volume.get_or_insert(h.volume_id) != h.volume_id {
            return Err(Error::BadDisk {
                disk: d.display().to_string(),
                reason: "belongs to a different volume than the disks before it".into(),
            });
        }
        let (i, n) = (h.disk_index as usize, h.disk_count as usize);
        if slots.len() < n {
            slots.resize(n, None);
        }
        match slots.get_mut(i) {
            Some(slot @ None) => *slot = Some(d),
            Some(Some(other)) => {
                return Err(Error::BadDisk {
                    disk: d.display().to_string(),
                    reason: format!("claims disk index {i}, like {}", other.display()),
                })
            }
            None => {
                return Err(Error::Format(format!(
                    "{}: disk index {i} ≥ disk count {n}",
                    d.display()
                )))
            }
        }
    }
    let state_dir =
        std::path::absolute(state_dir).map_err(|e| Error::io(state_dir.display(), e))?;
    let disks: Vec<PathBuf> = slots
        .into_iter()
        .enumerate()
        .map(|(i, p)| p.unwrap_or_else(|| state_dir.join(format!("missing-disk-{i}"))))
        .collect();
    let mut cfg = Config {
        disks,
        state_dir: state_dir.clone(),
        cache_size: default_cache_size(),
        redundancy: String::new(),
        compression: default_compression(),
        s3: None,
    };
    let store = Store::open(config_disks(&cfg)?, passphrase)?;
    let r = store.redundancy();
    cfg.redundancy = format!("{}+{}", r.k, r.m);
    crate::fs::ensure_private(&state_dir)?;
    let recovered = crate::fs::recover_state(&store, &state_dir)?;
    cfg.write_new(config_path)?;
    Ok((cfg, recovered))
}

/// Replaces the passphrase: `old` must open the volume; afterwards only `new` does. The volume must not be mounted.
/// The new keyslot gets the current default KDF costs (whatever the old slot had), or the insecure fast ones only
/// when `insecure_fast_kdf` asks for them.
pub fn change_passphrase(
    cfg: &Config,
    old: &[u8],
    new: &[u8],
    insecure_fast_kdf: bool,
) -> Result<()> {
    open_store(cfg, old)?.change_passphrase(old, new, &keyslot_kdf(insecure_fast_kdf))?;
    if insecure_fast_kdf {
        warn_insecure_keyslot();
    }
    Ok(())
}

/// Whether the insecure fast KDF is asked for: the `--kdf-fast` flag, or `VALENCEFS_INSECURE_FAST_KDF=1`.
pub fn insecure_fast_kdf_requested(flag: bool) -> bool {
    flag || std::env::var_os("VALENCEFS_INSECURE_FAST_KDF").is_some_and(|v| v == "1")
}

/// The KDF costs of a keyslot about to be made.
fn keyslot_kdf(insecure_fast: bool) -> KdfParams {
    if insecure_fast {
        KdfParams::insecure_fast()
    } else {
        KdfParams::default()
    }
}

/// Says, on stderr whatever the log settings, that a keyslot with the insecure fast KDF was just written: it makes
/// guessing the passphrase from a stolen disk thousands of times cheaper, and nothing else would show it.
fn warn_insecure_keyslot() {
    let f = KdfParams::insecure_fast();
    eprintln!(
        "WARNING: keyslot created with the INSECURE fast KDF (Argon2id {} KiB, t={}; --kdf-fast or \
         VALENCEFS_INSECURE_FAST_KDF=1): anyone holding a disk can guess the passphrase thousands of times faster \
         than with the default ({} MiB). For tests only; run `valencefs passwd` without it to replace the slot.",
        f.m_cost_kib,
        f.t_cost,
        KdfParams::default().m_cost_kib / 1024
    );
}

/// Opens the chunk store over the configured disks.
pub fn open_chunks(cfg: &Config, passphrase: &[u8]) -> Result<Arc<dyn Chunks>> {
    let store = open_store(cfg, passphrase)?;
    store.warn_disks_behind();
    Ok(Arc::new(store))
}

/// Opens the store after a typed pre-check: more missing disk directories than the redundancy tolerates is a
/// [`Error::BadDisk`] naming them (the store itself reports subtler disk trouble).
fn open_store(cfg: &Config, passphrase: &[u8]) -> Result<Store> {
    let (_, m) = parse_redundancy(&cfg.redundancy)?;
    // S3 disks are left to the store's own probe (one request each, bounded by their timeout).
    let missing: Vec<String> = cfg
        .disks
        .iter()
        .filter(|d| !is_s3_disk(d) && !d.is_dir())
        .map(|d| d.display().to_string())
        .collect();
    if missing.len() > m {
        return Err(Error::BadDisk {
            disk: missing.join(", "),
            reason: format!(
                "{} of {} disks missing; redundancy {} tolerates {m}",
                missing.len(),
                cfg.disks.len(),
                cfg.redundancy
            ),
        });
    }
    Store::open(config_disks(cfg)?, passphrase)
}

/// The daemon's exclusive hold on a state directory (`flock` on `STATE/lock`, holding the daemon's pid).
/// Released when dropped or when the process dies, so `valencefs umount` can wait for it.
pub struct StateLock {
    _file: File,
}

/// Name of the lock file inside the state directory.
const LOCK_FILE: &str = "lock";

impl StateLock {
    /// Takes the lock, waiting up to `wait` for a previous daemon (which may still be flushing) to let go.
    pub fn acquire(state_dir: &Path, wait: Duration) -> Result<StateLock> {
        crate::fs::ensure_private(state_dir)?;
        let path = state_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))?;
        let deadline = Instant::now() + wait;
        while !try_flock(&file) {
            if Instant::now() >= deadline {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(Error::Volume(format!(
                    "state directory {} is in use by another valencefs daemon (pid {})",
                    state_dir.display(),
                    pid.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        file.set_len(0)
            .and_then(|_| file.write_all(std::process::id().to_string().as_bytes()))
            .map_err(|e| Error::io(path.display(), e))?;
        Ok(StateLock { _file: file })
    }

    /// The pid of the daemon holding the lock, if one does.
    pub fn holder(state_dir: &Path) -> Option<u32> {
        let path = state_dir.join(LOCK_FILE);
        let mut file = File::open(&path).ok()?;
        if try_flock_shared(&file) {
            return None;
        }
        let mut s = String::new();
        file.read_to_string(&mut s).ok()?;
        Some(s.trim().parse().unwrap_or(0))
    }

    /// Waits until no daemon holds the lock; false on timeout.
    pub fn wait_released(state_dir: &Path, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Self::holder(state_dir).is_some() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}

fn try_flock(f: &File) -> bool {
    // SAFETY: a valid open descriptor.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Probes with a shared lock (released when the probe's descriptor closes).
fn try_flock_shared(f: &File) -> bool {
    // SAFETY: a valid open descriptor.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip_and_unknown_keys() {
        let cfg = Config {
            disks: vec!["/d/1".into(), "/d/2".into(), "/d/3".into()],
            state_dir: "/s".into(),
            cache_size: Size::Text("64M".into()),
            redundancy: "2+1".into(),
            compression: "zstd".into(),
            s3: None,
        };
        let text = toml::to_string_pretty(&cfg).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), cfg);
        let bad = format!("{text}\nfrobnicate = 1\n");
        assert!(toml::from_str::<Config>(&bad).is_err());
        let numeric: Config = toml::from_str(&text.replace("\"64M\"", "1024")).unwrap();
        assert_eq!(numeric.cache_size.bytes().unwrap(), 1024);
    }

    #[test]
    fn too_few_disks_says_what_it_would_survive() {
        let cfg = Config {
            disks: vec!["/a".into(), "/b".into(), "/c".into(), "/d".into()],
            state_dir: "/s".into(),
            cache_size: Size::Bytes(1),
            redundancy: "personal".into(),
            compression: "none".into(),
            s3: None,
        };
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(
            msg.contains("needs 5 disks") && msg.contains("1 lost disk"),
            "{msg}"
        );
    }

    #[test]
    fn s3_table_round_trips_and_debug_hides_credentials() {
        let text = r#"
disks = ["/d/1", "/d/2", "s3://bucket-a/vol"]
state_dir = "/s"
redundancy = "2+1"
[s3]
region = "eu-west-1"
access_key_id = "AKIAEXAMPLEKEYID"
secret_access_key = "wJalrXUtnFEMI/K7MDENG"
timeout_secs = 2.5
[s3.disk."s3://bucket-a/vol"]
endpoint = "http://127.0.0.1:9000"
"#;
        let cfg: Config = toml::from_str(text).unwrap();
        cfg.validate().unwrap();
        let again: Config = toml::from_str(&toml::to_string_pretty(&cfg).unwrap()).unwrap();
        assert_eq!(again, cfg);
        let dbg = format!("{cfg:?}");
        assert!(
            !dbg.contains("AKIAEXAMPLEKEYID") && !dbg.contains("wJalrXUtnFEMI"),
            "{dbg}"
        );
        let s3 = cfg.s3.as_ref().unwrap();
        let a = s3.settings_for("s3://bucket-a/vol");
        assert_eq!(a.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
        assert_eq!(a.timeout, Some(Duration::from_millis(2500)));
        assert!(is_s3_disk(Path::new("s3://bucket-a/vol")) && !is_s3_disk(Path::new("/d/1")));
        let bad = text.replace("timeout_secs", "timeout_sec");
        assert!(toml::from_str::<Config>(&bad).is_err());
        let bad = text.replace("s3://bucket-a/vol\"]", "s3://B/vol\"]");
        assert!(toml::from_str::<Config>(&bad).unwrap().validate().is_err());
    }

    #[test]
    fn presets() {
        assert_eq!(parse_redundancy("personal").unwrap(), (3, 2));
        assert_eq!(parse_redundancy("paranoid").unwrap(), (7, 8));
        assert_eq!(parse_redundancy("4+2").unwrap(), (4, 2));
        assert!(parse_redundancy("0+2").is_err());
        assert!(parse_redundancy("lots").is_err());
    }

    #[test]
    fn lock_excludes_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        let lock = StateLock::acquire(dir.path(), Duration::ZERO).unwrap();
        assert_eq!(StateLock::holder(dir.path()), Some(std::process::id()));
        // flock is per open file description, so a second acquire in-process is refused too.
        assert!(StateLock::acquire(dir.path(), Duration::from_millis(100)).is_err());
        drop(lock);
        assert!(StateLock::wait_released(dir.path(), Duration::from_secs(1)));
        assert_eq!(StateLock::holder(dir.path()), None);
    }
}
