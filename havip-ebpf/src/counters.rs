//! Counting: every drop has a reason and a per-CPU counter; drops and claims
//! that concern a VIP are counted per VIP too.

use havip_common::{DropReason, Stat, VipCounters};

use crate::maps::{DROPS, STATS_MAP, VIP_STATS};

#[inline(always)]
pub fn count_drop(reason: DropReason) {
    if let Some(c) = DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
pub fn count(stat: Stat) {
    if let Some(c) = STATS_MAP.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *c += 1 };
    }
}

/// The calling CPU's counters of the VIP at `slot` (the agent zeroes a
/// slot before it gives it to a VIP).
#[inline(always)]
pub fn vip_counters(slot: u32) -> Option<*mut VipCounters> {
    VIP_STATS.get_ptr_mut(slot)
}

#[inline(always)]
pub fn count_vip_drop(slot: u32, reason: DropReason) {
    if let Some(c) = vip_counters(slot) {
        let i = reason as usize;
        // SAFETY: per-CPU value; `i` < DROP_REASONS <= VIP_DROP_SLOTS.
        unsafe {
            if let Some(d) = (*c).drops.get_mut(i) {
                *d += 1;
            }
        }
    }
}
