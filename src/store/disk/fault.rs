//! Fault-injecting wrapper around any disk: missing, read-only, ENOSPC, EIO, bit flips, truncation, slowness,
//! and (over a memory disk) crash = drop unsynced writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{Disk, DiskStat, MemDisk};
use crate::error::{Error, Result};

/// Which faults are active. Change them at any time with [`FaultDisk::set`]; with the default (no faults) the
/// wrapper behaves exactly like the inner disk.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// The disk is gone: every operation fails, `stat` reports not present.
    pub missing: bool,
    /// Writes and deletes fail with `ReadOnly`; `stat` reports not writable.
    pub read_only: bool,
    /// Every `put` fails with `NoSpace`.
    pub enospc: bool,
    /// After this many more successful `put`s, every `put` fails with `NoSpace`.
    pub puts_before_enospc: Option<u64>,
    /// Reads fail with an I/O error (EIO).
    pub eio_read: bool,
    /// Writes fail with an I/O error (EIO).
    pub eio_write: bool,
    /// Every object read comes back with one bit flipped (position derived from the name).
    pub flip_bits: bool,
    /// Every object read comes back cut to half its length.
    pub truncate: bool,
    /// Each operation sleeps this long first.
    pub slow: Option<Duration>,
}

/// A [`Disk`] that forwards to an inner disk and injects the configured [`Faults`].
pub struct FaultDisk {
    inner: Arc<dyn Disk>,
    /// Set when built over a memory disk, which can simulate a power cut.
    mem: Option<Arc<MemDisk>>,
    faults: Mutex<Faults>,
    puts: AtomicU64,
}

impl FaultDisk {
    /// The configured read damage applied to a whole object's bytes.
    fn damage(f: &Faults, name: &str, mut data: Vec<u8>) -> Vec<u8> {
        if f.flip_bits && !data.is_empty() {
            let h = blake3::hash(name.as_bytes());
            let pos =
                u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8")) as usize % data.len();
            data[pos] ^= 1 << (h.as_bytes()[8] % 8);
        }
        if f.truncate {
            data.truncate(data.len() / 2);
        }
        data
    }

    pub fn new(inner: Arc<dyn Disk>) -> FaultDisk {
        FaultDisk {
            inner,
            mem: None,
            faults: Mutex::new(Faults::default()),
            puts: AtomicU64::new(0),
        }
    }

    /// A fault disk over a memory disk: like [`FaultDisk::new`], plus [`FaultDisk::crash`].
    pub fn over_mem(mem: Arc<MemDisk>) -> FaultDisk {
        let mut f = FaultDisk::new(mem.clone());
        f.mem = Some(mem);
        f
    }

    /// Simulates a power cut: drops every write since the last `sync`. Returns false (and does nothing) unless
    /// built with [`FaultDisk::over_mem`].
    pub fn crash(&self) -> bool {
        match &self.mem {
            Some(m) => {
                m.crash();
                true
            }
            None => false,
        }
    }

    /// Replaces the active faults.
    pub fn set(&self, faults: Faults) {
        self.puts.store(0, Ordering::SeqCst);
        *self.faults.lock() = faults;
    }

    /// Changes the active faults in place.
    pub fn update(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock());
    }

    pub fn inner(&self) -> &Arc<dyn Disk> {
        &self.inner
    }

    fn eio(&self, what: &str) -> Error {
        Error::io(
            format!("{}:{what}", self.describe()),
            std::io::Error::from_raw_os_error(libc::EIO),
        )
    }

    fn begin(&self) -> Result<Faults> {
        let f = self.faults.lock().clone();
        if let Some(d) = f.slow {
            std::thread::sleep(d);
        }
        if f.missing {
            return Err(Error::io(
                self.describe(),
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
        Ok(f)
    }

    fn check_write(&self, f: &Faults, name: &str) -> Result<()> {
        if f.read_only {
            return Err(Error::ReadOnly);
        }
        if f.eio_write {
            return Err(self.eio(name));
        }
        Ok(())
    }
}

impl Disk for FaultDisk {
    fn describe(&self) -> String {
        format!("fault({})", self.inner.describe())
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        self.put_parts(name, &[data])
    }

    fn put_parts(&self, name: &str, parts: &[&[u8]]) -> Result<()> {
        let f = self.begin()?;
        self.check_write(&f, name)?;
        let budget_exhausted = f
            .puts_before_enospc
            .is_some_and(|n| self.puts.fetch_add(1, Ordering::SeqCst) >= n);
        if f.enospc || budget_exhausted {
            return Err(Error::NoSpace {
                disk: self.describe(),
            });
        }
        self.inner.put_parts(name, parts)
    }

    fn get_limited(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        let f = self.begin()?;
        if f.eio_read {
            return Err(self.eio(name));
        }
        let data = self.inner.get_limited(name, max)?;
        Ok(Self::damage(&f, name, data))
    }

    /// A range of the object as [`FaultDisk::get_limited`] would return it whole: without a bit-flip or
    /// truncation fault, straight from the inner disk's range read (the store reads pieces of stripe files).
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let f = self.begin()?;
        if f.eio_read {
            return Err(self.eio(name));
        }
        if !f.flip_bits && !f.truncate {
            return self.inner.get_range(name, offset, len);
        }
        let all = Self::damage(&f, name, self.inner.get(name)?);
        Ok(super::range_of(&all, offset, len).to_vec())
    }

    fn delete(&self, name: &str) -> Result<()> {
        let f = self.begin()?;
        self.check_write(&f, name)?;
        self.inner.delete(name)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let f = self.begin()?;
        if f.eio_read {
            return Err(self.eio(prefix));
        }
        self.inner.list(prefix)
    }

    fn sync(&self) -> Result<()> {
        let f = self.begin()?;
        self.check_write(&f, "sync")?;
        self.inner.sync()
    }

    fn stat(&self) -> DiskStat {
        let f = self.faults.lock().clone();
        if f.missing {
            return DiskStat {
                present: false,
                writable: false,
            };
        }
        let s = self.inner.stat();
        DiskStat {
            present: s.present,
            writable: s.writable && !f.read_only,
        }
    }

    fn parallel_io(&self) -> bool {
        self.faults.lock().slow.is_some() || self.inner.parallel_io()
    }
}
