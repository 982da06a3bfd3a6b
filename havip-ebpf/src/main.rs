//! The havip datapath: an XDP program on the hypervisor side of each VM
//! port, judging every frame the VM sends.
//!
//! The policy, top to bottom:
//! 1. Which port? A frame on an interface havip does not manage passes.
//! 2. Parse the link layer (Ethernet, up to two VLAN tags).
//! 3. Port security: the source MAC must be the port's.
//! 4. Classify by protocol and decide:
//!    - ARP (`arp.rs`): a sender IP that is a VIP is a claim, accepted only
//!      from a bound port; an accepted gratuitous request or reply makes the
//!      sender the VIP's owner. Otherwise the sender must be the port's own.
//!    - IPv4 (`ipv4.rs`): a VIP source only from a bound port; otherwise the
//!      source must be the port's own.
//!    - IPv6 (`ipv6.rs`): the same for sources; a Neighbor Advertisement
//!      whose target is a VIP is a claim, and an unsolicited one from a
//!      bound port makes it the owner.
//!
//! Every drop names a `DropReason` and is counted per CPU (and per VIP when
//! it concerns one). No input makes the program return `XDP_ABORTED`.
#![no_std]
#![no_main]

mod arp;
mod counters;
mod ipv4;
mod ipv6;
mod maps;
mod owner;
mod packet;
mod policy;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use havip_common::{DropReason, Stat};

use crate::{
    counters::{count, count_drop},
    maps::PORTS,
    owner::Claimant,
    packet::{parse_link, Packet, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6},
};

#[xdp]
pub fn havip_port_ingress(ctx: XdpContext) -> u32 {
    match port_ingress(&ctx) {
        Ok(()) => xdp_action::XDP_PASS,
        Err(reason) => {
            count_drop(reason);
            xdp_action::XDP_DROP
        }
    }
}

fn port_ingress(ctx: &XdpContext) -> Result<(), DropReason> {
    // 1. Which port?
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: copied out at once; the agent may replace the entry.
    let Some(port) = (unsafe { PORTS.get(&ifindex) }) else {
        count(Stat::UnknownPort);
        return Ok(());
    };
    let port = *port;
    let from = Claimant {
        port_id: port.port_id,
        ifindex,
    };

    // 2. Parse.
    let pkt = Packet::new(ctx);
    let link = parse_link(&pkt)?;

    // 3. Port security on the link layer.
    if port.security() && link.src_mac != port.mac {
        return Err(DropReason::MacSpoof);
    }

    // 4. Classify and decide.
    match link.ethertype {
        ETH_P_ARP => arp::judge(&pkt, &link, &port, &from)?,
        ETH_P_IP => ipv4::judge(&pkt, &link, &port, &from)?,
        ETH_P_IPV6 => ipv6::judge(&pkt, &link, &port, &from)?,
        _ => {}
    }
    count(Stat::Passed);
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
