//! Packet access and the link-layer parse.
//!
//! One bounds-checked accessor, [`Packet::at`], is the only way the policy
//! reads packet memory; every variable offset (VLAN tags, IHL, IPv6
//! extension headers, ND options) goes through it again.
//!
//! Fields are loaded and stored a word at a time ([`Packet::load`],
//! [`Packet::mac`], [`Packet::ipv4`], [`Packet::ipv6`], [`Packet::store`],
//! [`Packet::set_mac`]): byte by byte, the parse alone would cost more
//! than the 15 ns a non-VIP frame may take.

use havip_common::DropReason;
use network_types::{eth::EthHdr, vlan::VlanHdr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// At most this many 802.1Q/802.1ad tags are walked.
const MAX_VLAN_TAGS: usize = 2;

/// The frame being judged: its bounds, as the XDP or TC context gave them.
/// Rebuild it after anything that moves packet data (`bpf_xdp_adjust_tail`).
#[derive(Clone, Copy)]
pub struct Packet {
    start: usize,
    end: usize,
}

impl Packet {
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// The frame, as a BPF function other than the entry starts on it: its
    /// Ethernet header checked again. Linux 6.1's verifier gives the
    /// frame's start pointer a range only from a check on that pointer
    /// itself; LLVM drops a later check at a fixed offset (the MACs) that
    /// checks at variable offsets (layer 3 and beyond) imply, and without
    /// this one the function's stores to the MACs are "invalid access to
    /// packet" there.
    #[inline(always)]
    pub fn frame(start: usize, end: usize) -> Result<Self, DropReason> {
        let pkt = Self::new(start, end);
        pkt.at::<[u8; EthHdr::LEN]>(0)?;
        Ok(pkt)
    }

    /// A pointer to a `T` at `offset`, or `Truncated` if the frame ends
    /// before the `T` does.
    ///
    /// `T` must be at least two bytes: for one byte LLVM folds
    /// `p + 1 > end` into `p >= end`, which the verifier does not accept as
    /// a bounds check.
    #[inline(always)]
    pub fn at<T>(&self, offset: usize) -> Result<*const T, DropReason> {
        const { assert!(core::mem::size_of::<T>() >= 2) };
        // LLVM drops a check that an earlier one implies (a header checked
        // whole, then its fields), and Linux 6.1's verifier then does not
        // see the bounds of a field pointer computed apart from the checked
        // one (`(start + 6) + l3` after a check of `start + l3 + 28`:
        // "invalid access to packet, off=6 size=2"): a header checked whole
        // is read through its one checked pointer (see `arp::parse`).
        if self.start + offset + core::mem::size_of::<T>() > self.end {
            return Err(DropReason::Truncated);
        }
        Ok((self.start + offset) as *const T)
    }

    /// Loads the field at `offset` with one load as wide as the field, the
    /// way a C datapath reads `iph->saddr`. Header fields are often not
    /// aligned to their width (an IPv4 address behind a 14-byte Ethernet
    /// header sits at 2 mod 4), and BPF allows that for packet memory: the
    /// verifier checks the alignment of packet loads only under
    /// `BPF_F_STRICT_ALIGNMENT` or on an architecture without efficient
    /// unaligned access, and x86-64 and arm64 have it. [`Packet::read`]
    /// instead assembles a field byte by byte (the BPF backend assumes
    /// nothing about alignment), which costs a few nanoseconds per header:
    /// everything the datapath reads often uses `load`.
    #[inline(always)]
    pub fn load<T: Field>(&self, offset: usize) -> Result<T, DropReason> {
        // SAFETY: `at` checked the bounds. The load may be unaligned: allowed
        // for packet memory (see above), and the value is only compared and
        // copied, so nothing relies on the pointer's alignment.
        Ok(unsafe { core::ptr::read(self.at::<T>(offset)?) })
    }

    /// Stores `value` at `offset` with one store as wide as the field (see
    /// [`Packet::load`]).
    #[inline(always)]
    pub fn store<T: Field>(&self, offset: usize, value: T) -> Result<(), DropReason> {
        // SAFETY: `at` checked the bounds; unaligned store (see `load`).
        unsafe { core::ptr::write(self.at::<T>(offset)? as *mut T, value) };
        Ok(())
    }

    /// Writes a MAC at `offset`: a 4-byte and a 2-byte store.
    #[inline(always)]
    pub fn set_mac(&self, offset: usize, mac: [u8; 6]) -> Result<(), DropReason> {
        let p = self.at::<[u8; 6]>(offset)? as *mut u8;
        let [a, b, c, d, e, f] = mac;
        // SAFETY: in bounds (checked above); unaligned stores (see `load`).
        unsafe {
            core::ptr::write(p as *mut u32, u32::from_ne_bytes([a, b, c, d]));
            core::ptr::write(p.add(4) as *mut u16, u16::from_ne_bytes([e, f]));
        }
        Ok(())
    }

    /// The MAC at `offset`: a 4-byte and a 2-byte load.
    #[inline(always)]
    pub fn mac(&self, offset: usize) -> Result<[u8; 6], DropReason> {
        // Both loads go through the one checked pointer: a pointer computed
        // again from the offset would be one the verifier knows no bounds of.
        let p = self.at::<[u8; 6]>(offset)? as *const u8;
        // SAFETY: in bounds (checked above); unaligned loads (see `load`).
        let ([a, b, c, d], [e, f]) = unsafe {
            (
                core::ptr::read(p as *const u32).to_ne_bytes(),
                core::ptr::read(p.add(4) as *const u16).to_ne_bytes(),
            )
        };
        Ok([a, b, c, d, e, f])
    }

    /// The IPv4 address at `offset`: one load.
    #[inline(always)]
    pub fn ipv4(&self, offset: usize) -> Result<[u8; 4], DropReason> {
        Ok(self.load::<u32>(offset)?.to_ne_bytes())
    }

    /// The IPv6 address at `offset`: two 8-byte loads (through one checked
    /// pointer, as for [`Packet::mac`]).
    #[inline(always)]
    pub fn ipv6(&self, offset: usize) -> Result<[u8; 16], DropReason> {
        let p = self.at::<[u64; 2]>(offset)? as *const u64;
        // SAFETY: in bounds (checked above); unaligned loads (see `load`).
        let words = unsafe { [core::ptr::read(p), core::ptr::read(p.add(1))] };
        // SAFETY: same size, any bits valid.
        Ok(unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(words) })
    }

    /// Reads a `T` (a byte array or `#[repr(C, packed)]`-safe header) at
    /// `offset`, byte by byte: for fields the hot paths do not need.
    #[inline(always)]
    pub fn read<T: Copy>(&self, offset: usize) -> Result<T, DropReason> {
        // SAFETY: `at` checked the bounds; unaligned read for packet memory.
        Ok(unsafe { core::ptr::read_unaligned(self.at::<T>(offset)?) })
    }
}

/// A header field [`Packet::load`] reads with one load.
pub trait Field: Copy {}
impl Field for u16 {}
impl Field for u32 {}
impl Field for u64 {}

/// The link layer of a frame, as the judgement needs it: who sent it and
/// where its payload starts. Eight bytes, so that a BPF function takes it
/// in one register rather than on the caller's stack.
#[derive(Clone, Copy)]
pub struct Link {
    pub src_mac: [u8; 6],
    /// Offset of the layer-3 header (at most two VLAN tags in: small).
    l3: u16,
}

/// Holds every layer-3 offset [`parse_ethernet`] makes (14 + 2 * 4 = 22).
const L3_MASK: u16 = 0x3f;

impl Link {
    /// Offset of the layer-3 header.
    ///
    /// Masked for the verifier: a `Link` passed to a BPF function arrives
    /// as one register whose bits the callee knows nothing about, so the
    /// offset could be anything up to 65535, and Linux 6.1's verifier gives
    /// a packet pointer that far in no range at all (`umax + off >
    /// MAX_PACKET_OFF`: "invalid access to packet"). The mask changes no
    /// offset the parse makes and bounds it to 63. The read is volatile so
    /// that LLVM, which sees every caller's offset is small, keeps the mask.
    #[inline(always)]
    pub fn l3(self) -> usize {
        // SAFETY: a read of our own field.
        let l3 = unsafe { core::ptr::read_volatile(&self.l3) };
        (l3 & L3_MASK) as usize
    }
}

/// A frame's Ethernet header, after any VLAN tags.
pub struct Ethernet {
    pub dst_mac: [u8; 6],
    /// Ethertype after any VLAN tags.
    pub ethertype: u16,
    /// The VLAN the frame is tagged for: 0 when it carries no tag with a
    /// VLAN id (untagged, or priority-tagged: VLAN id 0), [`STACKED_VLANS`]
    /// when two of its tags carry one (QinQ).
    pub vlan: u16,
    pub link: Link,
}

/// [`Ethernet::vlan`] of a frame with two VLAN ids: no VLAN id (at most
/// 4094), so no port allows it.
pub const STACKED_VLANS: u16 = 0xffff;
/// The VLAN id in a tag's control field (the rest is priority and DEI).
const VLAN_ID_MASK: u32 = 0x0fff;

/// Parses the Ethernet header and up to [`MAX_VLAN_TAGS`] VLAN tags.
#[inline(always)]
pub fn parse_ethernet(pkt: &Packet) -> Result<Ethernet, DropReason> {
    // Ethernet: destination (6), source (6), ethertype (2).
    pkt.at::<[u8; EthHdr::LEN]>(0)?;
    let dst_mac = pkt.mac(0)?;
    let src_mac = pkt.mac(6)?;
    let mut ethertype = u16::from_be(pkt.load(12)?);
    let mut l3 = EthHdr::LEN;
    let mut vlan = 0;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // Tag control (2), then the next ethertype (2): one load.
        let tag = u32::from_be(pkt.load(l3)?);
        let id = (tag >> 16) & VLAN_ID_MASK;
        if id != 0 {
            vlan = if vlan == 0 { id as u16 } else { STACKED_VLANS };
        }
        ethertype = tag as u16;
        l3 += VlanHdr::LEN;
    }
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return Err(DropReason::HeaderChainTooLong);
    }
    Ok(Ethernet {
        dst_mac,
        ethertype,
        vlan,
        link: Link {
            src_mac,
            l3: l3 as u16,
        },
    })
}

/// Sets the Ethernet destination and source.
#[inline(always)]
pub fn set_macs(pkt: &Packet, dst: [u8; 6], src: [u8; 6]) -> Result<(), DropReason> {
    pkt.set_mac(0, dst)?;
    pkt.set_mac(6, src)
}

/// Sets the Ethernet destination.
#[inline(always)]
pub fn set_dst_mac(pkt: &Packet, dst: [u8; 6]) -> Result<(), DropReason> {
    pkt.set_mac(0, dst)
}

/// Whether a MAC is a group (broadcast or multicast) address.
#[inline(always)]
pub fn is_group(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0
}
