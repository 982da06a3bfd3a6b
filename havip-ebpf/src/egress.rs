//! `havip_port_egress`: frames on their way to a VM (TC egress on the
//! hypervisor side of its port), from the bridge, the uplink or the host.
//!
//! A frame for a VIP that reaches a port other than the VIP's owner is sent
//! to the owner instead (a client with a stale ARP entry), or dropped when
//! the owner gets its own copy (a flooded frame) or the port may not
//! receive the VIP's traffic at all (not bound). On the owner's port the
//! destination MAC is made the owner's. Everything else, and anything this
//! program cannot parse, passes: egress never drops what it does not judge.
//! VRRP reaches only ports bound to a VIP (`vrrp.rs`).

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_redirect,
    macros::classifier,
    programs::TcContext,
};
use havip_common::{vmac::is_virtual_mac, DropReason, NetworkAddr, Port, Stat};

use crate::{
    counters::{count, count_drop, count_vip_drop, vip_counters},
    ipv4, ipv6,
    maps::port_on,
    owner,
    packet::{is_group, parse_ethernet, set_dst_mac, Packet, ETH_P_IP, ETH_P_IPV6},
    policy::is_port_mac,
    vips,
    vrrp::{self, IPPROTO_VRRP},
};

/// Enough of a frame to reach an IPv6 destination behind two VLAN tags.
const HEADERS: u32 = 14 + 8 + 40;

#[classifier]
pub fn havip_port_egress(ctx: TcContext) -> i32 {
    match port_egress(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            count_drop(reason);
            TC_ACT_SHOT
        }
    }
}

fn port_egress(ctx: &TcContext) -> Result<i32, DropReason> {
    // SAFETY: a field of the socket buffer the program runs on: the
    // interface the frame is leaving by.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(port) = port_on(ifindex) else {
        return Ok(TC_ACT_OK);
    };
    // The headers are usually in the linear part already; pulling costs a
    // helper call per frame, so only when they are not.
    let wanted = HEADERS.min(ctx.len());
    if ctx.data() + wanted as usize > ctx.data_end() {
        let _ = ctx.pull_data(wanted);
    }
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let Ok(Some(Bound {
        link_dst,
        dst,
        protocol,
    })) = destination(&pkt, port)
    else {
        return Ok(TC_ACT_OK);
    };
    // The election is for the VIPs' ports only, multicast or not.
    if protocol == IPPROTO_VRRP {
        vrrp::judge_received(port)?;
    }
    if is_group(&link_dst) {
        return Ok(TC_ACT_OK);
    }
    let Some(found) = vips::find(&dst) else {
        return Ok(TC_ACT_OK);
    };

    match owner::current(found) {
        // The owner's own port: make sure the VM accepts the frame.
        Some(o) if o.port_id == port.port_id => {
            if link_dst != o.mac {
                set_dst_mac(&pkt, o.mac)?;
            }
            Ok(TC_ACT_OK)
        }
        // Sent here by this port's MAC (a stale ARP entry), or by the
        // owner's virtual MAC, which both members of a VRRP pair send
        // from (the bridge may have learned it here): to the owner,
        // never back out of the port the frame came from (nor this one).
        Some(o)
            if (is_port_mac(port, &link_dst)
                || (is_virtual_mac(&link_dst) && link_dst == o.mac))
                && o.ifindex != 0
                && !is_return(ctx, o.ifindex) =>
        {
            set_dst_mac(&pkt, o.mac)?;
            count(Stat::EgressRedirected);
            if let Some(c) = vip_counters(found.slot) {
                // SAFETY: per-CPU value.
                unsafe { (*c).delivered += 1 };
            }
            // SAFETY: plain helper call; the result is a TC action.
            Ok(unsafe { bpf_redirect(o.ifindex, 0) } as i32)
        }
        // No owner yet: the bound ports may receive it.
        None if vips::get(&dst).is_some_and(|vip| vip.is_bound(port.port_id)) => Ok(TC_ACT_OK),
        // A flooded copy (the owner gets its own), or a port that is not
        // bound to the VIP: it must not see the VIP's traffic.
        _ => {
            count_vip_drop(found.slot, DropReason::NotOwner);
            Err(DropReason::NotOwner)
        }
    }
}

/// Whether sending to `ifindex` would send the frame back where it came
/// from, or out of this port again.
#[inline(always)]
fn is_return(ctx: &TcContext, ifindex: u32) -> bool {
    // SAFETY: reads of the context the kernel passed.
    let (came_from, this) = unsafe { ((*ctx.skb.skb).ingress_ifindex, (*ctx.skb.skb).ifindex) };
    ifindex == came_from || ifindex == this
}

/// Where an IP frame is bound.
struct Bound {
    link_dst: [u8; 6],
    dst: NetworkAddr,
    /// The IPv4 protocol, or the next header after the fixed IPv6 header.
    protocol: u8,
}

/// The destination MAC, IP and protocol of a frame, if it is IP.
#[inline(always)]
fn destination(pkt: &Packet, port: &Port) -> Result<Option<Bound>, DropReason> {
    let eth = parse_ethernet(pkt)?;
    let l3 = eth.link.l3();
    let (dst, protocol) = match eth.ethertype {
        ETH_P_IP => {
            let [_, protocol]: [u8; 2] = pkt.read(l3 + ipv4::TTL_OFFSET)?;
            let dst = pkt.ipv4(l3 + ipv4::DST_OFFSET)?;
            (NetworkAddr::v4(port.network, dst), protocol)
        }
        ETH_P_IPV6 => {
            let [_, _, protocol, _]: [u8; 4] = pkt.read(l3 + ipv6::PAYLOAD_LEN_OFFSET)?;
            let dst = pkt.ipv6(l3 + ipv6::DST_OFFSET)?;
            (NetworkAddr::v6(port.network, dst), protocol)
        }
        _ => return Ok(None),
    };
    Ok(Some(Bound {
        link_dst: eth.dst_mac,
        dst,
        protocol,
    }))
}
