//! POSIX ACLs, kept as the `system.posix_acl_access` / `system.posix_acl_default` xattrs in the kernel's encoding.
//!
//! The kernel enforces them (FUSE_POSIX_ACL with `default_permissions`); the filesystem keeps them consistent with
//! the mode, as ext4 does: an access ACL that says no more than the mode is not stored (its bits go into the mode),
//! chmod rewrites the owner, mask (or group) and other entries, and new nodes inherit a parent's default ACL with
//! the umask ignored. These are the rules of the kernel's `posix_acl_update_mode`, `posix_acl_chmod` and
//! `posix_acl_create`.

use crate::error::{Error, Result};

pub const ACCESS: &[u8] = b"system.posix_acl_access";
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// A parsed, valid ACL (entries in the canonical order the kernel requires).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl(Vec<Entry>);

fn bad(why: &str) -> Error {
    Error::Invalid(format!("POSIX ACL: {why}"))
}

impl Acl {
    /// Decodes and validates an xattr value (as `posix_acl_valid`: one owner, group and other entry, named
    /// entries sorted and unique, a mask whenever there are named entries).
    pub fn parse(b: &[u8]) -> Result<Acl> {
        if b.len() < 4 || (b.len() - 4) % 8 != 0 {
            return Err(bad("bad length"));
        }
        if u32::from_le_bytes(b[0..4].try_into().unwrap()) != VERSION {
            return Err(bad("unknown version"));
        }
        let entries: Vec<Entry> = b[4..]
            .chunks_exact(8)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes(e[4..8].try_into().unwrap()),
            })
            .collect();
        let order = |tag| match tag {
            USER_OBJ => Some(0),
            USER => Some(1),
            GROUP_OBJ => Some(2),
            GROUP => Some(3),
            MASK => Some(4),
            OTHER => Some(5),
            _ => None,
        };
        let mut count = [0usize; 6];
        let mut prev: Option<&Entry> = None;
        for e in &entries {
            let o = order(e.tag).ok_or_else(|| bad("unknown tag"))?;
            if e.perm & !7 != 0 {
                return Err(bad("bad permission bits"));
            }
            if let Some(p) = prev {
                let po = order(p.tag).unwrap();
                if o < po || (o == po && (!matches!(e.tag, USER | GROUP) || e.id <= p.id)) {
                    return Err(bad("entries out of order or repeated"));
                }
            }
            count[o] += 1;
            prev = Some(e);
        }
        if count[0] != 1 || count[2] != 1 || count[5] != 1 {
            return Err(bad("needs exactly one owner, group and other entry"));
        }
        if count[1] + count[3] > 0 && count[4] != 1 {
            return Err(bad("named entries need a mask"));
        }
        Ok(Acl(entries))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = VERSION.to_le_bytes().to_vec();
        for e in &self.0 {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            let id = if matches!(e.tag, USER | GROUP) {
                e.id
            } else {
                UNDEFINED_ID
            };
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// The rwx bits (0o777) this ACL grants, and whether the mode alone says as much (`posix_acl_equiv_mode`):
    /// then no ACL needs storing.
    pub fn mode(&self) -> (u32, bool) {
        let mut mode = 0;
        let mut equiv = true;
        for e in &self.0 {
            let p = e.perm as u32;
            match e.tag {
                USER_OBJ => mode |= p << 6,
                GROUP_OBJ => mode |= p << 3,
                OTHER => mode |= p,
                MASK => {
                    mode = (mode & !0o070) | (p << 3);
                    equiv = false;
                }
                _ => equiv = false,
            }
        }
        (mode, equiv)
    }

    /// After a chmod: the owner, mask (or group when there is no mask) and other entries take the new bits.
    pub fn chmod(&mut self, mode: u32) {
        let has_mask = self.0.iter().any(|e| e.tag == MASK);
        for e in &mut self.0 {
            match e.tag {
                USER_OBJ => e.perm = ((mode >> 6) & 7) as u16,
                OTHER => e.perm = (mode & 7) as u16,
                MASK => e.perm = ((mode >> 3) & 7) as u16,
                GROUP_OBJ if !has_mask => e.perm = ((mode >> 3) & 7) as u16,
                _ => {}
            }
        }
    }

    /// Turns a parent's default ACL into a new node's access ACL for a requested `mode` (`posix_acl_create_masq`):
    /// the owner, mask (or group) and other entries and the mode's bits are intersected. Returns the new rwx bits
    /// and whether the access ACL must be stored (it says more than the mode).
    pub fn create_masq(&mut self, mode: u32) -> (u32, bool) {
        let mut mode = mode & 0o777;
        let mut not_equiv = false;
        let has_mask = self.0.iter().any(|e| e.tag == MASK);
        for e in &mut self.0 {
            match e.tag {
                USER_OBJ => {
                    e.perm &= ((mode >> 6) & 7) as u16;
                    mode &= ((e.perm as u32) << 6) | !0o700;
                }
                USER | GROUP => not_equiv = true,
                OTHER => {
                    e.perm &= (mode & 7) as u16;
                    mode &= (e.perm as u32) | !0o007;
                }
                MASK => not_equiv = true,
                _ => {}
            }
        }
        for e in &mut self.0 {
            if e.tag == MASK || (e.tag == GROUP_OBJ && !has_mask) {
                e.perm &= ((mode >> 3) & 7) as u16;
                mode &= ((e.perm as u32) << 3) | !0o070;
            }
        }
        (mode, not_equiv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        Acl(entries
            .iter()
            .map(|&(tag, perm, id)| Entry { tag, perm, id })
            .collect())
        .encode()
    }

    #[test]
    fn parse_validates_and_round_trips() {
        let minimal = acl(&[(USER_OBJ, 6, 0), (GROUP_OBJ, 4, 0), (OTHER, 0, 0)]);
        let a = Acl::parse(&minimal).unwrap();
        assert_eq!(a.encode(), minimal);
        assert_eq!(a.mode(), (0o640, true));
        let named = acl(&[
            (USER_OBJ, 7, 0),
            (USER, 6, 1000),
            (GROUP_OBJ, 5, 0),
            (MASK, 6, 0),
            (OTHER, 0, 0),
        ]);
        assert_eq!(Acl::parse(&named).unwrap().mode(), (0o760, false));
        // Named entry without a mask, out of order, missing other, bad version.
        for bad in [
            acl(&[
                (USER_OBJ, 7, 0),
                (USER, 6, 1),
                (GROUP_OBJ, 5, 0),
                (OTHER, 0, 0),
            ]),
            acl(&[(GROUP_OBJ, 5, 0), (USER_OBJ, 7, 0), (OTHER, 0, 0)]),
            acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 5, 0)]),
            {
                let mut v = minimal.clone();
                v[0] = 1;
                v
            },
        ] {
            assert!(Acl::parse(&bad).is_err());
        }
    }

    #[test]
    fn chmod_and_create_follow_the_kernel_rules() {
        let mut a = Acl::parse(&acl(&[
            (USER_OBJ, 7, 0),
            (USER, 7, 1000),
            (GROUP_OBJ, 7, 0),
            (MASK, 7, 0),
            (OTHER, 5, 0),
        ]))
        .unwrap();
        let mut b = a.clone();
        a.chmod(0o640);
        assert_eq!(a.mode(), (0o640, false));
        // The group entry keeps its bits; the mask takes the group bits.
        assert!(a.0.iter().any(|e| e.tag == GROUP_OBJ && e.perm == 7));
        assert_eq!(b.create_masq(0o666), (0o664, true));
        assert!(b.0.iter().any(|e| e.tag == MASK && e.perm == 6));
        assert!(b.0.iter().any(|e| e.tag == USER && e.perm == 7));
    }
}
