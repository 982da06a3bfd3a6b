//! The compares every write of the schema is guarded by (etcd transactions).

use etcd_client::{Compare, CompareOp};

/// The key was not changed since it was read at `mod_revision` (a key that
/// does not exist compares with mod_revision 0).
pub fn unchanged(key: &str, mod_revision: i64) -> Compare {
    Compare::mod_revision(key, CompareOp::Equal, mod_revision)
}

/// The key does not exist.
pub fn absent(key: &str) -> Compare {
    Compare::create_revision(key, CompareOp::Equal, 0)
}

/// The key exists.
pub fn exists(key: &str) -> Compare {
    Compare::version(key, CompareOp::Greater, 0)
}

/// No key under `prefix` was created or changed after `revision` (a count
/// read at `revision` still holds, but for deletions).
pub fn none_newer(prefix: &str, revision: i64) -> Compare {
    Compare::mod_revision(prefix, CompareOp::Less, revision + 1).with_prefix()
}

/// What an agent's write about VIP `vip` (its owner, its ack) is guarded by:
/// the VIP still exists, so a deleted VIP is not brought back.
pub fn vip_exists(vip: &str) -> Compare {
    exists(&crate::keys::vip(vip))
}
