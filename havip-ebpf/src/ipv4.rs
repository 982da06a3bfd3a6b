//! IPv4: who may use a VIP or a fixed address as source.

use havip_common::{DropReason, NetworkAddr, Port};
use network_types::ip::Ipv4Hdr;

use crate::{
    owner::{self, Claimant},
    packet::{Link, Packet},
    policy::own_ipv4_source,
    vips,
    vrrp::{self, IPPROTO_VRRP},
};

/// Offsets of fields in the IPv4 header: total length, flags and fragment
/// offset, TTL (the protocol follows it), source, destination.
pub const TOTAL_LEN_OFFSET: usize = 2;
pub const FRAGMENT_OFFSET: usize = 6;
pub const TTL_OFFSET: usize = 8;
pub const SRC_OFFSET: usize = 12;
pub const DST_OFFSET: usize = 16;

/// Judges an IPv4 packet from `port`; returns its destination when it may
/// pass:
/// - sourced from a VIP: only a bound port may send it;
/// - otherwise, with port security, the source must be a fixed address of
///   the port or 0.0.0.0 (DHCP);
/// - VRRP only from a port bound to a VIP.
#[inline(always)]
pub fn judge(
    pkt: &Packet,
    link: Link,
    port: &Port,
    from: &Claimant,
) -> Result<NetworkAddr, DropReason> {
    // The fixed header first: the verifier needs its bounds checked on
    // their own, before the options' variable ones.
    pkt.at::<[u8; Ipv4Hdr::LEN]>(link.l3())?;
    let [version_ihl, _]: [u8; 2] = pkt.read(link.l3())?;
    let src = pkt.ipv4(link.l3() + SRC_OFFSET)?;
    let dst = pkt.ipv4(link.l3() + DST_OFFSET)?;
    let header_len = (version_ihl & 0x0f) as usize * 4;
    if version_ihl >> 4 != 4 || header_len < Ipv4Hdr::LEN {
        return Err(DropReason::Malformed);
    }
    // The options, if any, must be in the frame too (the header length is a
    // multiple of four).
    pkt.at::<[u8; 4]>(link.l3() + header_len - 4)?;

    let [_, protocol]: [u8; 2] = pkt.read(link.l3() + TTL_OFFSET)?;
    if !own_ipv4_source(port, src) {
        let source = NetworkAddr::v4(port.network, src);
        if let Some(vip) = vips::get(&source) {
            if !vip.is_bound(port.port_id) {
                return Err(owner::reject(
                    &source,
                    vip,
                    from,
                    link.src_mac,
                    DropReason::VipSourceNotBound,
                ));
            }
        } else if port.security() && src != [0; 4] {
            return Err(DropReason::IpSpoof);
        }
    }
    if protocol == IPPROTO_VRRP {
        vrrp::judge_sent(port)?;
    }
    Ok(NetworkAddr::v4(port.network, dst))
}
