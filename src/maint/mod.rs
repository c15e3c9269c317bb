//! Maintenance of an unmounted (or quiescent) volume: keyless scrub and repair, metadata fsck, garbage
//! collection of unreferenced chunks, disk replacement with rebuild, and the status report.
//!
//! Each operation is a library function over the chunk store (`crate::store`) and/or the metadata database
//! (`crate::meta::Meta` in the state directory) that returns a typed, `serde`-serializable report; the CLI only
//! prints them. Nothing here needs the FUSE mount.

pub mod fsck;
pub mod gc;
pub mod integrity;
pub mod replace;
pub mod scrub;
pub mod status;

use std::path::Path;

use crate::error::{Error, Result};
use crate::meta::Meta;

/// File name of the metadata database inside a state directory (as `Fs::start` creates it).
pub const META_FILE: &str = "meta.redb";

/// Opens the metadata database of the state directory `state_dir` for maintenance. A mounted volume holds the
/// database's lock: that case becomes a clear `Error::Volume` saying to unmount first.
pub fn open_meta(state_dir: &Path) -> Result<Meta> {
    let path = state_dir.join(META_FILE);
    if !path.exists() {
        return Err(Error::Volume(format!(
            "{}: no metadata database (wrong state directory, or the volume was never mounted)",
            path.display()
        )));
    }
    Meta::open(&path).map_err(|e| match e {
        Error::Volume(msg) if msg.contains("in use") => Error::Volume(format!(
            "{msg}: the volume is mounted (or another maintenance command runs); unmount it first"
        )),
        e => e,
    })
}
