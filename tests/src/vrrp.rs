//! VRRP frames, as keepalived sends them (RFC 3768 version 2 for IPv4,
//! RFC 9568 version 3 for IPv6), for the datapath's tables and for a rogue
//! VM that replays a master's advert at priority 255.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{IpNumber, PacketBuilder};

use crate::bench::frames::ones_sum;

/// VRRP's IP protocol number.
pub const IPPROTO_VRRP: u8 = 112;
/// 224.0.0.18 and its MAC.
pub const GROUP4: (Ipv4Addr, [u8; 6]) = (
    Ipv4Addr::new(224, 0, 0, 18),
    [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12],
);
/// ff02::12 and its MAC.
pub const GROUP6: (Ipv6Addr, [u8; 6]) = (
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12),
    [0x33, 0x33, 0x00, 0x00, 0x00, 0x12],
);

/// The IPv4 virtual router MAC of `vrid`.
pub fn vmac4(vrid: u8) -> [u8; 6] {
    [0, 0, 0x5e, 0, 1, vrid]
}

/// The IPv6 virtual router MAC of `vrid`.
pub fn vmac6(vrid: u8) -> [u8; 6] {
    [0, 0, 0x5e, 0, 2, vrid]
}

/// What an advert says.
#[derive(Clone, Copy, Debug)]
pub struct Advert {
    pub vrid: u8,
    pub priority: u8,
}

/// A VRRPv2 advert for `vip` with PASS authentication `auth` (up to 8
/// bytes), one second apart, from `(eth_src, src)` to `(dst, eth_dst)`.
pub fn advert_v2(
    (eth_src, src): ([u8; 6], Ipv4Addr),
    (dst, eth_dst): (Ipv4Addr, [u8; 6]),
    a: Advert,
    vip: Ipv4Addr,
    auth: &str,
) -> Vec<u8> {
    // Version 2, type 1 (advert); one address; auth type 1 (PASS);
    // advert interval 1 s; the checksum, then the address and the auth.
    let mut body = vec![0x21, a.vrid, a.priority, 1, 1, 1, 0, 0];
    body.extend_from_slice(&vip.octets());
    let mut pass = [0u8; 8];
    let n = auth.len().min(8);
    pass[..n].copy_from_slice(&auth.as_bytes()[..n]);
    body.extend_from_slice(&pass);
    let sum = !ones_sum(&body, 0);
    body[6..8].copy_from_slice(&sum.to_be_bytes());
    let builder = PacketBuilder::ethernet2(eth_src, eth_dst).ipv4(src.octets(), dst.octets(), 255);
    let mut frame = Vec::new();
    builder
        .write(&mut frame, IpNumber(IPPROTO_VRRP), &body)
        .expect("a VRRP frame");
    frame
}

/// A VRRPv3 advert for the IPv6 `vip`, from a link-local.
pub fn advert_v3(
    (eth_src, src): ([u8; 6], Ipv6Addr),
    (dst, eth_dst): (Ipv6Addr, [u8; 6]),
    a: Advert,
    vip: Ipv6Addr,
) -> Vec<u8> {
    // Version 3, type 1; one address; max advert interval 100 cs.
    let mut body = vec![0x31, a.vrid, a.priority, 1, 0, 100, 0, 0];
    body.extend_from_slice(&vip.octets());
    // The checksum covers the IPv6 pseudo-header (RFC 9568, 5.2.8).
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(body.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
    pseudo.extend_from_slice(&body);
    let sum = !ones_sum(&pseudo, 0);
    body[6..8].copy_from_slice(&sum.to_be_bytes());
    let builder = PacketBuilder::ethernet2(eth_src, eth_dst).ipv6(src.octets(), dst.octets(), 255);
    let mut frame = Vec::new();
    builder
        .write(&mut frame, IpNumber(IPPROTO_VRRP), &body)
        .expect("a VRRP frame");
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adverts_carry_their_fields_and_a_checksum_that_sums_to_zero() {
        let a = Advert {
            vrid: 111,
            priority: 255,
        };
        let f = advert_v2(
            ([2, 0, 0, 0, 0, 13], Ipv4Addr::new(10, 0, 6, 13)),
            GROUP4,
            a,
            Ipv4Addr::new(10, 0, 6, 19),
            "havip",
        );
        let vrrp = &f[14 + 20..];
        assert_eq!(f[14 + 9], IPPROTO_VRRP);
        assert_eq!(&vrrp[..4], &[0x21, 111, 255, 1]);
        assert_eq!(&vrrp[12..17], b"havip");
        assert_eq!(ones_sum(vrrp, 0), 0xffff, "the checksum completes the sum");
        let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 13);
        let f = advert_v3(([2, 0, 0, 0, 0, 13], src), GROUP6, a, Ipv6Addr::LOCALHOST);
        assert_eq!(
            (f[14 + 6], &f[14 + 40..14 + 44]),
            (IPPROTO_VRRP, &[0x31, 111, 255, 1][..])
        );
    }
}
