//! The ARP/ND responder: a request for a VIP is answered here, on the
//! requester's own port, with the current owner's MAC, instead of being
//! flooded. Requests by the owner itself, probes (sender 0.0.0.0), DAD
//! (source ::) and claims are never answered: they pass.

use aya_ebpf::{helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use havip_common::{DropReason, NetworkAddr, Owner, Port, Stat};

use crate::{
    arp::{Arp, ARP_OPER, ARP_REPLY, ARP_REQUEST, ARP_SHA, ARP_SPA, ARP_THA, ARP_TPA},
    counters::{count, vip_counters},
    ipv6::{self, Solicit},
    owner,
    packet::{set_macs, Link, Packet},
    vips::{self, VipRef},
};

const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOR_ADVERT: u8 = 136;
/// Solicited | Override.
const NA_FLAGS: u8 = 0x60;
const ND_OPT_TARGET_LINKADDR: u8 = 2;
/// ICMPv6 header, NA body and one target link-layer address option.
const NA_LEN: usize = 32;

/// The owner of the VIP at `addr`, unless `port` is the owner itself.
#[inline(always)]
fn owner_for_others(addr: &NetworkAddr, port: &Port) -> Option<(VipRef, Owner)> {
    let vip = vips::find(addr)?;
    let owner = owner::current(vip)?;
    if owner.port_id == port.port_id {
        return None;
    }
    Some((vip, owner))
}

#[inline(always)]
fn answered(vip: VipRef, stat: Stat) {
    count(stat);
    if let Some(c) = vip_counters(vip.slot) {
        // SAFETY: per-CPU value.
        unsafe { (*c).answered += 1 };
    }
}

/// Turns an ARP request for a VIP into the reply, in place. Returns whether
/// it did (the caller then sends the frame back to the requester).
#[inline(always)]
pub fn arp(pkt: &Packet, link: Link, request: &Arp, port: &Port) -> Result<bool, DropReason> {
    if request.op != ARP_REQUEST || request.spa == request.tpa || request.spa == [0; 4] {
        return Ok(false);
    }
    let Some((vip, owner)) = owner_for_others(&NetworkAddr::v4(port.network, request.tpa), port)
    else {
        return Ok(false);
    };
    // The header's fixed part (hardware/protocol types and lengths) stays.
    let (sha, spa, tpa) = (request.sha, request.spa, request.tpa);
    let l3 = link.l3();
    pkt.store(l3 + ARP_OPER, ARP_REPLY.to_be())?;
    pkt.set_mac(l3 + ARP_SHA, owner.mac)?;
    pkt.store(l3 + ARP_SPA, u32::from_ne_bytes(tpa))?;
    pkt.set_mac(l3 + ARP_THA, sha)?;
    pkt.store(l3 + ARP_TPA, u32::from_ne_bytes(spa))?;
    set_macs(pkt, link.src_mac, owner.mac)?;
    answered(vip, Stat::ArpAnswered);
    Ok(true)
}

/// Replaces a Neighbor Solicitation for a VIP by the Neighbor
/// Advertisement (Solicited, Override, target link-layer address = the
/// owner's MAC), resizing the frame as needed and writing it in place.
/// Returns whether it did. A BPF function of its own, so that its stack is
/// not added to the claim paths' (`owner::learn` below `ipv6::judge`).
#[inline(never)]
pub fn neighbor(
    ctx: &XdpContext,
    pkt: &Packet,
    link: Link,
    solicit: &Solicit,
    port: &Port,
) -> Result<bool, DropReason> {
    // The addresses as two words each, held in registers (as byte arrays
    // they would take 32 stack slots).
    let source: [u64; 2] = [
        pkt.load(link.l3() + ipv6::SRC_OFFSET)?,
        pkt.load(link.l3() + ipv6::SRC_OFFSET + 8)?,
    ];
    if source == [0; 2] {
        return Ok(false);
    }
    let target: [u64; 2] = [
        pkt.load(solicit.l4 + ipv6::ND_TARGET_OFFSET)?,
        pkt.load(solicit.l4 + ipv6::ND_TARGET_OFFSET + 8)?,
    ];
    // SAFETY: `[u64; 2]` and `[u8; 16]` have the same size, any bits valid.
    let target_addr: [u8; 16] = unsafe { core::mem::transmute(target) };
    let Some((vip, owner)) = owner_for_others(&NetworkAddr::v6(port.network, target_addr), port)
    else {
        return Ok(false);
    };
    let mac = owner.mac;

    // The solicitation's own length, from its IPv6 header (pointer
    // arithmetic on the frame's end is not allowed to BPF programs).
    let delta = NA_LEN as i32 - solicit.payload_len as i32;
    // SAFETY: the helper checks the new length against the frame's room.
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return Ok(false);
    }
    let pkt = Packet::frame(ctx.data(), ctx.data_end())?;

    // IPv6 header: version 6, payload length, ICMPv6, hop limit 255, from
    // the target to the soliciting node.
    let ip = link.l3();
    let header = [0x60u8, 0, 0, 0, 0, NA_LEN as u8, IPPROTO_ICMPV6, 255];
    pkt.store(ip, u64::from_ne_bytes(header))?;
    pkt.store(ip + ipv6::SRC_OFFSET, target[0])?;
    pkt.store(ip + ipv6::SRC_OFFSET + 8, target[1])?;
    pkt.store(ip + ipv6::DST_OFFSET, source[0])?;
    pkt.store(ip + ipv6::DST_OFFSET + 8, source[1])?;
    // ICMPv6: the NA, then the target link-layer address option.
    let na = ip + ipv6::HEADER_LEN;
    let sum = na_checksum(&target, &source, &mac);
    let [sum_hi, sum_lo] = sum.to_be_bytes();
    let icmp = [ND_NEIGHBOR_ADVERT, 0, sum_hi, sum_lo, NA_FLAGS, 0, 0, 0];
    pkt.store(na, u64::from_ne_bytes(icmp))?;
    pkt.store(na + ipv6::ND_TARGET_OFFSET, target[0])?;
    pkt.store(na + ipv6::ND_TARGET_OFFSET + 8, target[1])?;
    pkt.store(na + 24, u16::from_ne_bytes([ND_OPT_TARGET_LINKADDR, 1]))?;
    pkt.set_mac(na + 26, mac)?;

    set_macs(&pkt, link.src_mac, mac)?;
    answered(vip, Stat::NdAnswered);
    Ok(true)
}

/// The ICMPv6 checksum of the NA [`neighbor`] writes, from `src` to `dst`
/// (addresses as read from the frame in native-order words),
/// pseudo-header included (RFC 8200 section 8.1).
#[inline(always)]
fn na_checksum(src: &[u64; 2], dst: &[u64; 2], mac: &[u8; 6]) -> u16 {
    let word = |hi: u8, lo: u8| u16::from_be_bytes([hi, lo]) as u32;
    // The sum of the four 16-bit words of 8 bytes of an address.
    let words = |w: u64| {
        let w = u64::from_be(w);
        ((w >> 48) & 0xffff) as u32
            + ((w >> 32) & 0xffff) as u32
            + ((w >> 16) & 0xffff) as u32
            + (w & 0xffff) as u32
    };
    // Pseudo-header length and next header, then the NA's fixed words:
    // type/code, flags, option type/length.
    let mut sum: u32 = NA_LEN as u32 + IPPROTO_ICMPV6 as u32;
    sum += word(ND_NEIGHBOR_ADVERT, 0) + word(NA_FLAGS, 0) + word(ND_OPT_TARGET_LINKADDR, 1);
    // The source and destination, and the target (= the source) again.
    sum += 2 * (words(src[0]) + words(src[1])) + words(dst[0]) + words(dst[1]);
    sum += word(mac[0], mac[1]) + word(mac[2], mac[3]) + word(mac[4], mac[5]);
    // Two folds always suffice for this many words (and a loop here is one
    // the verifier cannot prove ends).
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
