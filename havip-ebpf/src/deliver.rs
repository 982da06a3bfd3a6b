//! Delivery to the owner: a frame for a VIP goes to the port that owns it
//! now, whatever MAC the sender had cached.

use aya_ebpf::bindings::xdp_action;
use havip_common::{DropReason, NetworkAddr, Port, Stat};

use crate::{
    counters::{count, vip_counters},
    maps::REDIRECT,
    owner,
    packet::{set_dst_mac, Packet},
    vips,
};

/// For a frame from `port` to `dst`: when `dst` is a VIP with an owner on
/// another port, rewrites the destination MAC to the owner's and redirects
/// the frame to the owner's port when it is on this host. Returns the XDP
/// action, or `None` when the frame is not for a VIP with an owner.
#[inline(always)]
pub fn to_owner(pkt: &Packet, port: &Port, dst: &NetworkAddr) -> Result<Option<u32>, DropReason> {
    let Some(vip) = vips::find(dst) else {
        return Ok(None);
    };
    let Some(owner) = owner::current(vip) else {
        return Ok(None);
    };
    if owner.port_id == port.port_id {
        return Ok(None);
    }
    set_dst_mac(pkt, owner.mac)?;
    if let Some(c) = vip_counters(vip.slot) {
        // SAFETY: per-CPU value.
        unsafe { (*c).delivered += 1 };
    }
    if owner.ifindex != 0 {
        if let Ok(action) = REDIRECT.redirect(owner.ifindex, xdp_action::XDP_PASS as u64) {
            count(Stat::DeliveredToOwner);
            return Ok(Some(action));
        }
    }
    count(Stat::OwnerMacRewritten);
    Ok(Some(xdp_action::XDP_PASS))
}
