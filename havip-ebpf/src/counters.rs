//! Counting: every drop has a reason and a per-CPU counter; drops and claims
//! that concern a VIP are counted per VIP too.

use aya_ebpf::bindings::BPF_NOEXIST;
use havip_common::{counters::DROP_REASONS, DropReason, Stat, VipCounters};

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

/// A VIP's counters before anything happened: the value a new entry starts
/// from, kept out of the stack (it is 112 bytes).
static NO_VIP_COUNTERS: VipCounters = VipCounters {
    claims_accepted: 0,
    owner_changes: 0,
    answered: 0,
    delivered: 0,
    drops: [0; DROP_REASONS],
};

/// The calling CPU's counters of `vip_id`, created on first use.
#[inline(always)]
pub fn vip_counters(vip_id: u32) -> Option<*mut VipCounters> {
    if let Some(c) = VIP_STATS.get_ptr_mut(vip_id) {
        return Some(c);
    }
    let _ = VIP_STATS.insert(vip_id, &NO_VIP_COUNTERS, BPF_NOEXIST as u64);
    VIP_STATS.get_ptr_mut(vip_id)
}

#[inline(always)]
pub fn count_vip_drop(vip_id: u32, reason: DropReason) {
    if let Some(c) = vip_counters(vip_id) {
        let i = reason as usize;
        // SAFETY: per-CPU value; `i` < DROP_REASONS by construction.
        unsafe {
            if let Some(d) = (*c).drops.get_mut(i) {
                *d += 1;
            }
        }
    }
}
