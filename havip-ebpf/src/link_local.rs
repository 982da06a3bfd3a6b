//! IPv6 link-locals: which ones a port may use as a source (and announce
//! as an NA target).
//!
//! A port may use, besides its own link-local (in its entry, the EUI-64 of
//! its MAC unless the operator gave another):
//! - the link-locals registered for it, which the agent keeps in
//!   `havip_addrs` with its fixed addresses (every port's own link-local is
//!   there too, so no other port can take it);
//! - one more, the first it uses that no port holds (a guest's
//!   stable-privacy or random interface id): learned here and held for the
//!   port in `havip_lladdrs` until the agent resets it.
//!
//! Learning takes the port's one place in `havip_llports` first, then the
//! address in `havip_lladdrs`, each inserted only if absent
//! (`BPF_NOEXIST`): of two ports using one address the first holds it, and
//! a port that holds a learned link-local learns no second one.

use aya_ebpf::bindings::BPF_NOEXIST;
use havip_common::{DropReason, NetworkAddr, Port, Stat};

use crate::{
    counters::count,
    maps::{ADDRS, LL_ADDRS, LL_PORTS},
};

/// Whether `addr` is an IPv6 link-local unicast address (fe80::/10).
#[inline(always)]
pub fn is_link_local(addr: &[u8; 16]) -> bool {
    addr[0] == 0xfe && addr[1] & 0xc0 == 0x80
}

/// Judges `source`, an address the port has not as its own link-local or
/// fixed address and that is no VIP, for a port with port security: a
/// link-local registered for the port or held by it passes; one another
/// port registered is a spoof, one another port learned is taken; any
/// other link-local is learned for the port, if it has none learned yet.
#[inline(always)]
pub fn judge_source(port: &Port, source: &NetworkAddr) -> Result<(), DropReason> {
    if !is_link_local(&source.addr) {
        return Err(DropReason::IpSpoof);
    }
    // SAFETY (both lookups): the values are u32s, copied out at once.
    if let Some(id) = unsafe { ADDRS.get(source) } {
        return if *id == port.port_id {
            Ok(())
        } else {
            Err(DropReason::IpSpoof)
        };
    }
    if let Some(id) = unsafe { LL_ADDRS.get(source) } {
        return if *id == port.port_id {
            Ok(())
        } else {
            Err(DropReason::LinkLocalTaken)
        };
    }
    learn(port.port_id, source)
}

/// Whether `port` may announce `addr` (an NA target): one of its
/// registered link-locals or the one it learned.
#[inline(always)]
pub fn holds(port: &Port, addr: &NetworkAddr) -> bool {
    if !is_link_local(&addr.addr) {
        return false;
    }
    // SAFETY: u32 values, read at once.
    let held = |id: Option<&u32>| id.is_some_and(|id| *id == port.port_id);
    held(unsafe { ADDRS.get(addr) }) || held(unsafe { LL_ADDRS.get(addr) })
}

/// Learns `addr` for the port `port_id`: the port's one place first,
/// then the address. A BPF function of its own: learning is rare, and its
/// keys stay off the IPv6 path's stack (near the verifier's limit).
#[inline(never)]
fn learn(port_id: u32, addr: &NetworkAddr) -> Result<(), DropReason> {
    if LL_PORTS.insert(&port_id, addr, BPF_NOEXIST as u64).is_err() {
        // It holds a learned link-local already: this one is not its.
        return Err(DropReason::IpSpoof);
    }
    if LL_ADDRS.insert(addr, &port_id, BPF_NOEXIST as u64).is_err() {
        // Another port took it in the meantime.
        let _ = LL_PORTS.remove(&port_id);
        return Err(DropReason::LinkLocalTaken);
    }
    count(Stat::LinkLocalsLearned);
    Ok(())
}
