//! The havip datapath, on the hypervisor side of each VM port.
//!
//! `havip_port_ingress` (XDP) judges every frame a VM sends:
//! 1. Which port? One program serves every port: it finds the port by the
//!    interface the frame came in on (`maps::port_on`); an interface with
//!    no port (a port being set up or torn down) passes.
//! 2. Parse the link layer (Ethernet, up to two VLAN tags).
//! 3. Port security on the link layer: the source MAC must be the port's
//!    (or a VRRP virtual MAC of one of its VIPs, `policy.rs`), and a VLAN
//!    tag one the port allows (a priority tag, VLAN id 0, counts as none; a
//!    second tag with a VLAN id, QinQ, is never allowed).
//! 4. Classify by protocol and judge (claims and port security):
//!    - ARP (`arp.rs`): a sender IP that is a VIP is a claim, accepted only
//!      from a bound port; an accepted gratuitous request or reply makes the
//!      sender the VIP's owner. Otherwise the sender must be the port's own.
//!    - ARP probes (sender 0.0.0.0) for a VIP only from a bound port: a
//!      probe is a claim to be, and is never answered here.
//!    - IPv4 (`ipv4.rs`): a VIP source only from a bound port; otherwise the
//!      source must be the port's own. VRRP (`vrrp.rs`) only from a port
//!      bound to a VIP.
//!    - IPv6 (`ipv6.rs`): the same for sources, and a link-local source
//!      must be one the port holds (`link_local.rs`: its own, registered,
//!      or the one it used first, learned); a Neighbor Advertisement whose
//!      target is a VIP is a claim, and an unsolicited one from a bound
//!      port makes it the owner; every link-layer address option of an NS
//!      or NA must be one the port may use; a DAD Neighbor Solicitation
//!      (source ::) for a VIP only from a bound port; VRRP as for IPv4.
//! 5. Decide where what passed goes (the VIP fast path):
//!    - an ARP request or Neighbor Solicitation for a VIP with an owner is
//!      answered here with the owner's MAC (`responder.rs`), the answer
//!      sent back out of the port it came in on (`back_to_sender`);
//!    - a frame for a VIP goes to its owner (`deliver.rs`): the owner's MAC
//!      as destination, redirected straight to the owner's port when it is
//!      on this host (in native mode with its TCP/UDP checksum completed,
//!      `checksum.rs`), by the bridge when it is larger than that port's
//!      MTU;
//!    - everything else passes to the bridge.
//!
//! `havip_gw_in` and `havip_gw_out` (XDP, `gateway.rs`) are the EIP
//! gateway's, on a gateway host rather than a hypervisor.
//!
//! `havip_port_egress` (TC, `egress.rs`) catches frames for a VIP on their
//! way to a port that is not its owner and sends them to the owner, and
//! keeps VRRP from ports bound to no VIP.
//!
//! Every drop names a `DropReason` and is counted per CPU (and per VIP when
//! it concerns one). No input makes a program abort.
#![no_std]
#![no_main]

mod arp;
mod checksum;
mod counters;
mod deliver;
mod egress;
mod gateway;
mod ipv4;
mod ipv6;
mod link_local;
mod maps;
mod nat;
mod owner;
mod packet;
mod policy;
mod probe;
mod responder;
mod vips;
mod vrrp;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use havip_common::{DropReason, NetworkAddr, Port, Stat};

use crate::{
    counters::{count, count_drop},
    ipv6::{Ipv6, Solicit},
    maps::{port_on, REDIRECT},
    owner::Claimant,
    packet::{parse_ethernet, Link, Packet, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6},
    policy::check_source_mac,
};

#[xdp]
pub fn havip_port_ingress(ctx: XdpContext) -> u32 {
    // 1. Which port?
    let ifindex = ctx.ingress_ifindex() as u32;
    let Some(port) = port_on(ifindex) else {
        count(Stat::UnknownPort);
        return xdp_action::XDP_PASS;
    };
    let from = Claimant {
        port_id: port.port_id,
        ifindex,
    };

    // 2. Parse.
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let (ethertype, vlan, link) = match parse_ethernet(&pkt) {
        Ok(eth) => (eth.ethertype, eth.vlan, eth.link),
        Err(reason) => return verdict(Err(reason)),
    };

    // 3. Port security on the link layer: the port's MAC (or a VRRP
    //    virtual MAC of its VIPs), a VLAN the port allows.
    if port.security() {
        if let Err(reason) = check_source_mac(port, &link.src_mac) {
            return verdict(Err(reason));
        }
        if !port.allows_vlan(vlan) {
            return verdict(Err(DropReason::VlanNotAllowed));
        }
    }

    // 4. Judge, then 5. decide, by protocol.
    match ethertype {
        ETH_P_ARP => on_arp(ctx, link, port, from),
        ETH_P_IP => on_ipv4(&ctx, &pkt, link, port, &from),
        ETH_P_IPV6 => on_ipv6(ctx, link, port, from),
        _ => verdict(Ok(None)),
    }
}

/// ARP. This and IPv6 are BPF functions of their own: each is verified
/// with the entry's state, and only one of their stacks is in use at a
/// time. They take the context and the claimant by value, which keeps both
/// out of the entry's stack.
#[inline(never)]
fn on_arp(ctx: XdpContext, link: Link, port: &Port, from: Claimant) -> u32 {
    verdict((|| {
        let pkt = Packet::frame(ctx.data(), ctx.data_end())?;
        let request = arp::judge(&pkt, link, port, &from)?;
        Ok(responder::arp(&pkt, link, &request, port)?.then(|| back_to_sender(&from)))
    })())
}

/// IPv4, the common case: inlined into the entry. A BPF function call
/// costs about 9 ns where every return goes through a mitigation thunk
/// (Safe RET against SRSO on AMD Zen), nearly what the rest of a non-VIP
/// frame's judgement costs.
#[inline(always)]
fn on_ipv4(ctx: &XdpContext, pkt: &Packet, link: Link, port: &Port, from: &Claimant) -> u32 {
    verdict((|| {
        let dst = ipv4::judge(pkt, link, port, from)?;
        deliver::to_owner(ctx, pkt, port, &dst, || {
            checksum::ipv4(XdpContext::new(ctx.ctx), link.l3())
        })
    })())
}

/// IPv6, Neighbor Discovery included: the source judged, then an NS or NA
/// judged, then the decision, each a BPF function of its own called from
/// the entry, so that no two of their frames are on the stack together
/// (as one function they were over the verifier's 512 bytes for a chain of
/// calls).
#[inline(always)]
fn on_ipv6(ctx: XdpContext, link: Link, port: &Port, from: Claimant) -> u32 {
    match judge_ipv6(XdpContext::new(ctx.ctx), link, port, &from) {
        Ok(Ipv6::Solicit(nd)) => on_solicit(ctx, link, &nd, port, &from),
        Ok(Ipv6::Advert(nd)) => on_advert(ctx, link, &nd, port, &from),
        Ok(Ipv6::Data) => deliver_ipv6(ctx, link, port),
        Err(reason) => verdict(Err(reason)),
    }
}

/// The IPv6 source, and what the packet is.
#[inline(never)]
fn judge_ipv6(
    ctx: XdpContext,
    link: Link,
    port: &Port,
    from: &Claimant,
) -> Result<Ipv6, DropReason> {
    let pkt = Packet::frame(ctx.data(), ctx.data_end())?;
    ipv6::judge(&pkt, link, port, from)
}

/// A Neighbor Advertisement: a claim when its target is a VIP.
#[inline(never)]
fn on_advert(ctx: XdpContext, link: Link, nd: &Solicit, port: &Port, from: &Claimant) -> u32 {
    verdict((|| {
        let pkt = Packet::frame(ctx.data(), ctx.data_end())?;
        ipv6::judge_advert(&pkt, link, nd, port, from).map(|()| None)
    })())
}

/// A Neighbor Solicitation: judged, then, for a VIP with an owner,
/// answered here.
#[inline(never)]
fn on_solicit(ctx: XdpContext, link: Link, nd: &Solicit, port: &Port, from: &Claimant) -> u32 {
    verdict((|| {
        let pkt = Packet::frame(ctx.data(), ctx.data_end())?;
        ipv6::judge_solicit(&pkt, link, nd, port, from)?;
        Ok(responder::neighbor(&ctx, &pkt, link, nd, port)?.then(|| back_to_sender(from)))
    })())
}

/// IPv6 for a VIP: to its owner.
#[inline(never)]
fn deliver_ipv6(ctx: XdpContext, link: Link, port: &Port) -> u32 {
    verdict((|| {
        let pkt = Packet::frame(ctx.data(), ctx.data_end())?;
        let dst = pkt.ipv6(link.l3() + ipv6::DST_OFFSET)?;
        deliver::to_owner(
            &ctx,
            &pkt,
            port,
            &NetworkAddr::v6(port.network, dst),
            || checksum::ipv6(XdpContext::new(ctx.ctx), link.l3()),
        )
    })())
}

/// Sends an answer back to the VM it came from: a redirect to the port
/// itself through the devmap, or `XDP_TX` when the port is not in it.
/// The redirect is not a detour: on a veth port, `XDP_TX` queues the frame
/// for the VM's side but only wakes that side when it runs an XDP program
/// of its own (`veth_xdp_flush`), so the answer would wait for unrelated
/// traffic; a devmap transmit flushes. On a tap both reach the VM at once.
#[inline(always)]
fn back_to_sender(from: &Claimant) -> u32 {
    REDIRECT
        .redirect(from.ifindex, xdp_action::XDP_TX as u64)
        .unwrap_or_else(|fallback| fallback)
}

/// The XDP action for a judged frame: `None` passes it on to the bridge
/// unchanged, `Some` is the fast path's own action, and every drop is
/// counted by its reason.
#[inline(always)]
fn verdict(judged: Result<Option<u32>, DropReason>) -> u32 {
    match judged {
        Ok(Some(action)) => action,
        Ok(None) => {
            count(Stat::Passed);
            xdp_action::XDP_PASS
        }
        Err(reason) => {
            count_drop(reason);
            xdp_action::XDP_DROP
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
