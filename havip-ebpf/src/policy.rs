//! Address rules shared by ARP, IPv4 and IPv6.
//!
//! They take the bare address: the map key (`NetworkAddr`) is built only
//! for a port with more addresses than its entry holds, so the common case
//! keeps the address in a register.

use havip_common::{
    port::INLINE_ADDRS,
    vmac::{is_virtual_mac, VirtualMac},
    DropReason, NetworkAddr, Port,
};

use crate::maps::{ADDRS, VMACS};

/// Whether `addr` is one of `port`'s fixed IPv4 addresses: from the port
/// entry itself, or, for a port with more addresses than it holds, from the
/// address map.
#[inline(always)]
pub fn owns_ipv4(port: &Port, addr: [u8; 4]) -> bool {
    let count = port.ipv4_count as usize;
    let word = u32::from_ne_bytes(addr);
    port.ipv4_words().iter().take(count).any(|a| *a == word)
        || (count > INLINE_ADDRS && in_address_map(port, &NetworkAddr::v4(port.network, addr)))
}

/// Whether `addr` is one of `port`'s fixed IPv6 addresses (see
/// [`owns_ipv4`]).
#[inline(always)]
pub fn owns_ipv6(port: &Port, addr: &[u8; 16]) -> bool {
    let count = port.ipv6_count as usize;
    port.ipv6.iter().take(count).any(|a| a == addr)
        || (count > INLINE_ADDRS && in_address_map(port, &NetworkAddr::v6(port.network, *addr)))
}

/// Whether `port` enforces port security and `addr` is its own: then the
/// source needs no other check (a port's own address is never a VIP: the
/// agent and the controller keep them apart), the common case.
#[inline(always)]
pub fn own_ipv4_source(port: &Port, addr: [u8; 4]) -> bool {
    port.security() && owns_ipv4(port, addr)
}

/// [`own_ipv4_source`] for IPv6.
#[inline(always)]
pub fn own_ipv6_source(port: &Port, addr: &[u8; 16]) -> bool {
    port.security() && owns_ipv6(port, addr)
}

/// Whether `mac` is `port`'s MAC.
#[inline(always)]
pub fn is_port_mac(port: &Port, mac: &[u8; 6]) -> bool {
    let [a, b, c, d, e, f] = *mac;
    (u32::from_ne_bytes([a, b, c, d]), u16::from_ne_bytes([e, f])) == port.mac_words()
}

/// Whether `port` may send from `mac`: its own MAC, or a VRRP virtual MAC
/// of one of its VIPs (see `havip_common::vmac`).
#[inline(always)]
pub fn may_use_mac(port: &Port, mac: &[u8; 6]) -> bool {
    is_port_mac(port, mac) || may_use_virtual_mac(port, mac)
}

/// Port security on the link layer: the source MAC must be one `port` may
/// use; a virtual MAC it may not use has a reason of its own.
#[inline(always)]
pub fn check_source_mac(port: &Port, mac: &[u8; 6]) -> Result<(), DropReason> {
    if is_port_mac(port, mac) {
        return Ok(());
    }
    if !is_virtual_mac(mac) {
        return Err(DropReason::MacSpoof);
    }
    if may_use_virtual_mac(port, mac) {
        Ok(())
    } else {
        Err(DropReason::VirtualMacNotAllowed)
    }
}

/// Whether `mac` is a virtual MAC `port` may use: bound to a VIP of that
/// family with that VRID, or with no VRID given (the entry for VRID 0).
#[inline(always)]
fn may_use_virtual_mac(port: &Port, mac: &[u8; 6]) -> bool {
    if !port.bound() || !is_virtual_mac(mac) {
        return false;
    }
    let [a, b, c, d, e, f] = *mac;
    in_vmacs(port.port_id, u64::from_le_bytes([a, b, c, d, e, f, 0, 0]))
}

/// The lookups of [`may_use_virtual_mac`], a BPF function of its own: the
/// keys live on its stack, not on that of every path that checks a MAC
/// (the IPv6 path's is near the verifier's limit). Only a frame from a
/// virtual MAC gets here.
#[inline(never)]
fn in_vmacs(port_id: u32, mac: u64) -> bool {
    let [a, b, c, d, e, f, _, _] = mac.to_le_bytes();
    let key = VirtualMac {
        port_id,
        mac: [a, b, c, d, e, f],
        _pad: [0; 2],
    };
    // SAFETY: the values are read for presence only.
    unsafe { VMACS.get(&key).is_some() || VMACS.get(&key.any_vrid()).is_some() }
}

#[inline(always)]
fn in_address_map(port: &Port, addr: &NetworkAddr) -> bool {
    // SAFETY: read at once.
    matches!(unsafe { ADDRS.get(addr) }, Some(id) if *id == port.port_id)
}
