//! Packet access and the link-layer parse.
//!
//! One bounds-checked accessor, [`Packet::at`], is the only way the policy
//! reads packet memory; every variable offset (VLAN tags, IHL, IPv6
//! extension headers, ND options) goes through it again.

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

    /// A pointer to a `T` at `offset`, or `Truncated` if the frame ends
    /// before the `T` does.
    ///
    /// `T` must be at least two bytes: for one byte LLVM folds
    /// `p + 1 > end` into `p >= end`, which the verifier does not accept as
    /// a bounds check.
    #[inline(always)]
    pub fn at<T>(&self, offset: usize) -> Result<*const T, DropReason> {
        const { assert!(core::mem::size_of::<T>() >= 2) };
        if self.start + offset + core::mem::size_of::<T>() > self.end {
            return Err(DropReason::Truncated);
        }
        Ok((self.start + offset) as *const T)
    }

    /// Writes `value` at `offset` (bounds-checked like [`Packet::at`]).
    #[inline(always)]
    pub fn write<T: Copy>(&self, offset: usize, value: T) -> Result<(), DropReason> {
        let p = self.at::<T>(offset)? as *mut T;
        // SAFETY: `at` checked the bounds; unaligned write to packet memory.
        unsafe { core::ptr::write_unaligned(p, value) };
        Ok(())
    }

    /// Reads a `T` (a byte array or `#[repr(C, packed)]`-safe header) at
    /// `offset`.
    #[inline(always)]
    pub fn read<T: Copy>(&self, offset: usize) -> Result<T, DropReason> {
        // SAFETY: `at` checked the bounds; unaligned read for packet memory.
        Ok(unsafe { core::ptr::read_unaligned(self.at::<T>(offset)?) })
    }
}

/// The link layer of a frame: its MACs and where its payload starts.
pub struct Link {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// Ethertype after any VLAN tags.
    pub ethertype: u16,
    /// Offset of the layer-3 header.
    pub l3: usize,
}

/// Parses the Ethernet header and up to [`MAX_VLAN_TAGS`] VLAN tags.
#[inline(always)]
pub fn parse_link(pkt: &Packet) -> Result<Link, DropReason> {
    // Ethernet: destination (6), source (6), ethertype (2).
    let eth: EthHdr = pkt.read(0)?;
    let mut ethertype = u16::from_be(eth.ether_type);
    let mut l3 = EthHdr::LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let tag: VlanHdr = pkt.read(l3)?;
        ethertype = u16::from_be(tag.ether_type);
        l3 += VlanHdr::LEN;
    }
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        return Err(DropReason::HeaderChainTooLong);
    }
    Ok(Link {
        dst_mac: eth.dst_addr,
        src_mac: eth.src_addr,
        ethertype,
        l3,
    })
}

/// Sets the Ethernet destination and source.
#[inline(always)]
pub fn set_macs(pkt: &Packet, dst: [u8; 6], src: [u8; 6]) -> Result<(), DropReason> {
    pkt.write(0, dst)?;
    pkt.write(6, src)
}

/// Sets the Ethernet destination.
#[inline(always)]
pub fn set_dst_mac(pkt: &Packet, dst: [u8; 6]) -> Result<(), DropReason> {
    pkt.write(0, dst)
}

/// Whether a MAC is a group (broadcast or multicast) address.
#[inline(always)]
pub fn is_group(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0
}
