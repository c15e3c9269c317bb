//! A real PostgreSQL server dumps a database onto a valencefs mount in plain, custom and directory formats; after a
//! remount each dump restores into a new database identical to the source (schema dump, per-table checksums,
//! large objects).
//!
//! Needs root, /dev/fuse and the PostgreSQL server binaries (`apt-get install postgresql`; CI installs them). The
//! server runs as the `postgres` user in a temporary cluster listening only on a Unix socket, and is stopped on every
//! path by [`PgServer`]'s `Drop`. Kept to a few MB so it costs CI well under a minute; the heavy version is
//! `bench/pg_nightly.sh`.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const INSTALL_HINT: &str = "install them with `apt-get install postgresql` (Debian/Ubuntu; .ci/run does this), or \
                            point VALENCEFS_PG_BIN at the directory holding initdb, pg_ctl, pg_dump, pg_restore, psql";

/// The directory with initdb/pg_ctl/pg_dump/pg_restore/psql: `VALENCEFS_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps the server binaries off PATH), else the directory of `pg_ctl` on PATH.
fn pg_bin() -> Result<PathBuf, String> {
    let tools = ["initdb", "pg_ctl", "pg_dump", "pg_restore", "psql"];
    let complete = |d: &Path| tools.iter().all(|t| d.join(t).is_file());
    if let Some(d) = std::env::var_os("VALENCEFS_PG_BIN") {
        let d = PathBuf::from(d);
        return if complete(&d) {
            Ok(d)
        } else {
            Err(format!(
                "VALENCEFS_PG_BIN={} lacks one of {tools:?}",
                d.display()
            ))
        };
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if complete(&dir) {
            return Ok(dir);
        }
    }
    Err(format!(
        "PostgreSQL server binaries not found (looked in $VALENCEFS_PG_BIN, /usr/lib/postgresql/*/bin, $PATH); \
         {INSTALL_HINT}"
    ))
}

/// Looks up a user's uid and gid with `id`, so the test needs no passwd parsing of its own.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, user]).output().ok()?;
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn check(what: &str, o: Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A temporary PostgreSQL cluster owned by `postgres`, listening only on a Unix socket in its own directory.
/// `Drop` stops it (fast, then immediate, then SIGKILL of the postmaster) whatever happened.
struct PgServer {
    bin: PathBuf,
    /// Owned by postgres, mode 0755: data directory, socket, log and scratch files live here.
    dir: tempfile::TempDir,
    started: bool,
}

impl PgServer {
    fn start() -> PgServer {
        let bin = pg_bin().unwrap_or_else(|e| panic!("{e}"));
        let (uid, gid) = user_ids("postgres").unwrap_or_else(|| {
            panic!("no `postgres` user: PostgreSQL refuses to run as root; {INSTALL_HINT}")
        });
        let dir = tempfile::Builder::new().prefix("vpg").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let mut s = PgServer {
            bin,
            dir,
            started: false,
        };
        let data = s.path("data");
        check(
            "initdb",
            s.run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "--no-sync",
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
            ),
        );
        let opts = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c fsync=off -c full_page_writes=off \
             -c synchronous_commit=off -c shared_buffers=16MB -c max_wal_size=256MB",
            s.dir.path().display()
        );
        // Marked started before the attempt: a half-started server is stopped by Drop too.
        s.started = true;
        let log = s.path("server.log");
        let o = s.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "60", "start",
            ],
        );
        if !o.status.success() {
            panic!(
                "pg_ctl start failed: {}\nserver log:\n{}",
                String::from_utf8_lossy(&o.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        s
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Runs a PostgreSQL tool as `postgres`, connecting through this cluster's socket directory.
    fn run(&self, tool: &str, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .current_dir(self.dir.path())
            .env("PGHOST", self.dir.path())
            .env("PGUSER", "postgres")
            .env_remove("PGDATABASE")
            .env_remove("PGPASSWORD")
            .output()
            .unwrap_or_else(|e| panic!("cannot run runuser {tool}: {e}"))
    }

    fn ok(&self, tool: &str, args: &[&str]) -> String {
        check(&format!("{tool} {args:?}"), self.run(tool, args))
    }

    /// psql with errors fatal, no psqlrc, unaligned tuples-only output.
    fn sql(&self, db: &str, sql: &str) -> String {
        self.ok(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ],
        )
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        let data = self.path("data");
        for mode in ["fast", "immediate"] {
            let o = self.run(
                "pg_ctl",
                &["-D", &data, "-m", mode, "-w", "-t", "30", "stop"],
            );
            if o.status.success() {
                return;
            }
        }
        // Last resort: the postmaster's pid is the first line of postmaster.pid.
        if let Some(pid) = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        {
            // SAFETY: plain kill(2) of the postmaster this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Tables of several shapes (serial keys, foreign keys, partial/expression/unique indexes, jsonb, numeric, arrays,
/// compressible text, incompressible bytea up to 256 KiB so TOAST is used), a view, a sequence, a function, and large
/// objects from `lo_from_bytea` and server-side `lo_import`. About 10 MB.
fn build_source(pg: &PgServer) {
    let blob_file = pg.path("blob.bin");
    let mut blob = Vec::with_capacity(3 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while blob.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        blob.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&blob_file, &blob).unwrap();
    pg.ok("createdb", &["src"]);
    pg.sql(
        "src",
        &format!(
            r#"
CREATE TABLE customers (
    id serial PRIMARY KEY,
    name text NOT NULL,
    email text UNIQUE,
    created timestamptz NOT NULL,
    tags text[],
    note text
);
INSERT INTO customers (name, email, created, tags, note)
SELECT 'customer ' || g, 'c' || g || '@example.org',
       timestamptz '2024-01-01 00:00+00' + g * interval '17 minutes',
       ARRAY['t' || (g % 7), 't' || (g % 11)],
       CASE WHEN g % 3 = 0 THEN repeat(md5(g::text), 1 + g % 5) END
FROM generate_series(1, 20000) g;
CREATE INDEX customers_lower_name ON customers (lower(name));

CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id),
    amount numeric(12, 2) NOT NULL,
    placed date NOT NULL,
    payload jsonb
);
INSERT INTO orders (customer_id, amount, placed, payload)
SELECT 1 + (g * 7919) % 20000, ((g::bigint * 104729) % 100000) / 100.0, date '2024-01-01' + g % 700,
       jsonb_build_object('sku', 'S' || (g % 997), 'qty', g % 13, 'gift', g % 17 = 0)
FROM generate_series(1, 60000) g;
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX orders_big ON orders (placed) WHERE amount > 900;

CREATE TABLE blobs (id int PRIMARY KEY, name text NOT NULL, data bytea NOT NULL, lo oid);
INSERT INTO blobs (id, name, data)
SELECT g, 'blob ' || g,
       (SELECT string_agg(sha256(int4send(g * 100000 + i)), ''::bytea ORDER BY i)
        FROM generate_series(1, CASE WHEN g % 10 = 0 THEN 8192 ELSE 1 + g * 7 END) i)
FROM generate_series(1, 60) g;
UPDATE blobs SET lo = lo_from_bytea(0, data) WHERE id % 4 = 0;
INSERT INTO blobs (id, name, data, lo)
VALUES (1000, 'imported', '\x00ff'::bytea, lo_import('{blob_file}'));

CREATE SEQUENCE invoice_no START 1000 INCREMENT 3;
SELECT setval('invoice_no', 4242);
CREATE VIEW big_spenders AS
    SELECT c.id, c.name, sum(o.amount) AS total FROM customers c JOIN orders o ON o.customer_id = c.id
    GROUP BY c.id, c.name HAVING sum(o.amount) > 4000;
CREATE FUNCTION order_total(cid int) RETURNS numeric LANGUAGE sql STABLE
    AS 'SELECT coalesce(sum(amount), 0) FROM orders WHERE customer_id = cid';
COMMENT ON TABLE orders IS 'one row per order';
ANALYZE;
"#
        ),
    );
}

/// A schema+data dump that is deterministic for identical databases: `pg_dump --no-owner`, plain, minus only the
/// header lines that name the tool and server versions and times, and the random `\restrict` key.
fn canonical_dump(pg: &PgServer, db: &str) -> String {
    pg.ok("pg_dump", &["--no-owner", "-Fp", "-d", db])
        .lines()
        .filter(|l| {
            !(l.starts_with("-- Dumped from")
                || l.starts_with("-- Dumped by")
                || l.starts_with("-- Started on")
                || l.starts_with("-- Completed on")
                // psql meta-commands with a random key per dump (PostgreSQL 13.22+/15.14+/17.6+).
                || l.starts_with("\\restrict ")
                || l.starts_with("\\unrestrict "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Per-table row count and md5 over the rows in key order, the sequence state, and every large object's md5.
fn fingerprint(pg: &PgServer, db: &str) -> String {
    let mut out = String::new();
    for (table, key) in [("customers", "id"), ("orders", "id"), ("blobs", "id")] {
        out += &pg.sql(
            db,
            &format!(
                "SELECT '{table}', count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY {key}), '')) \
                 FROM {table} t"
            ),
        );
    }
    out += &pg.sql(db, "SELECT 'seq', last_value, is_called FROM invoice_no");
    out += &pg.sql(
        db,
        "SELECT 'lo', oid, length(lo_get(oid)), md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid",
    );
    out += &pg.sql(
        db,
        "SELECT 'lo-vs-bytea', count(*) FROM blobs WHERE lo IS NOT NULL AND id < 1000 AND lo_get(lo) <> data",
    );
    out
}

#[test]
fn pg_dump_plain_custom_directory_restore_identical() {
    if !fuse_available() {
        return;
    }
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test needs root: it mounts and runs PostgreSQL as the `postgres` user"
    );
    let pg = PgServer::start();
    build_source(&pg);
    let lo_count = pg.sql("src", "SELECT count(*) FROM pg_largeobject_metadata");
    assert_eq!(lo_count.trim(), "16", "source should hold 16 large objects");

    let v = Vol::new("personal");
    // The postgres user must reach the mount point through the volume's private temporary directory.
    std::fs::set_permissions(v.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (uid, gid) = user_ids("postgres").unwrap();
    let dumps = v.mnt.join("dumps");
    let d = dumps.display().to_string();
    {
        let g = v.mount_with("allow_other");
        std::fs::create_dir(&dumps).unwrap();
        std::os::unix::fs::chown(&dumps, Some(uid), Some(gid)).unwrap();
        pg.ok(
            "pg_dump",
            &["-Fp", "-f", &format!("{d}/src.sql"), "-d", "src"],
        );
        pg.ok(
            "pg_dump",
            &["-Fc", "-f", &format!("{d}/src.dump"), "-d", "src"],
        );
        pg.ok(
            "pg_dump",
            &["-Fd", "-j", "2", "-f", &format!("{d}/src.dir"), "-d", "src"],
        );
        g.umount();
    }
    // Restore from a fresh mount, so the bytes come back through the store and not the page cache.
    let g = v.mount_with("allow_other");
    let sizes = sh(&format!("du -sb {d}/src.sql {d}/src.dump {d}/src.dir"));
    pg.ok("createdb", &["r_plain"]);
    pg.ok(
        "psql",
        &[
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            "r_plain",
            "-f",
            &format!("{d}/src.sql"),
        ],
    );
    pg.ok("createdb", &["r_custom"]);
    pg.ok(
        "pg_restore",
        &[
            "--exit-on-error",
            "-d",
            "r_custom",
            &format!("{d}/src.dump"),
        ],
    );
    pg.ok("createdb", &["r_dir"]);
    pg.ok(
        "pg_restore",
        &[
            "--exit-on-error",
            "-j",
            "2",
            "-d",
            "r_dir",
            &format!("{d}/src.dir"),
        ],
    );
    g.umount();

    let want_dump = canonical_dump(&pg, "src");
    let want_fp = fingerprint(&pg, "src");
    assert!(
        want_dump.contains("CREATE INDEX orders_big")
            && want_dump.contains("SELECT pg_catalog.lo_create"),
        "the canonical dump should cover indexes and large objects"
    );
    for db in ["r_plain", "r_custom", "r_dir"] {
        let got = canonical_dump(&pg, db);
        if got != want_dump {
            let first = want_dump
                .lines()
                .zip(got.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(want_dump.lines().count().min(got.lines().count()));
            panic!(
                "{db}: restored dump differs from the source at line {}: source {:?}, restored {:?} (dump sizes: \
                 {sizes})",
                first + 1,
                want_dump.lines().nth(first),
                got.lines().nth(first)
            );
        }
        assert_eq!(fingerprint(&pg, db), want_fp, "{db}: checksums differ");
    }

    // The comparison must be able to fail: one changed byte in a large object shows up in both checks.
    pg.sql(
        "r_dir",
        "SELECT lo_put(lo, 100, '\\x41'::bytea) FROM blobs WHERE id = 1000",
    );
    assert_ne!(canonical_dump(&pg, "r_dir"), want_dump);
    assert_ne!(fingerprint(&pg, "r_dir"), want_fp);
}
