//! Slots: where the datapath keeps a port or a VIP in its arrays. The
//! programs of a port are loaded with the port's slot in `havip_ports`; a
//! VIP's owner and counters sit at its slot in `havip_owners` and
//! `havip_vipstats`; the VIP filter points at VIPs by address bucket. The
//! agent hands slots out and takes them back here. Everything here is
//! pure, so it is unit-tested on any host.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use havip_common::{vip::hint_bucket, NetworkAddr, Vip, VipHint};

/// Which key holds which slot, out of `capacity`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots {
    held: BTreeMap<u32, u32>,
    capacity: u32,
}

/// What [`Slots::assign`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Keys that got a slot now: (key, slot). Their slot must be reset
    /// (for them) before anything points at it.
    pub fresh: Vec<(u32, u32)>,
    /// Keys that gave their slot back: (key, slot). A freed slot may be
    /// among the fresh ones too, given to a new key in the same step.
    pub freed: Vec<(u32, u32)>,
    /// Keys that wanted a slot and found none free.
    pub full: Vec<u32>,
}

impl Assignment {
    /// The freed slots that no key took again: they are reset to nobody.
    /// A freed slot handed to a new key is reset once, for that key (see
    /// [`Assignment::fresh`]), never wiped after.
    pub fn vacant(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let retaken: BTreeSet<u32> = self.fresh.iter().map(|(_, s)| *s).collect();
        self.freed
            .iter()
            .filter(move |(_, slot)| !retaken.contains(slot))
            .copied()
    }
}

impl Slots {
    pub fn new(capacity: u32) -> Self {
        Self {
            held: BTreeMap::new(),
            capacity,
        }
    }

    /// How many slots there are.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Slots as found in the maps (say, after a restart): `(key, slot)`.
    /// A slot out of range, or one a key before it took, is not kept.
    pub fn recovered(capacity: u32, pairs: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let mut slots = Self::new(capacity);
        let mut taken = BTreeSet::new();
        for (key, slot) in pairs {
            if slot < capacity && taken.insert(slot) {
                slots.held.insert(key, slot);
            }
        }
        slots
    }

    pub fn get(&self, key: u32) -> Option<u32> {
        self.held.get(&key).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.held.iter().map(|(k, s)| (*k, *s))
    }

    /// The free slots, lowest first, as of now.
    fn free_slots(&self) -> impl Iterator<Item = u32> {
        let used: BTreeSet<u32> = self.held.values().copied().collect();
        (0..self.capacity).filter(move |s| !used.contains(s))
    }

    /// Takes `key`'s slot back.
    pub fn give_back(&mut self, key: u32) -> Option<u32> {
        self.held.remove(&key)
    }

    /// Exactly `keys` hold slots afterwards (as far as there are slots):
    /// keys that stay keep theirs, the others give theirs back first, then
    /// new keys take the lowest free ones.
    pub fn assign(&mut self, keys: &BTreeSet<u32>) -> Assignment {
        let mut a = Assignment::default();
        let gone: Vec<u32> = self
            .held
            .keys()
            .filter(|k| !keys.contains(k))
            .copied()
            .collect();
        for key in gone {
            let slot = self.held.remove(&key).expect("listed above");
            a.freed.push((key, slot));
        }
        // One pass over the free slots for every new key (a host's
        // thousands of VIPs at start, not a scan of the held ones each).
        let mut free = self.free_slots();
        let new: Vec<u32> = keys
            .iter()
            .filter(|k| !self.held.contains_key(k))
            .copied()
            .collect();
        for key in new {
            match free.next() {
                Some(slot) => a.fresh.push((key, slot)),
                None => a.full.push(key),
            }
        }
        self.held.extend(a.fresh.iter().copied());
        a
    }
}

/// The VIP filter's buckets that hold something, for `vips` (whose `slot`
/// fields are set): one VIP in a bucket is held there, more make it shared.
pub fn vip_filter(vips: &HashMap<NetworkAddr, Vip>) -> BTreeMap<u32, VipHint> {
    let mut filter: BTreeMap<u32, VipHint> = BTreeMap::new();
    for (addr, vip) in vips {
        let hint = filter.entry(hint_bucket(addr)).or_default();
        *hint = hint.with(addr, vip);
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;
    use havip_common::vip::{HINT_BUCKETS, HINT_ONE, HINT_SHARED};

    fn keys(k: &[u32]) -> BTreeSet<u32> {
        k.iter().copied().collect()
    }

    #[test]
    fn keys_keep_their_slots_and_new_ones_take_the_lowest_free() {
        let mut s = Slots::new(4);
        let a = s.assign(&keys(&[10, 20, 30]));
        assert_eq!(a.fresh, vec![(10, 0), (20, 1), (30, 2)]);
        let a = s.assign(&keys(&[10, 30, 40]));
        assert_eq!(a.freed, vec![(20, 1)]);
        assert_eq!(a.fresh, vec![(40, 1)]);
        assert_eq!(
            (s.get(10), s.get(30), s.get(40)),
            (Some(0), Some(2), Some(1))
        );
    }

    #[test]
    fn a_full_table_says_which_keys_got_none() {
        let mut s = Slots::new(2);
        let a = s.assign(&keys(&[1, 2, 3]));
        assert_eq!(a.fresh.len(), 2);
        assert_eq!(a.full, vec![3]);
    }

    /// A full table where one key leaves and others come, in one step: the
    /// freed slot goes to the lowest new key, reset for it and not wiped
    /// after; the keys that do not fit are named; what stays keeps its
    /// slot; a later step with room gives the waiting key a slot.
    #[test]
    fn a_freed_slot_goes_to_a_new_key_in_the_same_step_and_is_not_wiped() {
        struct Case {
            what: &'static str,
            before: &'static [u32],
            after: &'static [u32],
            fresh: &'static [(u32, u32)],
            freed: &'static [(u32, u32)],
            vacant: &'static [(u32, u32)],
            full: &'static [u32],
        }
        let cases = [
            Case {
                what: "full: one out, two in",
                before: &[1, 2, 3],
                after: &[1, 3, 4, 5],
                fresh: &[(4, 1)],
                freed: &[(2, 1)],
                vacant: &[],
                full: &[5],
            },
            Case {
                what: "full: two out, one in",
                before: &[1, 2, 3],
                after: &[3, 4],
                fresh: &[(4, 0)],
                freed: &[(1, 0), (2, 1)],
                vacant: &[(2, 1)],
                full: &[],
            },
            Case {
                what: "full: everything replaced",
                before: &[1, 2, 3],
                after: &[7, 8, 9, 10],
                fresh: &[(7, 0), (8, 1), (9, 2)],
                freed: &[(1, 0), (2, 1), (3, 2)],
                vacant: &[],
                full: &[10],
            },
            Case {
                what: "room: nothing freed",
                before: &[1],
                after: &[1, 2],
                fresh: &[(2, 1)],
                freed: &[],
                vacant: &[],
                full: &[],
            },
            Case {
                what: "only leaving",
                before: &[1, 2],
                after: &[],
                fresh: &[],
                freed: &[(1, 0), (2, 1)],
                vacant: &[(1, 0), (2, 1)],
                full: &[],
            },
        ];
        for c in cases {
            let mut s = Slots::new(3);
            s.assign(&keys(c.before));
            let held: Vec<(u32, u32)> = s.iter().collect();
            let a = s.assign(&keys(c.after));
            assert_eq!(a.fresh, c.fresh, "{}: fresh", c.what);
            assert_eq!(a.freed, c.freed, "{}: freed", c.what);
            assert_eq!(
                a.vacant().collect::<Vec<_>>(),
                c.vacant,
                "{}: vacant",
                c.what
            );
            assert_eq!(a.full, c.full, "{}: full", c.what);
            for (key, slot) in held.iter().filter(|(k, _)| c.after.contains(k)) {
                assert_eq!(s.get(*key), Some(*slot), "{}: {key} kept its slot", c.what);
            }
        }
        // The key that did not fit gets a slot once one is free.
        let mut s = Slots::new(3);
        s.assign(&keys(&[1, 2, 3]));
        assert_eq!(s.assign(&keys(&[1, 3, 4, 5])).full, vec![5]);
        let a = s.assign(&keys(&[3, 4, 5]));
        assert_eq!((a.fresh, a.full), (vec![(5, 0)], vec![]));
    }

    #[test]
    fn recovered_slots_drop_duplicates_and_out_of_range() {
        let s = Slots::recovered(4, [(1, 0), (2, 0), (3, 9), (4, 3)]);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(1, 0), (4, 3)]);
    }

    #[test]
    fn the_filter_holds_a_lone_vip_and_marks_shared_buckets() {
        let vip = |id, slot| Vip {
            vip_id: id,
            slot,
            ..Vip::default()
        };
        // Find two addresses in one bucket, and one alone.
        let base = NetworkAddr::v4(1, [10, 0, 6, 1]);
        let twin = (2..=255u8)
            .flat_map(|c| (0..=255u8).map(move |d| NetworkAddr::v4(1, [10, 0, c, d])))
            .find(|a| *a != base && hint_bucket(a) == hint_bucket(&base))
            .expect("some address shares a bucket");
        let alone = NetworkAddr::v6(1, [0xfd; 16]);
        let vips = HashMap::from([(base, vip(1, 0)), (twin, vip(2, 1)), (alone, vip(3, 2))]);
        let f = vip_filter(&vips);
        assert_eq!(f.len(), 2);
        assert_eq!(f[&hint_bucket(&base)].state, HINT_SHARED);
        let lone = f[&hint_bucket(&alone)];
        assert_eq!(
            (lone.state, lone.vip_id, lone.slot, lone.addr),
            (HINT_ONE, 3, 2, alone)
        );
        assert!(f.keys().all(|b| *b < HINT_BUCKETS));
    }
}
