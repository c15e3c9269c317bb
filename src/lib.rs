//! valencefs: an encrypted, deduplicating, erasure-coded filesystem over directory-backed disks.
//!
//! Layers (arrows point down only):
//!
//! ```text
//! cli ──┐   mount helper (argv/-o translation only)
//!       ├─> volume   (composition root: config + key + disks → Fs)
//! fuse ─┘   (the only module that imports fuser; maps Error → errno via Error::errno)
//!       └─> fs       (POSIX semantics, returns Result; testable without mounting)
//!             ├─> fs::cache (write-back dirty extents + clean-chunk LRU)
//!             ├─> meta      (the only module that imports redb)
//!             └─> store     (chunk → seal → shards → disks)
//!                   ├─> chunker, crypto, erasure (pure, no I/O)
//!                   ├─> format (on-disk structures, versioned)
//!                   └─> disk   (directory, memory, fault, S3: the only module that imports object_store/tokio)
//! ```
//!
//! The on-disk format is specified in `docs/FORMAT.md`.

pub mod cli;
pub mod daemon;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod logging;
pub mod maint;
pub mod meta;
pub mod metrics;
pub mod mount_opts;
mod quickstart;
pub mod stats_server;
pub mod store;
pub mod volume;

pub use error::{Error, Result};

/// Makes glibc serve large buffers (chunks, shards, dirty extents) from mmap and return them when freed. By default
/// its mmap threshold grows after the first large free, after which multi-MiB buffers stay in per-thread arenas
/// and resident memory creeps far past the cache budget. Called once by the daemon before it starts.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before heavy allocation starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}
