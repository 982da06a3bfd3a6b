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

/// What an accepted claim did to the VIP's owner record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// The owner announcing itself again: `last_claim_ns` refreshed.
    Repeated,
    /// Another port took the VIP over (the first change after a quiet
    /// hold-down, a vacant VIP, or a damping the VIP does not have).
    Changed,
    /// Another port claimed within the hold-down: recorded as the pending
    /// claim, the owner unchanged. `first`: the port had not claimed within
    /// the hold-down before (the agent is told, to watch the VIP).
    Deferred { first: bool },
}

/// An accepted claim by a bound port: `from` announcing `mac` becomes the
/// VIP's owner. A repeated claim by the current owner only refreshes
/// `last_claim_ns`; a change bumps the generation and is reported. Split
/// brain is damped, never frozen: a claim by another port within the VIP's
/// hold-down of the last change is deferred (recorded as the pending claim
/// and counted); the next claim after the hold-down, or the agent when
/// nobody claims again, applies the latest one. Only a local owner's VIP
/// is damped: a remote owner's record says when this host learned it, not
/// when it was claimed, and that host damps its own ports.
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
    let hold_down_ns = vip.hold_down_ms as u64 * 1_000_000;
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
    let claim = unsafe {
        let r = &mut *record;
        let lock = core::ptr::addr_of_mut!(r.lock).cast();
        bpf_spin_lock(lock);
        let ours = r.vip_id == vip.vip_id;
        let same = ours
            && r.port_id == from.port_id
            && r.ifindex == from.ifindex
            && r.mac_words() == (mac_hi, mac_lo);
        let claim = if same {
            r.last_claim_ns = now;
            r.pending = 0;
            Claim::Repeated
        } else if ours
            && r.port_id != 0
            && r.ifindex != 0
            && r.port_id != from.port_id
            && now.wrapping_sub(r.since_ns) < hold_down_ns
        {
            let first = r.rival_port_id != from.port_id
                || now.wrapping_sub(r.rival_claim_ns) >= hold_down_ns;
            set_rival(r, from.port_id, from.ifindex, mac, now);
            r.pending = 1;
            owner.generation = r.generation;
            Claim::Deferred { first }
        } else {
            if ours {
                owner.generation = r.generation + 1;
                // The owner taken over from is the rival: if it claims
                // again within the hold-down, that is a split brain.
                let (port_id, ifindex, mac, at) = (r.port_id, r.ifindex, r.mac, r.last_claim_ns);
                set_rival(r, port_id, ifindex, mac, at);
            } else {
                set_rival(r, 0, 0, [0; 6], 0);
            }
            owner.seal = owner.compute_seal();
            r.vip_id = owner.vip_id;
            r.port_id = owner.port_id;
            r.ifindex = owner.ifindex;
            r.mac = owner.mac;
            r.generation = owner.generation;
            r.since_ns = now;
            r.last_claim_ns = now;
            r.pending = 0;
            r.seal = owner.seal;
            Claim::Changed
        };
        bpf_spin_unlock(lock);
        claim
    };
    let generation = owner.generation;
    let kind = match claim {
        Claim::Repeated => return,
        Claim::Deferred { first } => {
            count(Stat::ClaimsDeferred);
            if let Some(c) = counters {
                // SAFETY: per-CPU value.
                unsafe { (*c).claims_deferred += 1 };
            }
            if !first {
                return;
            }
            EventKind::ClaimDeferred
        }
        Claim::Changed => {
            count(Stat::OwnerChanges);
            if let Some(c) = counters {
                // SAFETY: per-CPU value.
                unsafe { (*c).owner_changes += 1 };
            }
            EventKind::OwnerChanged
        }
    };
    report(kind, 0, addr, vip, from, mac, generation, now);
}

/// Records the rival of `r`'s owner. Inlined: it runs under the record's
/// lock, where no call may be made.
#[inline(always)]
fn set_rival(r: &mut Owner, port_id: u32, ifindex: u32, mac: [u8; 6], claim_ns: u64) {
    r.rival_port_id = port_id;
    r.rival_ifindex = ifindex;
    r.rival_mac = mac;
    r.rival_claim_ns = claim_ns;
}

/// Writes an event straight into its ring buffer (no copy on the stack):
/// owner changes and deferred claims to `havip_events`, rejected claims
/// to `havip_rejects`.
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
        EventKind::OwnerChanged | EventKind::ClaimDeferred => (EVENTS.reserve(0), Stat::EventsLost),
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
