//! 1:1 address translation for the EIP gateway: one address of a packet
//! replaced, and every checksum that covers it updated incrementally
//! (RFC 1624): the IPv4 header's, the TCP, UDP and ICMPv6 checksums (their
//! pseudo-header holds the address), and, in an ICMP error, the address
//! in the packet it quotes with that packet's IPv4 header checksum and the
//! ICMP checksum over it.
//!
//! A TCP or UDP checksum left to the offload (the field holds the
//! pseudo-header's sum: a socket buffer marked partial, as a local sender
//! or a VM on a veth hands over) is updated as such, so whoever finishes
//! it gets the sum of the new pseudo-header; a complete one stays
//! complete. Frames from a wire always carry complete ones.

use havip_common::DropReason;

use crate::{checksum::fold, ipv4, ipv6, packet::Packet};

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPV4_CHECK_OFFSET: usize = 10;
const IPV4_FRAGMENT_MASK: u16 = 0x1fff;
const TCP_CHECK_OFFSET: usize = 16;
const UDP_CHECK_OFFSET: usize = 6;
const ICMP_CHECK_OFFSET: usize = 2;
/// The packet an ICMP error quotes starts after the ICMP header.
const ICMP_QUOTE_OFFSET: usize = 8;

/// Which address of the packet is replaced: the destination of a packet
/// coming in to an EIP (and the source of the packet an ICMP error
/// quotes, which went out from it), or the source of a packet going out
/// from a VIP (and the destination of the quoted one).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Destination,
    Source,
}

impl Side {
    #[inline(always)]
    fn ipv4_offset(self) -> usize {
        match self {
            Side::Destination => ipv4::DST_OFFSET,
            Side::Source => ipv4::SRC_OFFSET,
        }
    }

    /// The offset of the quoted packet's address: the other side.
    #[inline(always)]
    fn quoted_ipv4_offset(self) -> usize {
        match self {
            Side::Destination => ipv4::SRC_OFFSET,
            Side::Source => ipv4::DST_OFFSET,
        }
    }

    #[inline(always)]
    fn ipv6_offset(self) -> usize {
        match self {
            Side::Destination => ipv6::DST_OFFSET,
            Side::Source => ipv6::SRC_OFFSET,
        }
    }

    #[inline(always)]
    fn quoted_ipv6_offset(self) -> usize {
        match self {
            Side::Destination => ipv6::SRC_OFFSET,
            Side::Source => ipv6::DST_OFFSET,
        }
    }
}

/// Replaces `side`'s address of the IPv4 packet at `l3` (its header
/// `header_len` bytes long) with `new`.
#[inline(always)]
pub fn ipv4(
    pkt: &Packet,
    l3: usize,
    header_len: usize,
    side: Side,
    new: [u8; 4],
) -> Result<(), DropReason> {
    let field = l3 + side.ipv4_offset();
    let old: u32 = pkt.load(field)?;
    let new = u32::from_ne_bytes(new);
    let total_len = u16::from_be(pkt.load(l3 + ipv4::TOTAL_LEN_OFFSET)?) as usize;
    let fragment = u16::from_be(pkt.load(l3 + ipv4::FRAGMENT_OFFSET)?);
    let [_ttl, protocol]: [u8; 2] = pkt.read(l3 + ipv4::TTL_OFFSET)?;
    if total_len < header_len {
        return Err(DropReason::Malformed);
    }
    // The pseudo-header's sum, with the old address, tells a partial
    // TCP/UDP checksum from a complete one.
    let segment_len = (total_len - header_len) as u32;
    let src: u32 = pkt.load(l3 + ipv4::SRC_OFFSET)?;
    let dst: u32 = pkt.load(l3 + ipv4::DST_OFFSET)?;
    let pseudo = src as u64
        + dst as u64
        + u32::from_ne_bytes([0, protocol, (segment_len >> 8) as u8, segment_len as u8]) as u64;

    pkt.store(field, new)?;
    let check = l3 + IPV4_CHECK_OFFSET;
    pkt.store(check, replaced(pkt.load(check)?, old, new))?;

    // A later fragment holds no layer-4 header.
    if fragment & IPV4_FRAGMENT_MASK != 0 {
        return Ok(());
    }
    let l4 = l3 + header_len;
    match protocol {
        IPPROTO_TCP => segment(pkt, l4 + TCP_CHECK_OFFSET, pseudo, &[old], &[new], false),
        IPPROTO_UDP => segment(pkt, l4 + UDP_CHECK_OFFSET, pseudo, &[old], &[new], true),
        IPPROTO_ICMP => icmp_error_v4(pkt, l4, side, old, new),
        _ => Ok(()),
    }
}

/// In an ICMP error, the address the quoted packet had on the other side
/// (when it is the one replaced), its header checksum, and the ICMP
/// checksum over both.
#[inline(always)]
fn icmp_error_v4(
    pkt: &Packet,
    l4: usize,
    side: Side,
    old: u32,
    new: u32,
) -> Result<(), DropReason> {
    // The ICMP header and the quoted IPv4 header are read and written
    // through their one checked pointer (see `Packet::at`); an ICMP message
    // too short to quote a header is no error to translate.
    let Ok(icmp) = pkt.at::<[u8; ICMP_QUOTE_OFFSET + 20]>(l4) else {
        return Ok(());
    };
    let icmp = icmp as *mut u8;
    // SAFETY: `at` checked the bytes; unaligned packet loads and stores
    // (see `Packet::load`).
    unsafe {
        // Destination unreachable, source quench, redirect, time exceeded,
        // parameter problem.
        if !matches!(core::ptr::read(icmp), 3 | 4 | 5 | 11 | 12) {
            return Ok(());
        }
        let quote = icmp.add(ICMP_QUOTE_OFFSET);
        let address = quote.add(side.quoted_ipv4_offset()) as *mut u32;
        let quoted_check = quote.add(IPV4_CHECK_OFFSET) as *mut u16;
        let icmp_check = icmp.add(ICMP_CHECK_OFFSET) as *mut u16;
        if core::ptr::read(address) != old {
            return Ok(());
        }
        let old_check = core::ptr::read(quoted_check);
        let new_check = replaced(old_check, old, new);
        core::ptr::write(address, new);
        core::ptr::write(quoted_check, new_check);
        let sum = replaced(core::ptr::read(icmp_check), old, new);
        core::ptr::write(
            icmp_check,
            replaced(sum, old_check as u32, new_check as u32),
        );
    }
    Ok(())
}

/// Replaces `side`'s address of the IPv6 packet at `l3` with `new`.
/// Packets with extension headers are the caller's to refuse (their
/// layer-4 checksum is not found here).
#[inline(always)]
pub fn ipv6(pkt: &Packet, l3: usize, side: Side, new: &[u8; 16]) -> Result<(), DropReason> {
    let field = l3 + side.ipv6_offset();
    let old = words(&pkt.ipv6(field)?);
    let new = words(new);
    let [len_hi, len_lo, next_header, _hop_limit]: [u8; 4] =
        pkt.read(l3 + ipv6::PAYLOAD_LEN_OFFSET)?;
    let payload_len = u16::from_be_bytes([len_hi, len_lo]) as u32;
    let pseudo = sum_words(&words(&pkt.ipv6(l3 + ipv6::SRC_OFFSET)?))
        + sum_words(&words(&pkt.ipv6(l3 + ipv6::DST_OFFSET)?))
        + u32::from_ne_bytes(payload_len.to_be_bytes()) as u64
        + u32::from_ne_bytes([0, 0, 0, next_header]) as u64;
    store_words(pkt, field, &new)?;

    let l4 = l3 + ipv6::HEADER_LEN;
    match next_header {
        IPPROTO_TCP => segment(pkt, l4 + TCP_CHECK_OFFSET, pseudo, &old, &new, false),
        IPPROTO_UDP => segment(pkt, l4 + UDP_CHECK_OFFSET, pseudo, &old, &new, true),
        IPPROTO_ICMPV6 => icmpv6(pkt, l4, side, &old, &new),
        _ => Ok(()),
    }
}

/// ICMPv6: the checksum covers the pseudo-header (never partial: the
/// kernel sums ICMPv6 itself), and an error quotes the packet it concerns.
#[inline(always)]
fn icmpv6(
    pkt: &Packet,
    l4: usize,
    side: Side,
    old: &[u32; 4],
    new: &[u32; 4],
) -> Result<(), DropReason> {
    let check = l4 + ICMP_CHECK_OFFSET;
    let mut sum = replaced_words(pkt.load(check)?, old, new);
    let [icmp_type, _code]: [u8; 2] = pkt.read(l4)?;
    // Destination unreachable, packet too big, time exceeded, parameter
    // problem.
    if (1..=4).contains(&icmp_type) {
        // Read and written through one checked pointer (see `Packet::at`).
        if let Ok(quoted) = pkt.at::<[u32; 4]>(l4 + ICMP_QUOTE_OFFSET + side.quoted_ipv6_offset()) {
            let quoted = quoted as *mut u32;
            // SAFETY: `at` checked the 16 bytes; unaligned packet loads and
            // stores (see `Packet::load`).
            unsafe {
                let current = [0, 1, 2, 3].map(|i| core::ptr::read(quoted.add(i)));
                if current == *old {
                    for (i, word) in new.iter().enumerate() {
                        core::ptr::write(quoted.add(i), *word);
                    }
                    sum = replaced_words(sum, old, new);
                }
            }
        }
    }
    pkt.store(check, sum)
}

/// A TCP or UDP checksum at `check` after an address of its
/// pseudo-header (summed to `pseudo`, with the old address) went from
/// `old` to `new`.
#[inline(always)]
fn segment<const N: usize>(
    pkt: &Packet,
    check: usize,
    pseudo: u64,
    old: &[u32; N],
    new: &[u32; N],
    udp: bool,
) -> Result<(), DropReason> {
    let field: u16 = pkt.load(check)?;
    if udp && field == 0 {
        // UDP over IPv4 without a checksum (IPv6 forbids it).
        return Ok(());
    }
    let updated = if field == fold(pseudo) {
        // Partial: the pseudo-header's sum, not inverted.
        !replaced_words(!field, old, new)
    } else {
        let sum = replaced_words(field, old, new);
        if udp && sum == 0 {
            0xffff
        } else {
            sum
        }
    };
    pkt.store(check, updated)
}

/// A complete checksum `check` after a 32-bit word it covers went from
/// `old` to `new` (RFC 1624: HC' = ~(~HC + ~m + m')).
#[inline(always)]
pub fn replaced(check: u16, old: u32, new: u32) -> u16 {
    replaced_words(check, &[old], &[new])
}

#[inline(always)]
fn replaced_words<const N: usize>(check: u16, old: &[u32; N], new: &[u32; N]) -> u16 {
    let mut sum = (!check) as u64;
    for i in 0..N {
        sum += (!old[i]) as u64 + new[i] as u64;
    }
    !fold(sum)
}

#[inline(always)]
fn words(addr: &[u8; 16]) -> [u32; 4] {
    // SAFETY: same size, any bits valid.
    unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(*addr) }
}

#[inline(always)]
fn sum_words(w: &[u32; 4]) -> u64 {
    w[0] as u64 + w[1] as u64 + w[2] as u64 + w[3] as u64
}

#[inline(always)]
fn store_words(pkt: &Packet, offset: usize, w: &[u32; 4]) -> Result<(), DropReason> {
    let p = pkt.at::<[u32; 4]>(offset)? as *mut u32;
    // SAFETY: in bounds (checked above); unaligned packet stores (see
    // `Packet::load`).
    unsafe {
        for (i, word) in w.iter().enumerate() {
            core::ptr::write(p.add(i), *word);
        }
    }
    Ok(())
}
