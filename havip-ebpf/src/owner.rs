//! Claims: who may announce a VIP, and learning its owner from the
//! announcement itself.

use aya_ebpf::helpers::{bpf_ktime_get_ns, bpf_spin_lock, bpf_spin_unlock};
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

/// The VIP's current owner, if it has one: a copy of its record, read
/// without the lock (the fast path never waits), and only if it is one
/// writer's whole record (its seal matches). A record being written is
/// taken for no owner: the frame goes by the bridge, or is judged as for a
/// VIP without an owner.
#[inline(always)]
pub fn current(vip: VipRef) -> Option<Owner> {
    let p = OWNERS.get(vip.slot)?;
    // Field by field: the verifier forbids reading the lock itself.
    let o = Owner {
        vip_id: p.vip_id,
        port_id: p.port_id,
        ifindex: p.ifindex,
        mac: p.mac,
        seal: p.seal,
        generation: p.generation,
        since_ns: p.since_ns,
        last_claim_ns: p.last_claim_ns,
        ..Owner::default()
    };
    (o.owns(vip.vip_id) && o.is_whole()).then_some(o)
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

    let Some(record) = OWNERS.get_ptr_mut(vip.slot) else {
        return;
    };
    // The record as it will be if the claim changes the owner, sealed
    // before the lock (no helper or function call while it is held).
    let mut owner = Owner {
        vip_id: vip.vip_id,
        port_id: from.port_id,
        ifindex: from.ifindex,
        mac,
        generation: 1,
        since_ns: now,
        last_claim_ns: now,
        ..Owner::default()
    };
    let (mac_hi, mac_lo) = owner.mac_words();
    // SAFETY: a map value pointer of a map whose values hold a lock; the
    // lock is taken and released below, with no call in between.
    let changed = unsafe {
        let r = &mut *record;
        let lock = core::ptr::addr_of_mut!(r.lock).cast();
        bpf_spin_lock(lock);
        let same = r.vip_id == vip.vip_id
            && r.port_id == from.port_id
            && r.ifindex == from.ifindex
            && r.mac_words() == (mac_hi, mac_lo);
        if same {
            r.last_claim_ns = now;
        } else {
            if r.vip_id == vip.vip_id {
                owner.generation = r.generation + 1;
            }
            owner.seal = owner.compute_seal();
            r.vip_id = owner.vip_id;
            r.port_id = owner.port_id;
            r.ifindex = owner.ifindex;
            r.mac = owner.mac;
            r.generation = owner.generation;
            r.since_ns = now;
            r.last_claim_ns = now;
            r.seal = owner.seal;
        }
        bpf_spin_unlock(lock);
        !same
    };
    if !changed {
        return;
    }
    let generation = owner.generation;
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
