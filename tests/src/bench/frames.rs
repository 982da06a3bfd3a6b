//! The frames the benchmarks send, between the lab's VMs (their MACs and
//! addresses as in [`crate::lab`]). Frames are padded to the Ethernet
//! minimum of 60 bytes (64 on the wire with the FCS), as a NIC would.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    icmpv6::NeighborAdvertisementHeader, ArpHardwareId, ArpOperation, ArpPacket, EtherType,
    Icmpv6Type, PacketBuilder,
};

use crate::bench::tap::VnetHdr;
use crate::lab::VmSpec;

/// The shortest Ethernet frame without its FCS.
pub const MIN_FRAME: usize = 60;
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// UDP port the benchmark traffic goes to (discard).
pub const UDP_PORT: u16 = 9;

/// UDP over IPv4 from `from` to `ip` at `mac`, carrying `payload`, padded to
/// 60 bytes: 64-byte frames for payloads of up to 18 bytes.
pub fn udp4(from: &VmSpec, mac: [u8; 6], ip: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(from.mac, mac)
        .ipv4(from.ipv4.octets(), ip.octets(), 64)
        .udp(UDP_PORT, UDP_PORT)
        .write(&mut frame, payload)
        .expect("a UDP frame builds");
    pad(frame)
}

/// The UDP payload of a frame [`udp4`] built (its padding included), if it
/// is UDP over IPv4 without options to [`UDP_PORT`].
pub fn udp4_payload(frame: &[u8]) -> Option<&[u8]> {
    const L3: usize = 14;
    const L4: usize = L3 + 20;
    let ipv4 = frame.get(12..14)? == [0x08, 0x00] && frame.get(L3)? == &0x45;
    let udp = frame.get(L3 + 9)? == &17;
    let port = frame.get(L4 + 2..L4 + 4)? == UDP_PORT.to_be_bytes();
    (ipv4 && udp && port).then(|| &frame[L4 + 8..])
}

/// A gratuitous ARP request for `vip` from `vm` (sender IP = target IP =
/// the VIP): keepalived's claim.
pub fn garp(vm: &VmSpec, vip: Ipv4Addr) -> Vec<u8> {
    arp_request(vm, vip, vip)
}

/// An ARP request from `from` (sender IP `sender`) for `target`.
pub fn arp_request(from: &VmSpec, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp(from, ArpOperation::REQUEST, sender, [0; 6], target)
}

/// An unsolicited ARP reply announcing `ip` at `from`'s MAC, broadcast
/// (what `arping -U -P` sends).
pub fn arp_reply(from: &VmSpec, ip: Ipv4Addr) -> Vec<u8> {
    arp(from, ArpOperation::REPLY, ip, BROADCAST, ip)
}

fn arp(
    from: &VmSpec,
    op: ArpOperation,
    sender: Ipv4Addr,
    target_mac: [u8; 6],
    target: Ipv4Addr,
) -> Vec<u8> {
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        op,
        &from.mac,
        &sender.octets(),
        &target_mac,
        &target.octets(),
    )
    .expect("an ARP packet for IPv4 over Ethernet");
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(from.mac, BROADCAST)
        .arp(packet)
        .write(&mut frame)
        .expect("an ARP frame builds");
    pad(frame)
}

/// A Neighbor Solicitation from `from`'s global address for `target`, to
/// its solicited-node group, with `from`'s MAC as source link-layer option.
pub fn neighbor_solicitation(from: &VmSpec, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut body = t.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&from.mac);
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(from.mac, [0x33, 0x33, 0xff, t[13], t[14], t[15]])
        .ipv6(from.ipv6.octets(), group.octets(), 255)
        .icmpv6(Icmpv6Type::NeighborSolicitation)
        .write(&mut frame, &body)
        .expect("an NS frame builds");
    pad(frame)
}

/// Who an IPv6 frame is from and to, on Ethernet and in IPv6.
#[derive(Clone, Copy, Debug)]
pub struct Ends6 {
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

/// All nodes (ff02::1) and its multicast MAC.
pub const ALL_NODES: (Ipv6Addr, [u8; 6]) = (
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
    [0x33, 0x33, 0, 0, 0, 1],
);

/// A Neighbor Advertisement for `target` (Override set, Solicited as
/// given), with a target link-layer address option when `tlla` is given.
pub fn neighbor_advertisement(
    ends: Ends6,
    target: Ipv6Addr,
    solicited: bool,
    tlla: Option<[u8; 6]>,
) -> Vec<u8> {
    let options: Vec<NdOption> = tlla.map(|mac| (ND_OPT_TLLA, mac)).into_iter().collect();
    nd_message(ends, NdKind::Advert { solicited }, target, &options)
}

/// An ND option of one 8-byte unit: its type and its six bytes (a
/// link-layer address, or a nonce).
pub type NdOption = (u8, [u8; 6]);
/// Source link-layer address (RFC 4861).
pub const ND_OPT_SLLA: u8 = 1;
/// Target link-layer address (RFC 4861).
pub const ND_OPT_TLLA: u8 = 2;
/// Nonce (RFC 3971), as enhanced DAD sends it.
pub const ND_OPT_NONCE: u8 = 14;

/// Which ND message [`nd_message`] builds.
#[derive(Clone, Copy, Debug)]
pub enum NdKind {
    Solicit,
    Advert { solicited: bool },
}

/// A Neighbor Solicitation or Advertisement for `target` carrying
/// `options`, in order.
pub fn nd_message(ends: Ends6, kind: NdKind, target: Ipv6Addr, options: &[NdOption]) -> Vec<u8> {
    let icmp = match kind {
        NdKind::Solicit => Icmpv6Type::NeighborSolicitation,
        NdKind::Advert { solicited } => {
            Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
                router: false,
                solicited,
                r#override: true,
            })
        }
    };
    let mut body = target.octets().to_vec();
    for (kind, bytes) in options {
        body.extend_from_slice(&[*kind, 1]);
        body.extend_from_slice(bytes);
    }
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(ends.eth_src, ends.eth_dst)
        .ipv6(ends.src.octets(), ends.dst.octets(), 255)
        .icmpv6(icmp)
        .write(&mut frame, &body)
        .expect("an ND frame builds");
    pad(frame)
}

/// `frame` with an 802.1Q tag for VLAN `vlan` (priority 0) after its
/// source MAC, outside any tags it has.
pub fn tagged(mut frame: Vec<u8>, vlan: u16) -> Vec<u8> {
    let [hi, lo] = vlan.to_be_bytes();
    frame.splice(12..12, [0x81, 0x00, hi, lo]);
    frame
}

/// An unsolicited Neighbor Advertisement for `target` from `from`'s
/// link-local, to all nodes, with `from`'s MAC as target link-layer
/// address: keepalived's claim of an IPv6 VIP.
pub fn unsolicited_na(from: &VmSpec, target: Ipv6Addr) -> Vec<u8> {
    let ends = Ends6 {
        eth_src: from.mac,
        eth_dst: ALL_NODES.1,
        src: from.link_local(),
        dst: ALL_NODES.0,
    };
    neighbor_advertisement(ends, target, false, Some(from.mac))
}

fn pad(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < MIN_FRAME {
        frame.resize(MIN_FRAME, 0);
    }
    frame
}

/// The ones' complement sum (RFC 1071) of `bytes`, added to `sum`, folded
/// to 16 bits.
pub fn ones_sum(bytes: &[u8], mut sum: u32) -> u16 {
    for pair in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

const ETH_LEN: usize = 14;
const IPPROTO_TCP: u8 = 6;

/// Where a frame's TCP or UDP segment is (no VLAN tag, no IPv6 extension
/// header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Its offset in the frame and its length.
    pub at: usize,
    pub len: usize,
    /// The offset of its checksum field in the frame.
    pub check: usize,
    /// The sum of its pseudo-header: what a VM with checksum offload puts
    /// in the checksum field.
    pub pseudo: u16,
}

/// The TCP or UDP segment of an IPv4 or IPv6 frame.
pub fn segment(frame: &[u8]) -> Segment {
    let l3 = &frame[ETH_LEN..];
    let (at, protocol, addrs, len) = match l3[0] >> 4 {
        4 => {
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([l3[2], l3[3]]));
            (ETH_LEN + ihl, l3[9], &l3[12..20], total - ihl)
        }
        _ => (
            ETH_LEN + 40,
            l3[6],
            &l3[8..40],
            usize::from(u16::from_be_bytes([l3[4], l3[5]])),
        ),
    };
    let check_offset = if protocol == IPPROTO_TCP { 16 } else { 6 };
    Segment {
        at,
        len,
        check: at + check_offset,
        pseudo: ones_sum(addrs, u32::from(protocol) + len as u32),
    }
}

/// Whether the TCP/UDP checksum of a frame is complete and right.
pub fn checksum_is_complete(frame: &[u8]) -> bool {
    let s = segment(frame);
    ones_sum(&frame[s.at..s.at + s.len], u32::from(s.pseudo)) == 0xffff
}

/// A TCP/UDP frame as a VM with checksum offload sends it: the checksum
/// field holds the pseudo-header's sum, and the vnet header says the rest
/// is left to do.
pub fn left_to_the_offload(mut frame: Vec<u8>) -> (VnetHdr, Vec<u8>) {
    let s = segment(&frame);
    frame[s.check..s.check + 2].copy_from_slice(&s.pseudo.to_be_bytes());
    let hdr = VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        csum_start: s.at as u16,
        csum_offset: (s.check - s.at) as u16,
        ..VnetHdr::default()
    };
    (hdr, frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{CLIENT, VIP4, VM1, VM2};

    #[test]
    fn udp_frames_are_64_bytes_on_the_wire_and_parse_back() {
        let frame = udp4(&CLIENT, VM2.mac, VM2.ipv4, b"havip");
        assert_eq!(frame.len(), MIN_FRAME);
        assert_eq!(&frame[..6], &VM2.mac);
        assert_eq!(&udp4_payload(&frame).unwrap()[..5], b"havip");
        assert!(udp4_payload(&garp(&VM1, VIP4)).is_none());
    }

    #[test]
    fn a_garp_names_the_vip_as_sender_and_target() {
        let frame = garp(&VM1, VIP4);
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        assert_eq!(&frame[14 + 14..14 + 18], &VIP4.octets());
        assert_eq!(&frame[14 + 24..14 + 28], &VIP4.octets());
    }
}
