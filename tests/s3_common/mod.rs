//! A real S3 server for tests: `moto_server` on 127.0.0.1 at a free port, killed (with its process group) when the
//! guard drops, on every path including panics. CI installs moto (`pip install 'moto[server]'` in `.ci/run`); when
//! it is missing the tests fail saying so rather than pass silently.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use valencefs::store::S3Settings;

/// Credentials the tests hand to moto (which accepts any). Tests check that they never show up in output.
pub const KEY_ID: &str = "AKIAVALENCEFSTESTKEY";
pub const SECRET: &str = "valencefs/test/secret/do-not-print";

/// A running moto server.
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
}

fn moto_program() -> String {
    std::env::var("VALENCEFS_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Moto {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            match Self::start_on(port) {
                Ok(m) => return m,
                Err(e) => last = e,
            }
        }
        panic!("could not start moto_server: {last}");
    }

    /// Starts moto on `port` (e.g. again after [`Moto::kill`], with empty buckets).
    pub fn start_on(port: u16) -> Result<Moto, String> {
        let program = moto_program();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group: killing it also kills any wrapper (pyenv shim) and the Python child.
            .process_group(0)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "{program} not found: these tests need a real S3 server; install it with \
                 `pip install 'moto[server]'` (CI's .ci/run does) or point VALENCEFS_MOTO_SERVER at it"
            ),
            Err(e) => panic!("spawn {program}: {e}"),
        };
        let mut m = Moto {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(st))) = m.child.as_mut().map(|c| c.try_wait()) {
                m.child = None;
                return Err(format!("moto_server exited early ({st}) on port {port}"));
            }
            if m.request("GET", "/")
                .is_ok_and(|r| r.starts_with("HTTP/1."))
            {
                return Ok(m);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto_server did not answer on port {port} within 60 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Settings reaching this server with the test credentials and a short timeout.
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some(KEY_ID.into()),
            secret_access_key: Some(SECRET.into()),
            session_token: None,
            allow_http: None,
            timeout: Some(Duration::from_secs(2)),
        }
    }

    /// One raw HTTP/1.1 request (moto accepts unsigned ones); returns the whole response.
    fn request(&self, method: &str, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    pub fn create_bucket(&self, name: &str) {
        let r = self
            .request("PUT", &format!("/{name}"))
            .expect("create bucket");
        assert!(r.starts_with("HTTP/1.1 200"), "create bucket {name}: {r}");
    }

    /// Kills the server (SIGKILL to its process group) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain kill(2) on the group we created.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}
