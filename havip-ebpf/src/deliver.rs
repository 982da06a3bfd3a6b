//! Delivery to the owner: a frame for a VIP goes to the port that owns it
//! now, whatever MAC the sender had cached.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use havip_common::{DropReason, NetworkAddr, Port, Stat};

use crate::{
    checksum::{fits_port, Finish},
    counters::{count, vip_counters},
    maps::{completes_checksums, REDIRECT},
    owner,
    packet::{set_dst_mac, Packet},
    vips,
};

/// For a frame from `port` to `dst`: when `dst` is a VIP with an owner on
/// another port, rewrites the destination MAC to the owner's and redirects
/// the frame to the owner's port when it is on this host. A frame larger
/// than its port's MTU (a segmentation offload frame) goes by the
/// bridge instead, offload intact: a redirect would drop it. In native
/// mode `finish` first readies the frame's checksum for the redirect
/// (`checksum.rs`), or sends it by the bridge too. Returns the XDP action,
/// or `None` when the frame is not for a VIP with an owner.
#[inline(always)]
pub fn to_owner(
    ctx: &XdpContext,
    pkt: &Packet,
    port: &Port,
    dst: &NetworkAddr,
    finish: impl FnOnce() -> Result<Finish, DropReason>,
) -> Result<Option<u32>, DropReason> {
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
    let (action, stat) = decide(ctx, owner.ifindex, finish)?;
    if let Some(c) = vip_counters(vip.slot) {
        // SAFETY: per-CPU value.
        unsafe { (*c).delivered += 1 };
    }
    count(stat);
    Ok(Some(action))
}

/// Redirect to the owner's port at `ifindex`, or pass to the bridge (with
/// the owner's MAC, already written), and the stat that counts it.
#[inline(always)]
fn decide(
    ctx: &XdpContext,
    ifindex: u32,
    finish: impl FnOnce() -> Result<Finish, DropReason>,
) -> Result<(u32, Stat), DropReason> {
    const PASS: u32 = xdp_action::XDP_PASS;
    if ifindex == 0 {
        // The owner is on another host.
        return Ok((PASS, Stat::OwnerMacRewritten));
    }
    if !fits_port(ctx) {
        return Ok((PASS, Stat::OffloadViaBridge));
    }
    let Ok(redirect) = REDIRECT.redirect(ifindex, PASS as u64) else {
        // The owner's port is not a redirect target (yet, or any more).
        return Ok((PASS, Stat::OwnerMacRewritten));
    };
    // The checksum last: it is only completed for a frame that is
    // redirected (a frame passed on keeps its offload, which expects the
    // pseudo-header's sum).
    if completes_checksums() && finish()? == Finish::Bridge {
        return Ok((PASS, Stat::OffloadViaBridge));
    }
    Ok((redirect, Stat::DeliveredToOwner))
}
