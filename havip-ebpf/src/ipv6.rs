//! IPv6: who may use a VIP or an address as source, and Neighbor Discovery
//! claims (NA target, NS source).

use havip_common::{counters::MAX_ND_OPTIONS, DropReason, NetworkAddr, Port};

use crate::{
    link_local,
    maps::SCRATCH,
    owner::{self, Claimant},
    packet::{Link, Packet},
    policy::{may_use_mac, own_ipv6_source, owns_ipv6},
    probe, vips,
    vrrp::{self, IPPROTO_VRRP},
};

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_MOBILITY: u8 = 135;
const IPPROTO_HIP: u8 = 139;
const IPPROTO_SHIM6: u8 = 140;

/// At most this many extension headers are walked to find ICMPv6.
const MAX_EXT_HEADERS: usize = 6;

const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_OPT_SOURCE_LINKADDR: u8 = 1;
const ND_OPT_TARGET_LINKADDR: u8 = 2;
/// "Solicited" flag of a Neighbor Advertisement.
const NA_FLAG_SOLICITED: u8 = 0x40;
/// ICMPv6 header (4) + NS/NA body (4 flags/reserved + 16 target).
const ND_LEN: usize = 24;
/// Offset of the target address in an NS or NA.
pub const ND_TARGET_OFFSET: usize = 8;
/// More than the furthest an extension header walk can reach (two VLAN
/// tags, the fixed header and [`MAX_EXT_HEADERS`] headers of at most 2048
/// bytes each).
const MAX_L4_OFFSET: usize = 0x3fff;

const UNSPECIFIED: [u8; 16] = [0; 16];

/// A Neighbor Solicitation or Advertisement, as its judgement and the
/// responder need it: where its fields are, not copies of them.
#[derive(Clone, Copy)]
pub struct Solicit {
    /// Offset of the ICMPv6 header (after any extension headers).
    pub l4: usize,
    /// Where the IPv6 payload (and the ND options) ends.
    pub end: usize,
    /// The IPv6 payload length: extension headers, ICMPv6 and options.
    pub payload_len: u16,
    /// Duplicate Address Detection: the source is ::.
    pub dad: bool,
}

/// What an IPv6 packet whose source may send it is, for the judgement
/// (of an NS or NA) and the decision that follow.
#[derive(Clone, Copy)]
pub enum Ipv6 {
    /// A Neighbor Solicitation ([`judge_solicit`]).
    Solicit(Solicit),
    /// A Neighbor Advertisement ([`judge_advert`]).
    Advert(Solicit),
    /// Anything else (its destination is at [`DST_OFFSET`]).
    Data,
}

/// Offsets in the fixed IPv6 header (the next header follows the payload
/// length).
pub const PAYLOAD_LEN_OFFSET: usize = 4;
pub const SRC_OFFSET: usize = 8;
pub const DST_OFFSET: usize = 24;
/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Whether `next_header` is an extension header (RFC 8200, 4; RFC 7045),
/// which an upper-layer header may follow.
#[inline(always)]
pub fn is_extension_header(next_header: u8) -> bool {
    matches!(
        next_header,
        IPPROTO_HOPOPTS
            | IPPROTO_ROUTING
            | IPPROTO_FRAGMENT
            | IPPROTO_AH
            | IPPROTO_DSTOPTS
            | IPPROTO_MOBILITY
            | IPPROTO_HIP
            | IPPROTO_SHIM6
    )
}

/// Judges an IPv6 packet from `port`.
#[inline(always)]
pub fn judge(pkt: &Packet, link: Link, port: &Port, from: &Claimant) -> Result<Ipv6, DropReason> {
    // Version and traffic class, flow label, payload length, next header,
    // hop limit: the whole fixed header is in the frame, but only the
    // fields the policy needs are read.
    pkt.at::<[u8; HEADER_LEN]>(link.l3())?;
    let first: [u8; 8] = pkt.read(link.l3())?;
    if first[0] >> 4 != 6 {
        return Err(DropReason::Malformed);
    }
    let payload_len =
        u16::from_be_bytes([first[PAYLOAD_LEN_OFFSET], first[PAYLOAD_LEN_OFFSET + 1]]);
    let payload_end = link.l3() + HEADER_LEN + payload_len as usize;
    let (nd_type, l4) = match icmpv6_offset(pkt, first[6], link.l3() + HEADER_LEN)? {
        Some(l4) => {
            // Type, code, checksum.
            let icmp: [u8; 4] = pkt.read(l4)?;
            (icmp[0], l4)
        }
        None => (0, 0),
    };
    let is_nd = nd_type == ND_NEIGHBOR_SOLICIT || nd_type == ND_NEIGHBOR_ADVERT;

    // The source: a VIP only from a bound port (an NS from a VIP is a
    // claim); otherwise, with port security, one of the port's addresses.
    // Read straight into the key (a byte array in registers would be
    // spilled byte by byte).
    let source = NetworkAddr::v6(port.network, pkt.ipv6(link.l3() + SRC_OFFSET)?);
    let src = &source.addr;
    // A port's own address is not a VIP: nothing more to check then.
    if !own_ipv6_source(port, src) {
        if let Some(vip) = vips::get(&source) {
            if !vip.is_bound(port.port_id) {
                let reason = if is_nd {
                    DropReason::ClaimNotBound
                } else {
                    DropReason::VipSourceNotBound
                };
                return Err(owner::reject(&source, vip, from, link.src_mac, reason));
            }
        } else if port.security() && *src != UNSPECIFIED && *src != port.link_local {
            link_local::judge_source(port, &source)?;
        }
    }

    let nd = Solicit {
        l4,
        end: payload_end,
        payload_len,
        dad: *src == UNSPECIFIED,
    };
    match nd_type {
        ND_NEIGHBOR_ADVERT => Ok(Ipv6::Advert(nd)),
        ND_NEIGHBOR_SOLICIT => Ok(Ipv6::Solicit(nd)),
        _ => {
            // VRRPv3 follows the fixed header (it has no reason for
            // extension headers).
            if first[6] == IPPROTO_VRRP {
                vrrp::judge_sent(port)?;
            }
            Ok(Ipv6::Data)
        }
    }
}

/// A Neighbor Advertisement: a claim when its target is a VIP.
#[inline(always)]
pub fn judge_advert(
    pkt: &Packet,
    link: Link,
    &Solicit { l4, end, .. }: &Solicit,
    port: &Port,
    from: &Claimant,
) -> Result<(), DropReason> {
    // Flags and reserved, then the target.
    let flags: [u8; 4] = pkt.read(l4 + 4)?;
    let target = pkt.ipv6(l4 + ND_TARGET_OFFSET)?;
    let link_addr = nd_link_addr(pkt, l4 + ND_LEN, end, ND_OPT_TARGET_LINKADDR, port)?;
    let mac = link_addr.unwrap_or(link.src_mac);

    let target = NetworkAddr::v6(port.network, target);
    if let Some(vip) = vips::get(&target) {
        if !vip.is_bound(port.port_id) {
            return Err(owner::reject(
                &target,
                vip,
                from,
                mac,
                DropReason::ClaimNotBound,
            ));
        }
        if flags[0] & NA_FLAG_SOLICITED == 0 {
            owner::learn(&target, vip, from, mac);
        }
        return Ok(());
    }
    if port.security()
        && target.addr != port.link_local
        && !owns_ipv6(port, &target.addr)
        && !link_local::holds(port, &target)
    {
        return Err(DropReason::NdSpoof);
    }
    Ok(())
}

/// A Neighbor Solicitation: with port security its source link-layer
/// addresses must be ones the port may use (its MAC, or a VRRP virtual MAC
/// of its VIPs). Duplicate Address Detection (`dad`: source ::) of a VIP is
/// a probe (`probe.rs`).
#[inline(always)]
pub fn judge_solicit(
    pkt: &Packet,
    link: Link,
    &Solicit { l4, end, dad, .. }: &Solicit,
    port: &Port,
    from: &Claimant,
) -> Result<(), DropReason> {
    // The target, which the responder reads.
    let target = pkt.ipv6(l4 + ND_TARGET_OFFSET)?;
    nd_link_addr(pkt, l4 + ND_LEN, end, ND_OPT_SOURCE_LINKADDR, port)?;
    if dad {
        probe::judge(
            &NetworkAddr::v6(port.network, target),
            port,
            from,
            link.src_mac,
        )?;
    }
    Ok(())
}

/// Walks the extension headers after the fixed IPv6 header to the upper
/// layer. Returns the offset of the ICMPv6 header, or `None` when the upper
/// layer is anything else (a non-first fragment has no upper-layer header).
///
/// It answers only "where is ICMPv6?", not "which protocol?": every protocol
/// number the walk stops at would otherwise be a range of its own to the
/// verifier, and everything after the walk would be verified once per range.
#[inline(always)]
fn icmpv6_offset(pkt: &Packet, first: u8, start: usize) -> Result<Option<usize>, DropReason> {
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(DropReason::Truncated)?;
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
                    return Ok(None);
                }
            }
            IPPROTO_ICMPV6 => return Ok(Some(off)),
            _ => return Ok(None),
        }
        // The offset goes through memory the verifier does not look into,
        // and comes back as any value up to the bound (which it never
        // exceeds): the walk then reaches the next header, and its end, in
        // one state whatever headers led there, instead of one state per
        // combination of header lengths (3^6 of them), each verified to the
        // end of the program.
        // SAFETY: this CPU's scratch word.
        off = unsafe {
            core::ptr::write_volatile(scratch, off as u64);
            core::ptr::read_volatile(scratch) as usize
        };
        if off > MAX_L4_OFFSET {
            return Err(DropReason::HeaderChainTooLong);
        }
    }
    match next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
            Err(DropReason::HeaderChainTooLong)
        }
        IPPROTO_ICMPV6 => Ok(Some(off)),
        _ => Ok(None),
    }
}

/// The link-layer address of the first option `kind` among the ND options
/// that start at `off` and end at `end`, if there is one. Every option is
/// walked and, with port security, every link-layer address of that kind
/// must be the port's MAC (`NdSpoof`); a message with more than
/// [`MAX_ND_OPTIONS`] options is not walked to its end and is dropped
/// (`NdTooManyOptions`).
#[inline(always)]
fn nd_link_addr(
    pkt: &Packet,
    mut off: usize,
    end: usize,
    kind: u8,
    port: &Port,
) -> Result<Option<[u8; 6]>, DropReason> {
    let mut first = None;
    for _ in 0..MAX_ND_OPTIONS {
        if off + 2 > end {
            return Ok(first);
        }
        let h: [u8; 2] = pkt.read(off)?;
        if h[1] == 0 {
            return Err(DropReason::Malformed);
        }
        if h[0] == kind {
            if h[1] != 1 {
                return Err(DropReason::Malformed);
            }
            let mac = pkt.mac(off + 2)?;
            if port.security() && !may_use_mac(port, &mac) {
                return Err(DropReason::NdSpoof);
            }
            first = first.or(Some(mac));
        }
        off += h[1] as usize * 8;
    }
    if off + 2 > end {
        Ok(first)
    } else {
        Err(DropReason::NdTooManyOptions)
    }
}
