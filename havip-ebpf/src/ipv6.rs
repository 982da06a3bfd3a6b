//! IPv6: who may use a VIP or an address as source, and Neighbor Discovery
//! claims (NA target, NS source).

use havip_common::{DropReason, NetworkAddr, Port};
use network_types::ip::Ipv6Hdr;

use crate::{
    maps::VIPS,
    owner::{self, Claimant},
    packet::{Link, Packet},
    policy::owns_address,
};

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_NONE: u8 = 59;
const IPPROTO_DSTOPTS: u8 = 60;

/// At most this many extension headers are walked to find ICMPv6.
const MAX_EXT_HEADERS: usize = 6;
/// At most this many ND options are walked to find a link-layer address.
const MAX_ND_OPTIONS: usize = 4;

const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_OPT_SOURCE_LINKADDR: u8 = 1;
const ND_OPT_TARGET_LINKADDR: u8 = 2;
/// "Solicited" flag of a Neighbor Advertisement.
const NA_FLAG_SOLICITED: u8 = 0x40;
/// ICMPv6 header (4) + NS/NA body (4 flags/reserved + 16 target).
const ND_LEN: usize = 24;

const UNSPECIFIED: [u8; 16] = [0; 16];

/// Judges an IPv6 packet from `port`.
#[inline(always)]
pub fn judge(pkt: &Packet, link: &Link, port: &Port, from: &Claimant) -> Result<(), DropReason> {
    let ip: Ipv6Hdr = pkt.read(link.l3)?;
    if ip.version() != 6 {
        return Err(DropReason::Malformed);
    }
    let payload_end = link.l3 + Ipv6Hdr::LEN + u16::from_be_bytes(ip.payload_len) as usize;
    let (proto, l4) = upper_layer(pkt, ip.next_hdr, link.l3 + Ipv6Hdr::LEN)?;
    let nd_type = if proto == IPPROTO_ICMPV6 {
        // Type, code, checksum.
        let icmp: [u8; 4] = pkt.read(l4)?;
        icmp[0]
    } else {
        0
    };
    let is_nd = nd_type == ND_NEIGHBOR_SOLICIT || nd_type == ND_NEIGHBOR_ADVERT;

    // The source: a VIP only from a bound port (an NS from a VIP is a
    // claim); otherwise, with port security, one of the port's addresses.
    let source = NetworkAddr::v6(port.network, ip.src_addr);
    // SAFETY: copied out at once.
    if let Some(vip) = unsafe { VIPS.get(&source) } {
        if !vip.is_bound(port.port_id) {
            let reason = if is_nd {
                DropReason::ClaimNotBound
            } else {
                DropReason::VipSourceNotBound
            };
            return Err(owner::reject(&source, vip, from, link.src_mac, reason));
        }
    } else if port.security()
        && ip.src_addr != UNSPECIFIED
        && ip.src_addr != port.link_local
        && !owns_address(port, &source)
    {
        return Err(DropReason::IpSpoof);
    }

    match nd_type {
        ND_NEIGHBOR_ADVERT => judge_advert(pkt, link, l4, payload_end, port, from),
        ND_NEIGHBOR_SOLICIT => judge_solicit(pkt, l4, payload_end, port),
        _ => Ok(()),
    }
}

/// A Neighbor Advertisement: a claim when its target is a VIP.
#[inline(always)]
fn judge_advert(
    pkt: &Packet,
    link: &Link,
    l4: usize,
    end: usize,
    port: &Port,
    from: &Claimant,
) -> Result<(), DropReason> {
    let na: [u8; ND_LEN] = pkt.read(l4)?;
    let mut target = [0u8; 16];
    target.copy_from_slice(&na[8..24]);
    let link_addr = nd_link_addr(pkt, l4 + ND_LEN, end, ND_OPT_TARGET_LINKADDR)?;
    if port.security() {
        if let Some(mac) = link_addr {
            if mac != port.mac {
                return Err(DropReason::NdSpoof);
            }
        }
    }
    let mac = link_addr.unwrap_or(link.src_mac);

    let target = NetworkAddr::v6(port.network, target);
    // SAFETY: copied out at once.
    if let Some(vip) = unsafe { VIPS.get(&target) } {
        if !vip.is_bound(port.port_id) {
            return Err(owner::reject(
                &target,
                vip,
                from,
                mac,
                DropReason::ClaimNotBound,
            ));
        }
        if na[4] & NA_FLAG_SOLICITED == 0 {
            owner::learn(&target, vip, from, mac);
        }
        return Ok(());
    }
    if port.security() && target.addr != port.link_local && !owns_address(port, &target) {
        return Err(DropReason::NdSpoof);
    }
    Ok(())
}

/// A Neighbor Solicitation: with port security its source link-layer
/// address must be the port's.
#[inline(always)]
fn judge_solicit(pkt: &Packet, l4: usize, end: usize, port: &Port) -> Result<(), DropReason> {
    pkt.at::<[u8; ND_LEN]>(l4)?;
    if !port.security() {
        return Ok(());
    }
    match nd_link_addr(pkt, l4 + ND_LEN, end, ND_OPT_SOURCE_LINKADDR)? {
        Some(mac) if mac != port.mac => Err(DropReason::NdSpoof),
        _ => Ok(()),
    }
}

/// Walks the extension headers after the fixed IPv6 header. Returns the
/// upper-layer protocol and its offset; a non-first fragment has no upper
/// layer header and yields `IPPROTO_NONE`.
#[inline(always)]
fn upper_layer(pkt: &Packet, first: u8, start: usize) -> Result<(u8, usize), DropReason> {
    let mut next = first;
    let mut off = start;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let h: [u8; 2] = pkt.read(off)?;
                next = h[0];
                off += (h[1] as usize + 1) * 8;
            }
            IPPROTO_AH => {
                let h: [u8; 2] = pkt.read(off)?;
                next = h[0];
                off += (h[1] as usize + 2) * 4;
            }
            IPPROTO_FRAGMENT => {
                let h: [u8; 4] = pkt.read(off)?;
                next = h[0];
                off += 8;
                if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                    return Ok((IPPROTO_NONE, off));
                }
            }
            _ => return Ok((next, off)),
        }
    }
    match next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
            Err(DropReason::HeaderChainTooLong)
        }
        _ => Ok((next, off)),
    }
}

/// The link-layer address option `kind` among the ND options that start at
/// `off` and end at `end`, if present.
#[inline(always)]
fn nd_link_addr(
    pkt: &Packet,
    mut off: usize,
    end: usize,
    kind: u8,
) -> Result<Option<[u8; 6]>, DropReason> {
    for _ in 0..MAX_ND_OPTIONS {
        if off + 2 > end {
            return Ok(None);
        }
        let h: [u8; 2] = pkt.read(off)?;
        if h[1] == 0 {
            return Err(DropReason::Malformed);
        }
        if h[0] == kind {
            if h[1] != 1 {
                return Err(DropReason::Malformed);
            }
            return Ok(Some(pkt.read(off + 2)?));
        }
        off += h[1] as usize * 8;
    }
    Ok(None)
}
