//! Claims: who may announce a VIP, and learning its owner from the
//! announcement itself.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use havip_common::{DropReason, EventKind, NetworkAddr, Owner, Stat, Vip};

use crate::{
    counters::{count, count_vip_drop, vip_counters},
    maps::{EVENTS, OWNERS, REJECTS},
    vips::VipRef,
};

/// The port a frame came from, as the claim rules need it.
#[derive(Clone, Copy)]
pub struct Claimant {
    pub port_id: u32,
    pub ifindex: u32,
}

/// The VIP's current owner, if it has one: the map value itself, not a
/// copy (the datapath replaces an owner with `set`, never field by field).
#[inline(always)]
pub fn current(vip: VipRef) -> Option<&'static Owner> {
    OWNERS.get(vip.slot).filter(|o| o.owns(vip.vip_id))
}

/// Refuses a claim on `vip` (or a packet sourced from it) by a port that is
/// not bound to it: counts it for the VIP and reports it. A BPF function of
/// its own, like [`learn`], to keep its stack out of the callers'.
#[inline(never)]
pub fn reject(
    addr: &NetworkAddr,
    vip: &Vip,
    from: &Claimant,
    mac: [u8; 6],
    reason: DropReason,
) -> DropReason {
    count_vip_drop(vip.slot, reason);
    let now = unsafe { bpf_ktime_get_ns() };
    report(
        EventKind::ClaimRejected,
        reason as u32,
        addr,
        vip,
        from,
        mac,
        0,
        now,
    );
    reason
}

/// An accepted claim by a bound port: `from` announcing `mac` becomes the
/// VIP's owner. A repeated claim by the current owner only refreshes
/// `last_claim_ns`; a change bumps the generation and is reported.
#[inline(never)]
pub fn learn(addr: &NetworkAddr, vip: &Vip, from: &Claimant, mac: [u8; 6]) {
    let now = unsafe { bpf_ktime_get_ns() };
    count(Stat::ClaimsAccepted);
    let counters = vip_counters(vip.slot);
    if let Some(c) = counters {
        // SAFETY: per-CPU value.
        unsafe { (*c).claims_accepted += 1 };
    }

    let mut generation = 1;
    if let Some(current) = OWNERS.get_ptr_mut(vip.slot) {
        // SAFETY: a map value pointer; racing writers only race on
        // timestamps, the owner itself is replaced by `set` below.
        let current = unsafe { &mut *current };
        if current.vip_id == vip.vip_id {
            if current.port_id == from.port_id
                && current.ifindex == from.ifindex
                && current.mac == mac
            {
                current.last_claim_ns = now;
                return;
            }
            generation = current.generation + 1;
        }
    }

    let owner = Owner {
        vip_id: vip.vip_id,
        port_id: from.port_id,
        ifindex: from.ifindex,
        mac,
        _pad: [0; 6],
        generation,
        since_ns: now,
        last_claim_ns: now,
    };
    if OWNERS.set(vip.slot, owner, 0).is_err() {
        return;
    }
    count(Stat::OwnerChanges);
    if let Some(c) = counters {
        // SAFETY: per-CPU value.
        unsafe { (*c).owner_changes += 1 };
    }
    report(
        EventKind::OwnerChanged,
        0,
        addr,
        vip,
        from,
        mac,
        generation,
        now,
    );
}

/// Writes an event straight into its ring buffer (no copy on the stack):
/// owner changes to `havip_events`, rejected claims to `havip_rejects`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn report(
    kind: EventKind,
    reason: u32,
    addr: &NetworkAddr,
    vip: &Vip,
    from: &Claimant,
    mac: [u8; 6],
    generation: u64,
    ts_ns: u64,
) {
    let (entry, lost) = match kind {
        EventKind::OwnerChanged => (EVENTS.reserve(0), Stat::EventsLost),
        EventKind::ClaimRejected => (REJECTS.reserve(0), Stat::RejectsLost),
    };
    let Some(mut entry) = entry else {
        count(lost);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved, exclusively owned `Event` slot;
    // every field is written before submit.
    unsafe {
        (*e).kind = kind as u32;
        (*e).reason = reason;
        (*e).vip_id = vip.vip_id;
        (*e).port_id = from.port_id;
        (*e).ifindex = from.ifindex;
        (*e)._pad = 0;
        (*e).mac = mac;
        (*e)._pad2 = [0; 2];
        (*e).generation = generation;
        (*e).ts_ns = ts_ns;
        (*e).vip = *addr;
    }
    entry.submit(0);
}
