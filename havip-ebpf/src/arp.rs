//! ARP: claims of IPv4 VIPs and ARP port security.

use havip_common::{DropReason, NetworkAddr, Port};
use network_types::arp::ArpHdr;

use crate::{
    owner::{self, Claimant},
    packet::{Link, Packet, ETH_P_IP},
    policy::own_source,
    vips,
};

const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

/// Judges an ARP packet from `port`; returns it when it may pass.
///
/// - The sender is a VIP: only a bound port may send it, and a gratuitous
///   request (sender IP == target IP) or any reply makes it the owner.
/// - Otherwise, with port security, the sender MAC and IP must be the
///   port's own (0.0.0.0 is allowed for probes).
#[inline(always)]
pub fn judge(
    pkt: &Packet,
    link: &Link,
    port: &Port,
    from: &Claimant,
) -> Result<ArpHdr, DropReason> {
    let arp: ArpHdr = pkt.read(link.l3)?;
    if arp.htype() != 1 || arp.ptype() != ETH_P_IP || arp.hlen != 6 || arp.plen != 4 {
        return Err(DropReason::Malformed);
    }
    let op = arp.oper();
    if op != ARP_REQUEST && op != ARP_REPLY {
        return Err(DropReason::Malformed);
    }
    if port.security() && arp.sha != port.mac {
        return Err(DropReason::ArpSpoof);
    }

    let sender = NetworkAddr::v4(port.network, arp.spa);
    if own_source(port, &sender) {
        return Ok(arp);
    }
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
        if op == ARP_REPLY || arp.spa == arp.tpa {
            owner::learn(&sender, vip, from, arp.sha);
        }
        return Ok(arp);
    }

    if port.security() && arp.spa != [0; 4] {
        return Err(DropReason::ArpSpoof);
    }
    Ok(arp)
}
