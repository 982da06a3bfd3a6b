//! Address rules shared by ARP, IPv4 and IPv6.

use havip_common::{NetworkAddr, Port};

use crate::maps::ADDRS;

/// Whether `addr` is one of `port`'s fixed addresses.
#[inline(always)]
pub fn owns_address(port: &Port, addr: &NetworkAddr) -> bool {
    // SAFETY: read at once.
    matches!(unsafe { ADDRS.get(addr) }, Some(id) if *id == port.port_id)
}
