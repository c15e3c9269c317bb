//! In-memory disk that tracks live versus durable state, so tests can simulate a crash (drop unsynced writes).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{check_name, read_limit, too_large, Disk, DiskStat};
use crate::error::{Error, Result};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

type Objects = BTreeMap<String, Arc<Vec<u8>>>;

#[derive(Default)]
struct State {
    live: Objects,
    /// Snapshot as of the last `sync`; what survives `crash`.
    durable: Objects,
}

/// An in-memory [`Disk`]. Cloning the `Arc` shares the contents.
pub struct MemDisk {
    id: u64,
    state: Mutex<State>,
}

impl Default for MemDisk {
    fn default() -> Self {
        MemDisk::new()
    }
}

impl MemDisk {
    pub fn new() -> MemDisk {
        MemDisk {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(State::default()),
        }
    }

    /// Simulates a power cut: every write since the last `sync` is lost.
    pub fn crash(&self) {
        let mut s = self.state.lock();
        s.live = s.durable.clone();
    }

    /// Direct mutable access to a stored object (tests use it to rot bytes behind the store's back).
    pub fn tamper(&self, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut s = self.state.lock();
        match s.live.get_mut(name) {
            Some(obj) => {
                f(Arc::make_mut(obj));
                true
            }
            None => false,
        }
    }

    /// The live object `name` (shared, not copied).
    fn live(&self, name: &str) -> Result<Arc<Vec<u8>>> {
        self.state
            .lock()
            .live
            .get(name)
            .cloned()
            .ok_or(Error::NotFound)
    }

    /// Total bytes of all live objects.
    pub fn bytes(&self) -> u64 {
        self.state
            .lock()
            .live
            .values()
            .map(|v| v.len() as u64)
            .sum()
    }
}

impl Disk for MemDisk {
    fn describe(&self) -> String {
        format!("mem#{}", self.id)
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        check_name(name)?;
        self.state
            .lock()
            .live
            .insert(name.to_string(), Arc::new(data.to_vec()));
        Ok(())
    }

    fn get_limited(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        let obj = self.live(name)?;
        let limit = read_limit(max);
        if obj.len() as u64 > limit {
            return Err(too_large(&self.describe(), name, obj.len() as u64, limit));
        }
        Ok(obj.as_ref().clone())
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let obj = self.live(name)?;
        Ok(super::range_of(&obj, offset, len).to_vec())
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.state.lock().live.remove(name);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let s = self.state.lock();
        Ok(s.live
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn sync(&self) -> Result<()> {
        let mut s = self.state.lock();
        s.durable = s.live.clone();
        Ok(())
    }

    fn stat(&self) -> DiskStat {
        DiskStat {
            present: true,
            writable: true,
        }
    }

    fn parallel_io(&self) -> bool {
        false
    }
}
