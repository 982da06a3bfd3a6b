//! Address rules shared by ARP, IPv4 and IPv6.

use havip_common::{addr::AF_INET, port::INLINE_ADDRS, NetworkAddr, Port};

use crate::maps::ADDRS;

/// Whether `addr` is one of `port`'s fixed addresses: from the port entry
/// itself, or, for a port with more addresses than it holds, from the
/// address map.
#[inline(always)]
pub fn owns_address(port: &Port, addr: &NetworkAddr) -> bool {
    let count = if addr.family == AF_INET {
        let a: [u8; 4] = [addr.addr[0], addr.addr[1], addr.addr[2], addr.addr[3]];
        if port.ipv4.iter().take(port.ipv4_count as usize).any(|p| *p == a) {
            return true;
        }
        port.ipv4_count
    } else {
        if port.ipv6.iter().take(port.ipv6_count as usize).any(|p| *p == addr.addr) {
            return true;
        }
        port.ipv6_count
    };
    if (count as usize) <= INLINE_ADDRS {
        return false;
    }
    // SAFETY: read at once.
    matches!(unsafe { ADDRS.get(addr) }, Some(id) if *id == port.port_id)
}

/// Whether `port` enforces port security and `addr` is its own: then the
/// source needs no other check (a port's own address is never a VIP: the
/// agent and the controller keep them apart), the common case.
#[inline(always)]
pub fn own_source(port: &Port, addr: &NetworkAddr) -> bool {
    port.security() && owns_address(port, addr)
}
