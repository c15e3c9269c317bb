//! Serving a mounted volume's live counters: always on the Unix socket `STATE_DIR/stats.sock` (for
//! `valencefs stats`), and over HTTP in the Prometheus text format when mounted with `-o metrics=IP:PORT`.
//!
//! Why a socket in the state directory: every mount has one, with or without `-o metrics`; the state directory is
//! private to the volume's owner (mode 0700), so the counters are no more visible than the volume's config; and
//! `stats MOUNTPOINT` finds it the way `umount` finds the daemon (mount table → config → state directory). A
//! virtual xattr would have put observability into the filesystem namespace every user of the mount sees.
//!
//! Each listener has one thread that answers one client at a time with short timeouts (scrapes are rare and
//! small). The threads hold only a `Weak<Fs>`, so they never keep the volume open, and stop when dropped.

use crate::fs::Fs;
use crate::metrics::{self, Snapshot};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// The socket's name inside the state directory.
pub const SOCKET: &str = "stats.sock";
/// How often idle listeners look at the stop flag (they wake at once for a client).
const POLL: Duration = Duration::from_millis(100);
/// Per-client read and write timeout.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the daemon knows about itself, added to every snapshot.
#[derive(Clone)]
struct Identity {
    mountpoint: String,
    metrics_address: Option<String>,
}

/// The running listeners; dropping it stops them and removes the socket.
pub struct StatsServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    socket: PathBuf,
    /// The HTTP address actually bound (a requested port 0 becomes a real one).
    pub metrics_addr: Option<SocketAddr>,
}

impl StatsServer {
    /// Binds the socket and, if asked, the metrics address. A metrics address that cannot be bound is an error
    /// (the user asked for it); the socket failing is only logged, the mount works without it.
    pub fn start(
        fs: &Arc<Fs>,
        state_dir: &Path,
        mountpoint: &Path,
        metrics_addr: Option<SocketAddr>,
    ) -> Result<StatsServer, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let http = match metrics_addr {
            Some(a) => {
                let l = TcpListener::bind(a)
                    .map_err(|e| format!("metrics={a}: cannot listen there: {e}"))?;
                let bound = l.local_addr().map_err(|e| format!("metrics={a}: {e}"))?;
                l.set_nonblocking(true)
                    .map_err(|e| format!("metrics={a}: {e}"))?;
                Some((l, bound))
            }
            None => None,
        };
        let id = Identity {
            mountpoint: mountpoint.display().to_string(),
            metrics_address: http.as_ref().map(|(_, a)| a.to_string()),
        };
        let socket = state_dir.join(SOCKET);
        // We hold the state lock: a socket file left here is a dead daemon's.
        let _ = std::fs::remove_file(&socket);
        match UnixListener::bind(&socket).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
            Ok(l) => {
                let (weak, stop, id) = (Arc::downgrade(fs), stop.clone(), id.clone());
                threads.push(spawn("valencefs-stats", move || {
                    serve_unix(l, weak, stop, id)
                })?);
            }
            Err(e) => tracing::warn!(
                "{}: cannot serve stats there ({e}); `valencefs stats` will not reach this mount",
                socket.display()
            ),
        }
        let metrics_addr = http.as_ref().map(|(_, a)| *a);
        if let Some((l, bound)) = http {
            let (weak, stop2) = (Arc::downgrade(fs), stop.clone());
            threads.push(spawn("valencefs-metrics", move || {
                serve_http(l, weak, stop2, id)
            })?);
            tracing::info!("serving Prometheus metrics on http://{bound}/metrics");
        }
        Ok(StatsServer {
            stop,
            threads,
            socket,
            metrics_addr,
        })
    }
}

impl Drop for StatsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| format!("{name} thread: {e}"))
}

/// Waits up to [`POLL`] for a connection on a listening socket, so that a client is answered at once and the stop
/// flag is still looked at regularly.
fn wait_for_client(fd: std::os::unix::io::RawFd) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; the listener outlives it.
    unsafe { libc::poll(&mut p, 1, POLL.as_millis() as libc::c_int) };
}

fn snapshot(fs: &Weak<Fs>, id: &Identity) -> Option<Snapshot> {
    let fs = fs.upgrade()?;
    let mut s = fs.stats();
    s.mountpoint = id.mountpoint.clone();
    s.metrics_address = id.metrics_address.clone();
    Some(s)
}

/// Socket protocol: the client sends one line, `json` (the default) or `prometheus`, and reads the answer until
/// the daemon closes the connection.
fn serve_unix(l: UnixListener, fs: Weak<Fs>, stop: Arc<AtomicBool>, id: Identity) {
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match l.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wait_for_client(l.as_raw_fd());
                continue;
            }
            Err(e) => {
                tracing::debug!("stats socket: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(CLIENT_TIMEOUT));
        let _ = conn.set_write_timeout(Some(CLIENT_TIMEOUT));
        let mut line = String::new();
        let _ = BufReader::new((&conn).take(256)).read_line(&mut line);
        let Some(s) = snapshot(&fs, &id) else { return };
        let body = match line.trim() {
            "prometheus" => metrics::render_prometheus(&s),
            _ => serde_json::to_string(&s).unwrap_or_default(),
        };
        let _ = conn.write_all(body.as_bytes());
    }
}

/// A minimal HTTP/1.0 responder: `GET /metrics` (or `/`) gets the exposition text, anything else 404/405.
fn serve_http(l: TcpListener, fs: Weak<Fs>, stop: Arc<AtomicBool>, id: Identity) {
    while !stop.load(Ordering::Relaxed) {
        let conn = match l.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wait_for_client(l.as_raw_fd());
                continue;
            }
            Err(e) => {
                tracing::debug!("metrics listener: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(CLIENT_TIMEOUT));
        let _ = conn.set_write_timeout(Some(CLIENT_TIMEOUT));
        let mut reader = BufReader::new((&conn).take(16 * 1024));
        let mut request = String::new();
        if reader.read_line(&mut request).is_err() {
            continue;
        }
        // Drain the headers; their content does not matter.
        let mut header = String::new();
        while reader.read_line(&mut header).is_ok_and(|n| n > 0) && header.trim() != "" {
            header.clear();
        }
        let mut parts = request.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = path.split('?').next().unwrap_or("");
        let (status, ctype, body) = match (method, path) {
            ("GET" | "HEAD", "/metrics" | "/") => match snapshot(&fs, &id) {
                Some(s) => (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics::render_prometheus(&s),
                ),
                None => return,
            },
            ("GET" | "HEAD", _) => (
                "404 Not Found",
                "text/plain",
                "valencefs serves /metrics\n".into(),
            ),
            _ => (
                "405 Method Not Allowed",
                "text/plain",
                "GET /metrics\n".into(),
            ),
        };
        let head = format!(
            "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut w = &conn;
        let _ = w.write_all(head.as_bytes());
        if method != "HEAD" {
            let _ = w.write_all(body.as_bytes());
        }
    }
}

/// Asks the daemon serving `state_dir` for its counters (`valencefs stats`).
pub fn query(state_dir: &Path) -> Result<Snapshot, String> {
    let path = state_dir.join(SOCKET);
    let mut c = UnixStream::connect(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    c.write_all(b"json\n")
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    c.read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: bad answer: {e}", path.display()))
}
