//! Where log lines go: `tracing` to stderr in the foreground and for commands, and to syslog (the journal on
//! systemd machines, through `/dev/log`) plus the state directory's log file when daemonized. Also the rate limit
//! that keeps a dead disk from flooding the log.
//!
//! `log` crate records (from dependencies) are forwarded into `tracing` too.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Environment variable holding the log level when neither `-o log=` nor `--log-level` gives one.
pub const ENV: &str = "VALENCEFS_LOG";

/// Parses a level name: `off`, `error`, `warn`, `info`, `debug` or `trace`.
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::OFF),
        "error" => Ok(LevelFilter::ERROR),
        "warn" | "warning" => Ok(LevelFilter::WARN),
        "info" => Ok(LevelFilter::INFO),
        "debug" => Ok(LevelFilter::DEBUG),
        "trace" => Ok(LevelFilter::TRACE),
        _ => Err(format!(
            "log level '{s}': expected off, error, warn, info, debug or trace"
        )),
    }
}

/// Where this process logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// stderr only (foreground mounts and every other command).
    Stderr,
    /// A daemon: syslog when `/dev/log` exists, and stderr (which the daemon points at its log file).
    Daemon,
}

/// Installs the global subscriber once; later calls change nothing. `level` (from `-o log=` or `--log-level`)
/// wins over `VALENCEFS_LOG`, which wins over `default`. A bad `VALENCEFS_LOG` is reported and ignored.
pub fn init(level: Option<LevelFilter>, default: LevelFilter, dest: Dest) {
    let level = level.unwrap_or_else(|| match std::env::var(ENV) {
        Ok(v) if !v.is_empty() => parse_level(&v).unwrap_or_else(|e| {
            eprintln!("valencefs: {ENV}: {e}; using {default}");
            default
        }),
        _ => default,
    });
    let stderr = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr);
    let syslog = (dest == Dest::Daemon && std::path::Path::new("/dev/log").exists()).then(|| {
        // SAFETY: the ident is a static C string; openlog keeps the pointer.
        unsafe { libc::openlog(c"valencefs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
        tracing_subscriber::fmt::layer()
            .without_time()
            .with_target(false)
            .with_level(false)
            .with_writer(Syslog)
    });
    let _ = tracing_subscriber::registry()
        .with(level)
        .with(stderr)
        .with(syslog)
        .try_init();
}

/// Makes one [`SyslogLine`] per event, at the event's priority.
struct Syslog;

/// Buffers one formatted event and hands it to `syslog(3)` when dropped.
struct SyslogLine {
    priority: libc::c_int,
    buf: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end().replace('\0', " ");
        if let Ok(c) = CString::new(text) {
            // SAFETY: both strings are NUL-terminated; "%s" keeps the message from being read as a format.
            unsafe { libc::syslog(self.priority, c"%s".as_ptr(), c.as_ptr()) };
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine;
    fn make_writer(&'a self) -> SyslogLine {
        SyslogLine {
            priority: libc::LOG_INFO,
            buf: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> SyslogLine {
        let priority = match *meta.level() {
            tracing::Level::ERROR => libc::LOG_ERR,
            tracing::Level::WARN => libc::LOG_WARNING,
            tracing::Level::INFO => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        SyslogLine {
            priority,
            buf: Vec::new(),
        }
    }
}

/// Lines allowed per key and window before further identical events are only counted.
const BURST: u32 = 3;
/// Length of a rate-limit window.
const WINDOW: Duration = Duration::from_secs(60);

struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

static LIMITS: Mutex<Option<HashMap<String, Window>>> = parking_lot::const_mutex(None);

/// Rate limit for repeated events: `Some(n)` when a line for `key` may be logged now, `n` being how many were
/// suppressed since the last one (say so in the line); `None` when this one should be dropped. Allows [`BURST`]
/// lines per key per minute. Only called on error paths, so the lock costs nothing on the I/O path.
pub fn allow(key: &str) -> Option<u64> {
    let mut g = LIMITS.lock();
    let map = g.get_or_insert_with(HashMap::new);
    // Keys are per disk and kind: a handful. Still, never grow without bound.
    if map.len() > 4096 {
        map.clear();
    }
    let w = map.entry(key.to_string()).or_insert(Window {
        start: Instant::now(),
        logged: 0,
        suppressed: 0,
    });
    if w.start.elapsed() >= WINDOW {
        w.start = Instant::now();
        w.logged = 0;
    }
    if w.logged < BURST {
        w.logged += 1;
        Some(std::mem::take(&mut w.suppressed))
    } else {
        w.suppressed += 1;
        None
    }
}

/// " (N similar messages suppressed)" or nothing.
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar messages suppressed)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level("WARN").unwrap(), LevelFilter::WARN);
        assert_eq!(parse_level("off").unwrap(), LevelFilter::OFF);
        assert!(parse_level("loud").unwrap_err().contains("expected off"));
    }

    #[test]
    fn rate_limit_allows_a_burst_then_counts() {
        let key = "test-rate-limit-key";
        for _ in 0..BURST {
            assert_eq!(allow(key), Some(0));
        }
        assert_eq!(allow(key), None);
        assert_eq!(allow(key), None);
        // A new window reports what was dropped.
        if let Some(w) = LIMITS.lock().as_mut().and_then(|m| m.get_mut(key)) {
            w.start = w.start.checked_sub(WINDOW).expect("uptime over a minute");
        }
        assert_eq!(allow(key), Some(2));
        assert_eq!(suppressed_note(2), " (2 similar messages suppressed)");
    }
}
