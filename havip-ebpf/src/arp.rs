//! ARP: claims of IPv4 VIPs and ARP port security.

use havip_common::{DropReason, NetworkAddr, Port};

use crate::{
    owner::{self, Claimant},
    packet::{Link, Packet},
    policy::{may_use_mac, own_ipv4_source},
    probe, vips,
};

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// Offsets in an ARP packet (Ethernet/IPv4).
pub const ARP_OPER: usize = 6;
pub const ARP_SHA: usize = 8;
pub const ARP_SPA: usize = 14;
pub const ARP_THA: usize = 18;
pub const ARP_TPA: usize = 24;
const ARP_LEN: usize = 28;

/// Hardware type Ethernet, protocol type IPv4, their address lengths: the
/// first six bytes of every ARP packet havip judges.
const ETHERNET_IPV4: [u8; 6] = [0, 1, 0x08, 0x00, 6, 4];

/// An ARP packet, as the policy and the responder need it.
#[derive(Clone, Copy)]
pub struct Arp {
    pub op: u16,
    /// Sender hardware and protocol address.
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    /// Target protocol address.
    pub tpa: [u8; 4],
}

/// Parses an Ethernet/IPv4 ARP request or reply.
#[inline(always)]
pub fn parse(pkt: &Packet, l3: usize) -> Result<Arp, DropReason> {
    // The header is checked once, whole, and every field is read through
    // that one checked pointer: a field pointer computed again from `l3`
    // is one Linux 6.1's verifier knows no bounds of, once LLVM has dropped
    // the field's own check as implied by the whole header's.
    let p = pkt.at::<[u8; ARP_LEN]>(l3)? as *const u8;
    // SAFETY: every read is within the ARP_LEN bytes checked above;
    // unaligned loads are allowed for packet memory (see `Packet::load`).
    let (hw, op, sha, spa, tpa) = unsafe {
        let word = |off: usize| core::ptr::read(p.add(off) as *const u32).to_ne_bytes();
        let half = |off: usize| core::ptr::read(p.add(off) as *const u16).to_ne_bytes();
        let ([a, b, c, d], [e, f]) = (word(0), half(4));
        let ([s0, s1, s2, s3], [s4, s5]) = (word(ARP_SHA), half(ARP_SHA + 4));
        (
            [a, b, c, d, e, f],
            u16::from_be_bytes(half(ARP_OPER)),
            [s0, s1, s2, s3, s4, s5],
            word(ARP_SPA),
            word(ARP_TPA),
        )
    };
    if hw != ETHERNET_IPV4 || (op != ARP_REQUEST && op != ARP_REPLY) {
        return Err(DropReason::Malformed);
    }
    Ok(Arp { op, sha, spa, tpa })
}

/// Judges an ARP packet from `port`; returns it when it may pass.
///
/// - The sender is a VIP: only a bound port may send it, and a gratuitous
///   request (sender IP == target IP) or any reply makes it the owner.
/// - A probe (sender 0.0.0.0) whose target is a VIP: only from a bound
///   port (it is not learned, and the responder does not answer it).
/// - Otherwise, with port security, the sender MAC and IP must be the
///   port's own (0.0.0.0 is allowed for probes).
#[inline(always)]
pub fn judge(pkt: &Packet, link: Link, port: &Port, from: &Claimant) -> Result<Arp, DropReason> {
    let arp = parse(pkt, link.l3())?;
    if port.security() && !may_use_mac(port, &arp.sha) {
        return Err(DropReason::ArpSpoof);
    }

    if own_ipv4_source(port, arp.spa) {
        return Ok(arp);
    }
    let sender = NetworkAddr::v4(port.network, arp.spa);
    if let Some(vip) = vips::get(&sender) {
        if !vip.is_bound(port.port_id) {
            return Err(owner::reject(
                &sender,
                vip,
                from,
                arp.sha,
                DropReason::ClaimNotBound,
            ));
        }
        if arp.op == ARP_REPLY || arp.spa == arp.tpa {
            owner::learn(&sender, vip, from, arp.sha);
        }
        return Ok(arp);
    }

    if arp.spa == [0; 4] {
        let target = NetworkAddr::v4(port.network, arp.tpa);
        probe::judge(&target, port, from, arp.sha)?;
        return Ok(arp);
    }
    if port.security() {
        return Err(DropReason::ArpSpoof);
    }
    Ok(arp)
}
