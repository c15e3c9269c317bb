//! Volume lifecycle: create over empty disks, open with checks (foreign, duplicate index, stale, missing,
//! unreadable, read-only), and keyslot management (which rewrites only the disk headers).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rand::RngCore;

use super::crypto::{hex, KdfParams, Keys};
use super::disk::Disk;
use super::erasure::Codec;
use super::format::{
    DiskHeader, Keyslot, DH_KEYSLOTS_END, DH_KEYSLOTS_OFF, DISK_HEADER_NAME, FLAG_COMPRESSION,
    FORMAT_NEWEST, FORMAT_V1, FORMAT_V3, KEYSLOTS, SHARD_DIR,
};
use super::{CreateOptions, DiskState, Slot, Store};
use crate::error::{Error, Result};

/// What open learned about one disk before any cross-disk checks.
enum Probe {
    Missing(String),
    Unreadable(String),
    Header(DiskHeader, bool),
}

fn probe(disk: &dyn Disk) -> Probe {
    let stat = disk.stat();
    if !stat.present {
        return Probe::Missing(
            "not present (directory absent, or bucket absent or unreachable)".into(),
        );
    }
    match disk.get(DISK_HEADER_NAME) {
        Err(Error::NotFound) => Probe::Missing("no valencefs header on this disk".into()),
        Err(e) => Probe::Unreadable(format!("header unreadable: {e}")),
        Ok(bytes) => match DiskHeader::decode(&bytes) {
            Ok(h) => Probe::Header(h, stat.writable),
            Err(e) => Probe::Unreadable(format!("header invalid: {e}")),
        },
    }
}

/// Writes one disk's header atomically and durably (the disk's `put` is an atomic replace; `sync` makes the
/// directory entry durable). A v2 header gets its MAC here, over its own disk index.
fn write_header(disk: &dyn Disk, header: &DiskHeader, index: usize, keys: &Keys) -> Result<()> {
    let mut h = header.clone();
    h.disk_index = index as u16;
    if h.version != FORMAT_V1 {
        h.mac = keys.header_mac(&h.mac_input());
    }
    disk.put(DISK_HEADER_NAME, &h.encode())?;
    disk.sync()
}

/// Whether a header read from a disk is authentic for the unlocked volume: the same format version as the header
/// that unlocked it, and (v2) a MAC that checks. `None` when it is, else why not.
fn inauthentic(h: &DiskHeader, keys: &Keys) -> Option<String> {
    if h.version != keys.format() {
        return Some(format!(
            "header says format v{} but the volume is v{}: edited on the disk?",
            h.version,
            keys.format()
        ));
    }
    if h.version != FORMAT_V1 && keys.header_mac(&h.mac_input()) != h.mac {
        return Some(
            "header fails authentication (keyed MAC): edited on the disk or forged; not used"
                .into(),
        );
    }
    None
}

impl Store {
    /// Creates a new volume over `disks` (config order = disk index). Refuses fewer than k+m disks, and any disk
    /// that already holds objects (another volume or anything else).
    pub fn create(
        disks: Vec<Arc<dyn Disk>>,
        opts: &CreateOptions,
        passphrase: &[u8],
    ) -> Result<Store> {
        let (k, m) = (opts.redundancy.k as usize, opts.redundancy.m as usize);
        if k == 0 || m == 0 || k + m > 255 {
            return Err(Error::Invalid(format!(
                "redundancy {}: need k ≥ 1, m ≥ 1, k+m ≤ 255",
                opts.redundancy
            )));
        }
        if disks.len() < k + m {
            return Err(Error::Invalid(format!(
                "redundancy {k}+{m} puts each of a chunk's {} shards on a different disk, so it needs at least {} disks; \
                 got {}. With {} disks some disk would hold two shards of a chunk and losing it would cost two, \
                 so the layout would survive fewer than {m} disk losses. Add disks or choose a smaller k+m.",
                k + m,
                k + m,
                disks.len(),
                disks.len()
            )));
        }
        if disks.len() > u16::MAX as usize {
            return Err(Error::Invalid("too many disks".into()));
        }
        opts.chunker.validate()?;
        for d in &disks {
            let stat = d.stat();
            if stat.present {
                let existing = d.list("")?;
                if existing.iter().any(|n| n == DISK_HEADER_NAME) {
                    return Err(Error::BadDisk {
                        disk: d.describe(),
                        reason: "already holds a valencefs volume; refusing to overwrite it".into(),
                    });
                }
                if !existing.is_empty() {
                    return Err(Error::BadDisk {
                        disk: d.describe(),
                        reason: format!(
                            "not empty ({} objects); refusing to create a volume here",
                            existing.len()
                        ),
                    });
                }
                if !stat.writable {
                    return Err(Error::BadDisk {
                        disk: d.describe(),
                        reason: "read-only".into(),
                    });
                }
            }
        }
        if !(FORMAT_V1..=FORMAT_NEWEST).contains(&opts.format) {
            return Err(Error::Invalid(format!(
                "format version {}: this build writes v{FORMAT_V1} to v{FORMAT_NEWEST}",
                opts.format
            )));
        }
        let keys = Keys::generate().for_format(opts.format);
        let mut volume_id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut volume_id);
        let mut keyslots = vec![Keyslot::default(); KEYSLOTS];
        keyslots[0] = keys.wrap(&volume_id, passphrase, &opts.kdf)?;
        let header = DiskHeader {
            version: opts.format,
            flags: if opts.compression {
                FLAG_COMPRESSION
            } else {
                0
            },
            volume_id,
            disk_index: 0,
            disk_count: disks.len() as u16,
            k: k as u8,
            m: m as u8,
            epoch: 1,
            chunker: opts.chunker,
            keyslots,
            mac: [0; 32],
        };
        for (i, d) in disks.iter().enumerate() {
            write_header(d.as_ref(), &header, i, &keys)?;
        }
        let slots = disks
            .into_iter()
            .map(|d| slot(d, DiskState::Ok, None))
            .collect();
        Ok(Store {
            slots,
            codec: Codec::new(k, m)?,
            stripes: (opts.format >= FORMAT_V3).then(Default::default),
            header: RwLock::new(header),
            gear: keys.gear(),
            keys,
            read_only: false,
            header_write: Mutex::new(()),
            counters: Default::default(),
            unsynced: Mutex::default(),
        })
    }

    /// Opens a volume; `disks` must be in configuration order. Refuses foreign disks, two disks claiming one index,
    /// a disk in the wrong slot and more than m unusable disks; tolerates up to m missing, unreadable or stale
    /// disks (reported by [`Store::health`]). A read-only disk makes the whole store read-only.
    ///
    /// Format v2 headers carry a keyed MAC: after unlocking, a header that fails it (or claims another format
    /// version) is set aside as Unreadable, naming the disk, so nothing a disk holder edits in a header (flags,
    /// chunker sizes, layout, epoch) is believed.
    pub fn open(disks: Vec<Arc<dyn Disk>>, passphrase: &[u8]) -> Result<Store> {
        let mut probes: Vec<Probe> = disks.iter().map(|d| probe(d.as_ref())).collect();
        // The volume is the one most configured disks belong to; only its newest-epoch headers may unlock it, so
        // a keyslot removed or changed while a disk was away cannot come back through that (stale) disk.
        let headers: Vec<&DiskHeader> = probes
            .iter()
            .filter_map(|p| match p {
                Probe::Header(h, _) => Some(h),
                _ => None,
            })
            .collect();
        let mut votes: HashMap<[u8; 16], usize> = HashMap::new();
        for h in &headers {
            *votes.entry(h.volume_id).or_default() += 1;
        }
        let majority = votes.iter().max_by_key(|(_, &n)| n).map(|(v, _)| *v);
        let top_epoch = headers
            .iter()
            .filter(|h| Some(h.volume_id) == majority)
            .map(|h| h.epoch)
            .max();
        // Identical keyslot sets (the normal case) cost one Argon2 run per slot.
        let mut tried: Vec<Vec<u8>> = Vec::new();
        let mut unlocked: Option<(Keys, [u8; 16])> = None;
        'outer: for h in headers
            .iter()
            .filter(|h| Some(h.volume_id) == majority && Some(h.epoch) == top_epoch)
        {
            let fingerprint = h.encode()[DH_KEYSLOTS_OFF..DH_KEYSLOTS_END].to_vec();
            if tried.contains(&fingerprint) {
                continue;
            }
            tried.push(fingerprint);
            for slot in h.keyslots.iter().filter(|s| !s.is_empty()) {
                if let Some(keys) = Keys::unwrap(h.version, &h.volume_id, slot, passphrase)? {
                    unlocked = Some((keys, h.volume_id));
                    break 'outer;
                }
            }
        }
        let (keys, volume_id) = match unlocked {
            Some(u) => u,
            None if tried.is_empty() => {
                return Err(Error::Volume(format!(
                    "none of the {} configured disks holds a readable valencefs header",
                    disks.len()
                )))
            }
            None => return Err(Error::WrongPassphrase),
        };
        // Headers of this volume that are not authentic are not believed in anything below.
        let mut authentic = 0;
        for p in probes.iter_mut() {
            if let Probe::Header(h, _) = p {
                if h.volume_id != volume_id {
                    continue;
                }
                match inauthentic(h, &keys) {
                    Some(why) => {
                        tracing::warn!("disk header set aside: {why}");
                        *p = Probe::Unreadable(why);
                    }
                    None => authentic += 1,
                }
            }
        }
        if authentic == 0 {
            return Err(Error::Volume(
                "the passphrase opened a keyslot, but no disk header of the volume passes authentication: \
                 every header was edited or forged"
                    .into(),
            ));
        }
        // Foreign disks and slot mix-ups are configuration errors: refuse rather than run degraded without saying.
        let mut claimed: HashMap<u16, usize> = HashMap::new();
        for (pos, p) in probes.iter().enumerate() {
            if let Probe::Header(h, _) = p {
                let desc = disks[pos].describe();
                if h.volume_id != volume_id {
                    return Err(Error::BadDisk {
                        disk: desc,
                        reason: format!(
                            "belongs to another volume ({}), not {}",
                            hex(&h.volume_id),
                            hex(&volume_id)
                        ),
                    });
                }
                if let Some(other) = claimed.insert(h.disk_index, pos) {
                    return Err(Error::BadDisk {
                        disk: desc,
                        reason: format!(
                            "claims disk index {} which disk #{other} ({}) also claims: a copied disk?",
                            h.disk_index,
                            disks[other].describe()
                        ),
                    });
                }
            }
        }
        let mut newest: Option<&DiskHeader> = None;
        for p in &probes {
            if let Probe::Header(h, _) = p {
                if newest.map_or(true, |n| h.epoch > n.epoch) {
                    newest = Some(h);
                }
            }
        }
        let newest = newest.expect("an unlocked header exists").clone();
        if disks.len() != newest.disk_count as usize {
            return Err(Error::Volume(format!(
                "volume has {} disks, {} configured",
                newest.disk_count,
                disks.len()
            )));
        }
        for (pos, p) in probes.iter().enumerate() {
            if let Probe::Header(h, _) = p {
                if h.disk_index as usize != pos {
                    return Err(Error::BadDisk {
                        disk: disks[pos].describe(),
                        reason: format!("is disk index {} but configured at position {pos}: disks out of order?", h.disk_index),
                    });
                }
                if (h.k, h.m, h.disk_count) != (newest.k, newest.m, newest.disk_count) {
                    return Err(Error::BadDisk {
                        disk: disks[pos].describe(),
                        reason: format!(
                            "layout {}+{} of {} disagrees with the volume",
                            h.k, h.m, h.disk_count
                        ),
                    });
                }
            }
        }
        let mut read_only = false;
        let mut slots = Vec::with_capacity(disks.len());
        for (d, p) in disks.into_iter().zip(probes) {
            let (state, detail) = match p {
                Probe::Missing(why) => (DiskState::Missing, Some(why)),
                Probe::Unreadable(why) => (DiskState::Unreadable, Some(why)),
                Probe::Header(h, _) if h.epoch < newest.epoch => (
                    DiskState::Stale,
                    Some(format!(
                        "epoch {} < volume epoch {}: missed a header rewrite",
                        h.epoch, newest.epoch
                    )),
                ),
                Probe::Header(_, false) => {
                    read_only = true;
                    (
                        DiskState::ReadOnly,
                        Some("disk refuses writes; volume opened read-only".into()),
                    )
                }
                Probe::Header(_, true) => (DiskState::Ok, None),
            };
            slots.push(slot(d, state, detail));
        }
        let usable = slots
            .iter()
            .filter(|s| matches!(s.state.lock().0, DiskState::Ok | DiskState::ReadOnly))
            .count();
        let lost = slots.len() - usable;
        if lost > newest.m as usize {
            let list: Vec<String> = slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let (st, why) = s.state.lock().clone();
                    (!matches!(st, DiskState::Ok | DiskState::ReadOnly)).then(|| {
                        format!(
                            "#{i} {} {st:?}: {}",
                            s.disk.describe(),
                            why.unwrap_or_default()
                        )
                    })
                })
                .collect();
            return Err(Error::Volume(format!(
                "{lost} of {} disks unusable but {}+{} survives only {}: {}",
                slots.len(),
                newest.k,
                newest.m,
                newest.m,
                list.join("; ")
            )));
        }
        let packed = newest.version >= FORMAT_V3;
        let mut store = Store {
            slots,
            codec: Codec::new(newest.k as usize, newest.m as usize)?,
            stripes: None,
            header: RwLock::new(newest),
            gear: keys.gear(),
            keys,
            read_only,
            header_write: Mutex::new(()),
            counters: Default::default(),
            unsynced: Mutex::default(),
        };
        if packed {
            store.stripes = Some(store.read_stripe_heads()?);
        }
        Ok(store)
    }

    /// Adds a keyslot for `passphrase`; returns its slot number.
    pub fn add_keyslot(&self, passphrase: &[u8], kdf: &KdfParams) -> Result<usize> {
        let _g = self.header_write.lock();
        let mut h = self.header.read().clone();
        let free = h
            .keyslots
            .iter()
            .position(|s| s.is_empty())
            .ok_or_else(|| Error::Invalid(format!("all {KEYSLOTS} keyslots are in use")))?;
        h.keyslots[free] = self.keys.wrap(&h.volume_id, passphrase, kdf)?;
        self.rewrite_headers(h)?;
        Ok(free)
    }

    /// Replaces the keyslot that `old` opens with one for `new`, derived with `kdf` (not the old slot's costs: a
    /// passphrase change is the moment to move a slot made with weak or outdated costs to the current ones). The
    /// master key stays the same (no rotation): a copy of the old header still opens with `old`.
    pub fn change_passphrase(&self, old: &[u8], new: &[u8], kdf: &KdfParams) -> Result<()> {
        let _g = self.header_write.lock();
        let mut h = self.header.read().clone();
        let idx = self.find_slot(&h, old)?;
        h.keyslots[idx] = self.keys.wrap(&h.volume_id, new, kdf)?;
        self.rewrite_headers(h)
    }

    /// The KDF costs of keyslot `slot`, if it is in use.
    pub fn keyslot_kdf(&self, slot: usize) -> Option<KdfParams> {
        let h = self.header.read();
        let s = h.keyslots.get(slot).filter(|s| !s.is_empty())?;
        Some(KdfParams {
            m_cost_kib: s.m_cost_kib,
            t_cost: s.t_cost,
            p_cost: s.p_cost,
        })
    }

    /// Empties keyslot `slot`; refuses to remove the last one (the volume would be unopenable). The master key stays
    /// the same (no rotation): a copy of the old header still opens with that slot's passphrase.
    pub fn remove_keyslot(&self, slot: usize) -> Result<()> {
        let _g = self.header_write.lock();
        let mut h = self.header.read().clone();
        if slot >= KEYSLOTS || h.keyslots[slot].is_empty() {
            return Err(Error::Invalid(format!("keyslot {slot} is not in use")));
        }
        if h.keyslots.iter().filter(|s| !s.is_empty()).count() == 1 {
            return Err(Error::Invalid("refusing to remove the last keyslot".into()));
        }
        h.keyslots[slot] = Keyslot::default();
        self.rewrite_headers(h)
    }

    /// Brings a disk that open set aside (Missing, Stale, Unreadable) back into use: it must now be present and
    /// writable, and hold either no header (a blank replacement) or a header of this volume. Its header is
    /// rewritten with the current epoch and keyslots. Shards it lacks are rebuilt by reads and [`Store::scrub`];
    /// its existing shards stay valid (each is checksummed and AEAD-bound to its chunk).
    pub fn readmit(&self, index: usize) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let _g = self.header_write.lock();
        let slot = self
            .slots
            .get(index)
            .ok_or_else(|| Error::Invalid(format!("no disk #{index}")))?;
        if slot.state.lock().0 == DiskState::Ok {
            return Ok(());
        }
        let disk = slot.disk.as_ref();
        let stat = disk.stat();
        if !stat.present || !stat.writable {
            return Err(Error::BadDisk {
                disk: disk.describe(),
                reason: "not present or not writable".into(),
            });
        }
        let h = self.header.read().clone();
        match probe(disk) {
            Probe::Header(old, _) if old.volume_id != h.volume_id => {
                return Err(Error::BadDisk {
                    disk: disk.describe(),
                    reason: format!("belongs to another volume ({})", hex(&old.volume_id)),
                })
            }
            Probe::Unreadable(why) if !disk.list(&format!("{SHARD_DIR}/"))?.is_empty() => {
                // A corrupt header is replaced only when no shards sit beside it that could be another volume's.
                return Err(Error::BadDisk {
                    disk: disk.describe(),
                    reason: format!("{why}; holds shards, refusing to take it over"),
                });
            }
            Probe::Header(..) | Probe::Missing(_) | Probe::Unreadable(_) => {}
        }
        write_header(disk, &h, index, &self.keys)?;
        *slot.state.lock() = (DiskState::Ok, None);
        Ok(())
    }

    /// Keyslot numbers in use.
    pub fn keyslots(&self) -> Vec<usize> {
        let h = self.header.read();
        (0..KEYSLOTS)
            .filter(|&i| !h.keyslots[i].is_empty())
            .collect()
    }

    fn find_slot(&self, h: &DiskHeader, passphrase: &[u8]) -> Result<usize> {
        for (i, s) in h.keyslots.iter().enumerate() {
            if !s.is_empty() && Keys::unwrap(h.version, &h.volume_id, s, passphrase)?.is_some() {
                return Ok(i);
            }
        }
        Err(Error::WrongPassphrase)
    }

    /// Writes `h` with a bumped epoch to every usable disk. A disk that misses the rewrite (absent now) is then
    /// stale at the next open, so an old keyslot can't come back through it unnoticed.
    fn rewrite_headers(&self, mut h: DiskHeader) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        h.epoch += 1;
        let mut written = 0;
        let mut first_err = None;
        for (i, s) in self.slots.iter().enumerate() {
            if s.state.lock().0 != DiskState::Ok {
                continue;
            }
            match write_header(s.disk.as_ref(), &h, i, &self.keys) {
                Ok(()) => written += 1,
                Err(e) => {
                    self.note_error(i);
                    *s.state.lock() = (
                        DiskState::Stale,
                        Some(format!("header rewrite failed: {e}")),
                    );
                    first_err.get_or_insert(e);
                }
            }
        }
        if written == 0 {
            return Err(
                first_err.unwrap_or_else(|| Error::Volume("no disk accepted the header".into()))
            );
        }
        *self.header.write() = h;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn slot(disk: Arc<dyn Disk>, state: DiskState, detail: Option<String>) -> Slot {
    Slot {
        disk,
        state: Mutex::new((state, detail)),
        counters: Default::default(),
    }
}
