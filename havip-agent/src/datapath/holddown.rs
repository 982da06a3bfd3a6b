//! The owner records the split-brain damper reads and settles (see
//! [`crate::damping`]).

use havip_common::{maps, Owner, BPF_F_LOCK};
use log::warn;

use super::Datapath;

impl Datapath {
    /// The ids of the VIPs that have a slot here.
    pub fn vip_ids(&self) -> Vec<u32> {
        self.vip_slots.iter().map(|(vip_id, _)| vip_id).collect()
    }

    /// Vip `vip_id`'s owner record and its hold-down in nanoseconds.
    pub fn damped_owner(&self, vip_id: u32) -> Option<(Owner, u64)> {
        let vip = self
            .desired
            .vips
            .get(self.desired.vip_addrs.get(&vip_id)?)?;
        Some((self.owner(vip_id)?, u64::from(vip.hold_down_ms) * 1_000_000))
    }

    /// Writes `new` as vip `vip_id`'s owner record if the record is still
    /// `read` (no claim came in between; the window is the two syscalls of
    /// the check and the write). Whether it was written.
    pub fn replace_owner(&mut self, vip_id: u32, read: &Owner, new: &Owner) -> bool {
        let Some(slot) = self.vip_slots.get(vip_id) else {
            return false;
        };
        if self.owner_at(slot, vip_id).as_ref() != Some(read) {
            return false;
        }
        match self.owners.set(slot, *new, BPF_F_LOCK) {
            Ok(()) => true,
            Err(e) => {
                warn!(
                    "vip {vip_id}: cannot write its owner to {}: {e}",
                    maps::OWNERS
                );
                false
            }
        }
    }
}
