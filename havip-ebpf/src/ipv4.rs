//! IPv4: who may use a VIP or a fixed address as source.

use havip_common::{DropReason, NetworkAddr, Port};
use network_types::ip::Ipv4Hdr;

use crate::{
    owner::{self, Claimant},
    packet::{Link, Packet},
    policy::own_source,
    vips,
};

/// Judges an IPv4 packet from `port`; returns its destination when it may
/// pass:
/// - sourced from a VIP: only a bound port may send it;
/// - otherwise, with port security, the source must be a fixed address of
///   the port or 0.0.0.0 (DHCP).
#[inline(always)]
pub fn judge(
    pkt: &Packet,
    link: &Link,
    port: &Port,
    from: &Claimant,
) -> Result<NetworkAddr, DropReason> {
    let ip: Ipv4Hdr = pkt.read(link.l3)?;
    let header_len = ip.ihl() as usize;
    if ip.version() != 4 || header_len < Ipv4Hdr::LEN {
        return Err(DropReason::Malformed);
    }
    // The options, if any, must be in the frame too (the header length is a
    // multiple of four).
    pkt.at::<[u8; 4]>(link.l3 + header_len - 4)?;

    let source = NetworkAddr::v4(port.network, ip.src_addr);
    if own_source(port, &source) {
        return Ok(NetworkAddr::v4(port.network, ip.dst_addr));
    }
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
    } else if port.security() && ip.src_addr != [0; 4] {
        return Err(DropReason::IpSpoof);
    }
    Ok(NetworkAddr::v4(port.network, ip.dst_addr))
}
