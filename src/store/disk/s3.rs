//! S3 disk: objects in a bucket under a key prefix (`s3://bucket/prefix`), through the `object_store` crate, with a
//! small shared tokio runtime behind the synchronous [`Disk`] trait and a deadline on every request.
//!
//! Durability: an S3 PUT is atomic (readers see the old object or the new one) and durable when it returns, so
//! `sync` has nothing left to do. Shards (`shards/…`) are immutable — their bytes are a deterministic function of
//! the chunk — and are written put-if-absent (`If-None-Match: *`); an existing object with identical bytes is
//! success, one with other bytes is corrupt by definition and is replaced (that is what a heal asks for). The disk
//! header and the metadata pointer are rewritten in place with plain PUTs.
//!
//! Availability: object_store retries transient failures (5xx, connection errors) with exponential backoff, all
//! within the disk's timeout; a request that still fails for a reason other than "no such object" or a refusal
//! (permission, authentication: the endpoint is alive and said no), or that does not finish within the timeout,
//! sets the disk aside for `down_for` (every operation then fails at once and `stat`
//! reports it not present), so a slow or dead endpoint costs the mount at most one timeout per `down_for` and the
//! store carries on degraded. After `down_for` the next request tries the endpoint again.
//!
//! Secrets: the credentials are handed to object_store and never formatted: `describe`, `Debug` and every error
//! message name only the bucket URL, and error texts from the server are scrubbed of the key id and secret.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};
use parking_lot::Mutex;
use rand::Rng;

use super::{check_name, read_limit, too_large, Disk, DiskStat};
use crate::error::{Error, Result};

/// Default request deadline of an S3 disk.
pub const DEFAULT_S3_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to reach one bucket. `Debug` never shows the credentials.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// `http(s)://host:port`; `None` is AWS itself (virtual-hosted style, region endpoint).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Allow a plain-http endpoint. `None`: only for loopback endpoints (127.0.0.1, ::1, localhost).
    pub allow_http: Option<bool>,
    /// Deadline of each operation, retries included; `None` is [`DEFAULT_S3_TIMEOUT`].
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &set(&self.access_key_id))
            .field("secret_access_key", &set(&self.secret_access_key))
            .field("session_token", &set(&self.session_token))
            .field("allow_http", &self.allow_http)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl S3Settings {
    /// Settings from the standard AWS environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION` or
    /// `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
    pub fn from_env() -> S3Settings {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        S3Settings {
            endpoint: var(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]),
            region: var(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            access_key_id: var(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: var(&["AWS_SECRET_ACCESS_KEY"]),
            session_token: var(&["AWS_SESSION_TOKEN"]),
            allow_http: None,
            timeout: None,
        }
    }

    /// Fields set in `self` win; the rest come from `fallback`.
    pub fn or(self, fallback: &S3Settings) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint.or_else(|| fallback.endpoint.clone()),
            region: self.region.or_else(|| fallback.region.clone()),
            access_key_id: self
                .access_key_id
                .or_else(|| fallback.access_key_id.clone()),
            secret_access_key: self
                .secret_access_key
                .or_else(|| fallback.secret_access_key.clone()),
            session_token: self
                .session_token
                .or_else(|| fallback.session_token.clone()),
            allow_http: self.allow_http.or(fallback.allow_http),
            timeout: self.timeout.or(fallback.timeout),
        }
    }
}

/// Whether a disk spec names an S3 bucket (`s3://…`) rather than a directory.
pub fn is_s3_url(spec: &str) -> bool {
    spec.starts_with("s3://")
}

/// `s3://bucket/prefix` → (bucket, prefix without surrounding slashes).
pub fn parse_s3_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| Error::Invalid(format!("{url:?}: not an s3:// URL")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err(Error::Invalid(format!(
            "{url:?}: bucket name must be 3-63 characters of a-z, 0-9, '-' and '.'"
        )));
    }
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() && check_name(prefix).is_err() || prefix.contains(['?', '#', '\\']) {
        return Err(Error::Invalid(format!("{url:?}: bad key prefix")));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// One multi-threaded runtime shared by every S3 disk of the process (2 workers drive the sockets; the store's
/// threads block on their own requests, so S3 I/O runs as parallel as the store asks).
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("valencefs-s3")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| Error::Volume(format!("cannot start the S3 I/O runtime: {e}")))
}

fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, r)| r)
        .split('/')
        .next()
        .unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Outcome of one deadline-bounded request.
enum Failure {
    /// The endpoint answered and refused (permission, authentication, invalid request): not set aside.
    Refused(Error),
    /// The object does not exist.
    NotFound,
    /// Put-if-absent found an object there.
    AlreadyExists,
    /// Anything else (already reported as an [`Error`]); the disk has been set aside.
    Down(Error),
}

/// A [`Disk`] in an S3 bucket.
pub struct S3Disk {
    url: String,
    store: AmazonS3,
    prefix: String,
    timeout: Duration,
    down_for: Duration,
    /// Set aside until then after a timeout or failed request.
    down_until: Mutex<Option<(Instant, String)>>,
    /// Strings scrubbed out of every error text (credentials).
    secrets: Vec<String>,
    /// Put-if-absent that found identical bytes already stored (for tests and counters).
    existing_identical: AtomicU64,
}

impl std::fmt::Debug for S3Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Disk")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl S3Disk {
    /// An S3 disk at `url` (`s3://bucket/prefix`). Makes no request: an unreachable endpoint shows up in `stat`.
    pub fn open(url: &str, settings: &S3Settings) -> Result<S3Disk> {
        let (bucket, prefix) = parse_s3_url(url)?;
        let timeout = settings.timeout.unwrap_or(DEFAULT_S3_TIMEOUT);
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_region(settings.region.as_deref().unwrap_or("us-east-1"));
        let mut allow_http = false;
        if let Some(ep) = &settings.endpoint {
            let ep = ep.trim_end_matches('/');
            if ep.starts_with("http://") {
                allow_http = settings.allow_http.unwrap_or_else(|| is_loopback(ep));
                if !allow_http {
                    return Err(Error::Invalid(format!(
                        "{url}: endpoint {ep} is plain http; set allow_http = true in [s3] to allow it"
                    )));
                }
            } else if !ep.starts_with("https://") {
                return Err(Error::Invalid(format!(
                    "{url}: endpoint {ep:?} must start with http:// or https://"
                )));
            }
            b = b.with_endpoint(ep);
        }
        let mut secrets = Vec::new();
        match (&settings.access_key_id, &settings.secret_access_key) {
            (Some(id), Some(secret)) => {
                b = b.with_access_key_id(id).with_secret_access_key(secret);
                secrets.push(id.clone());
                secrets.push(secret.clone());
                if let Some(t) = &settings.session_token {
                    b = b.with_token(t);
                    secrets.push(t.clone());
                }
            }
            (None, None) => {}
            _ => {
                return Err(Error::Invalid(format!(
                    "{url}: set both access_key_id and secret_access_key (or neither, for instance credentials)"
                )))
            }
        }
        let client = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_timeout(timeout)
            .with_connect_timeout(timeout.min(Duration::from_secs(2)));
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: 4,
            retry_timeout: timeout,
        };
        let store = b
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|e| Error::Invalid(format!("{url}: {}", scrub(&e.to_string(), &secrets))))?;
        Ok(S3Disk {
            url: format!(
                "s3://{bucket}{}{prefix}",
                if prefix.is_empty() { "" } else { "/" }
            ),
            store,
            prefix,
            timeout,
            down_for: (timeout * 6).max(Duration::from_secs(5)),
            down_until: Mutex::new(None),
            secrets,
            existing_identical: AtomicU64::new(0),
        })
    }

    /// How many put-if-absent writes found the identical object already there.
    pub fn existing_identical(&self) -> u64 {
        self.existing_identical.load(Ordering::Relaxed)
    }

    /// Whether the disk is currently set aside after a failure.
    pub fn is_down(&self) -> bool {
        self.down_reason().is_some()
    }

    fn down_reason(&self) -> Option<String> {
        let mut d = self.down_until.lock();
        match &*d {
            Some((until, why)) if Instant::now() < *until => Some(why.clone()),
            Some(_) => {
                *d = None;
                None
            }
            None => None,
        }
    }

    fn key(&self, name: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(name)
        } else {
            ObjPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn io_err(&self, name: &str, kind: std::io::ErrorKind, msg: String) -> Error {
        let path = if name.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{name}", self.url)
        };
        Error::io(path, std::io::Error::new(kind, msg))
    }

    /// Runs one request under the deadline. Failures other than NotFound/AlreadyExists set the disk aside.
    fn run<T>(
        &self,
        name: &str,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> std::result::Result<T, Failure> {
        if let Some(why) = self.down_reason() {
            return Err(Failure::Down(self.io_err(
                name,
                std::io::ErrorKind::NotConnected,
                format!("disk set aside after an earlier failure ({why})"),
            )));
        }
        let rt = runtime().map_err(Failure::Down)?;
        // The timer must be created inside the runtime: build it in the block_on future.
        let started = Instant::now();
        let out = rt.block_on(async { tokio::time::timeout(self.timeout, fut).await });
        // object_store's own request deadline (the same timeout) usually fires first, as a generic error.
        let timed_out = started.elapsed() >= self.timeout.mul_f64(0.9);
        let (kind, why) = match out {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(object_store::Error::NotFound { .. })) => return Err(Failure::NotFound),
            Ok(Err(object_store::Error::AlreadyExists { .. })) => {
                return Err(Failure::AlreadyExists)
            }
            Ok(Err(
                e @ (object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
                | object_store::Error::InvalidPath { .. }),
            )) => {
                let why = scrub(&e.to_string(), &self.secrets);
                return Err(Failure::Refused(self.io_err(
                    name,
                    std::io::ErrorKind::PermissionDenied,
                    why.chars().take(300).collect(),
                )));
            }
            Ok(Err(e)) if timed_out => (
                std::io::ErrorKind::TimedOut,
                format!(
                    "no answer within {:.1} s ({})",
                    self.timeout.as_secs_f64(),
                    scrub(&e.to_string(), &self.secrets)
                ),
            ),
            Ok(Err(e)) => (
                std::io::ErrorKind::Other,
                scrub(&e.to_string(), &self.secrets),
            ),
            Err(_) => (
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:.1} s", self.timeout.as_secs_f64()),
            ),
        };
        let short: String = why.chars().take(300).collect();
        *self.down_until.lock() = Some((Instant::now() + self.down_for, short.clone()));
        log::warn!(
            "{}: {short}; set aside for {} s",
            self.url,
            self.down_for.as_secs()
        );
        Err(Failure::Down(self.io_err(name, kind, short)))
    }

    fn fail(&self, name: &str, f: Failure) -> Error {
        match f {
            Failure::NotFound => Error::NotFound,
            Failure::AlreadyExists => self.io_err(
                name,
                std::io::ErrorKind::AlreadyExists,
                "object exists".into(),
            ),
            Failure::Down(e) | Failure::Refused(e) => e,
        }
    }

    fn put_with(&self, name: &str, data: &[u8], mode: PutMode) -> std::result::Result<(), Failure> {
        let key = self.key(name);
        let payload = PutPayload::from(data.to_vec());
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        self.run(name, self.store.put_opts(&key, payload, opts))
            .map(|_| ())
    }

    /// The object if it holds at most `limit` bytes, else `Err(size)`: refused from the size the server states
    /// (Content-Length) before reading the body, and bounded while streaming it in case the statement lies.
    fn get_raw(
        &self,
        name: &str,
        limit: u64,
    ) -> std::result::Result<std::result::Result<Vec<u8>, u64>, Failure> {
        let key = self.key(name);
        self.run(name, async {
            let r = self.store.get(&key).await?;
            if r.meta.size > limit {
                return Ok(Err(r.meta.size));
            }
            let mut out = Vec::with_capacity(r.meta.size as usize);
            let mut body = r.into_stream();
            while let Some(part) = body.try_next().await? {
                if (out.len() + part.len()) as u64 > limit {
                    return Ok(Err(limit + 1));
                }
                out.extend_from_slice(&part);
            }
            Ok(Ok(out))
        })
    }
}

/// Replaces every occurrence of a secret in `text`.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut t = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        t = t.replace(s.as_str(), "<redacted>");
    }
    t
}

impl Disk for S3Disk {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        check_name(name)?;
        if !name.starts_with("shards/") {
            return self
                .put_with(name, data, PutMode::Overwrite)
                .map_err(|f| self.fail(name, f));
        }
        match self.put_with(name, data, PutMode::Create) {
            Ok(()) => Ok(()),
            Err(Failure::AlreadyExists) => match self.get_raw(name, data.len() as u64) {
                Ok(Ok(existing)) if existing == data => {
                    self.existing_identical.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                // Another shard's bytes under this name (rot, a forged or half-replaced object), or deleted
                // meanwhile: the store asks for exactly these bytes here, so write them.
                Ok(_) | Err(Failure::NotFound) => self
                    .put_with(name, data, PutMode::Overwrite)
                    .map_err(|f| self.fail(name, f)),
                Err(f) => Err(self.fail(name, f)),
            },
            // A put into a bucket that does not exist comes back as 404.
            Err(Failure::NotFound) => Err(self.io_err(
                "",
                std::io::ErrorKind::NotFound,
                "no such bucket (create it first)".into(),
            )),
            Err(f) => Err(self.fail(name, f)),
        }
    }

    fn get_limited(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        check_name(name)?;
        let limit = read_limit(max);
        match self.get_raw(name, limit) {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(len)) => Err(too_large(&self.url, name, len, limit)),
            Err(f) => Err(self.fail(name, f)),
        }
    }

    /// One ranged GET. A range that starts at or past the end is an error for S3 (416): the object's size is then
    /// asked (HEAD) so that case is an empty read, as the `Disk` contract says, and not a failure that would set
    /// the disk aside.
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_name(name)?;
        let len = len.min(super::MAX_OBJECT_LEN);
        if len == 0 {
            return Ok(Vec::new());
        }
        let key = self.key(name);
        let end = offset.saturating_add(len);
        let got = self.run(name, async {
            let opts = object_store::GetOptions {
                range: Some(object_store::GetRange::Bounded(offset..end)),
                ..Default::default()
            };
            match self.store.get_opts(&key, opts).await {
                Ok(r) => {
                    let mut out = Vec::new();
                    let mut body = r.into_stream();
                    while let Some(part) = body.try_next().await? {
                        if (out.len() + part.len()) as u64 > len {
                            // A server that ignores the range: keep only what was asked.
                            let take = len as usize - out.len();
                            out.extend_from_slice(&part[..take.min(part.len())]);
                            break;
                        }
                        out.extend_from_slice(&part);
                    }
                    Ok(out)
                }
                Err(e @ object_store::Error::NotFound { .. }) => Err(e),
                Err(e) => match self.store.head(&key).await {
                    Ok(meta) if offset >= meta.size => Ok(Vec::new()),
                    _ => Err(e),
                },
            }
        });
        got.map_err(|f| self.fail(name, f))
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(name)?;
        match self.run(name, self.store.delete(&self.key(name))) {
            Ok(()) | Err(Failure::NotFound) => Ok(()),
            Err(f) => Err(self.fail(name, f)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        // object_store lists whole path segments: list the directory part, then filter by the full prefix.
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let full = match (self.prefix.is_empty(), dir.is_empty()) {
            (true, true) => None,
            (true, false) => Some(ObjPath::from(dir)),
            (false, true) => Some(ObjPath::from(self.prefix.as_str())),
            (false, false) => Some(ObjPath::from(format!("{}/{dir}", self.prefix))),
        };
        let metas = match self.run(
            prefix,
            self.store.list(full.as_ref()).try_collect::<Vec<_>>(),
        ) {
            Ok(m) => m,
            Err(Failure::NotFound) => Vec::new(),
            Err(f) => return Err(self.fail(prefix, f)),
        };
        let root = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let loc = m.location.to_string();
                let rel = loc.strip_prefix(&root)?.to_string();
                (rel.starts_with(prefix) && !rel.contains(".tmp-")).then_some(rel)
            })
            .collect())
    }

    /// Every PUT and DELETE that returned is already durable.
    fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// Present: the endpoint answers and the bucket exists. Writable: a probe object can be stored and removed.
    fn stat(&self) -> DiskStat {
        let absent = DiskStat {
            present: false,
            writable: false,
        };
        if self.is_down() {
            return absent;
        }
        let probe = format!(".probe.tmp-{:016x}", rand::thread_rng().gen::<u64>());
        match self.put_with(&probe, b"", PutMode::Overwrite) {
            Ok(()) => {
                let _ = self.run(&probe, self.store.delete(&self.key(&probe)));
                DiskStat {
                    present: true,
                    writable: true,
                }
            }
            // No such bucket.
            Err(Failure::NotFound) => absent,
            Err(_) if self.is_down() => absent,
            Err(_) => DiskStat {
                present: true,
                writable: false,
            },
        }
    }
}

/// The S3 disk at `url` (`s3://bucket/prefix`), as a shared [`Disk`].
pub fn open_s3_disk(url: &str, settings: &S3Settings) -> Result<Arc<dyn Disk>> {
    Ok(Arc::new(S3Disk::open(url, settings)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_s3_url("s3://my-bucket/a/b/").unwrap(),
            ("my-bucket".into(), "a/b".into())
        );
        assert_eq!(
            parse_s3_url("s3://my-bucket").unwrap(),
            ("my-bucket".into(), "".into())
        );
        for bad in ["s3://", "s3://UP/x", "s3://b/x", "s3://bucket/../x", "/dir"] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
        assert!(is_loopback("http://127.0.0.1:9000"));
        assert!(is_loopback("http://localhost"));
        assert!(is_loopback("http://[::1]:80/"));
        assert!(!is_loopback("http://10.0.0.1:9000"));
        assert!(!is_loopback("http://127.0.0.1.evil.example"));
    }

    #[test]
    fn plain_http_only_for_loopback_unless_allowed() {
        let mut s = S3Settings {
            endpoint: Some("http://192.0.2.1:9000".into()),
            ..S3Settings::default()
        };
        let e = S3Disk::open("s3://bucket/v", &s).unwrap_err().to_string();
        assert!(e.contains("allow_http"), "{e}");
        s.allow_http = Some(true);
        S3Disk::open("s3://bucket/v", &s).unwrap();
    }

    #[test]
    fn debug_and_errors_hide_credentials() {
        let s = S3Settings {
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("AKIDSECRETKEYID".into()),
            secret_access_key: Some("verysecretsecretvalue".into()),
            timeout: Some(Duration::from_millis(300)),
            ..S3Settings::default()
        };
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("AKIDSECRETKEYID") && !dbg.contains("verysecret"),
            "{dbg}"
        );
        let d = S3Disk::open("s3://bucket/v", &s).unwrap();
        let dbg = format!("{d:?} {}", d.describe());
        assert!(
            !dbg.contains("AKIDSECRETKEYID") && !dbg.contains("verysecret"),
            "{dbg}"
        );
        // Nothing listens on port 1: the request fails fast and the disk is set aside.
        let e = d.get("x").unwrap_err().to_string();
        assert!(
            !e.contains("AKIDSECRETKEYID") && !e.contains("verysecret"),
            "{e}"
        );
        assert!(d.is_down());
        assert!(!d.stat().present);
        assert_eq!(
            scrub("a AKIDSECRETKEYID b", &["AKIDSECRETKEYID".into()]),
            "a <redacted> b"
        );
    }
}
