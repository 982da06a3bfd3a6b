//! VRRP virtual MACs (RFC 9568, 7.3): `00:00:5e:00:01:<VRID>` for IPv4,
//! `00:00:5e:00:02:<VRID>` for IPv6. keepalived's `use_vmac` has the
//! master send from one, so both members of a pair announce the same MAC:
//! a port bound to a VIP may use the virtual MACs of its VIPs' VRIDs.

/// The first five bytes of an IPv4 virtual router's MAC.
pub const VMAC_PREFIX_V4: [u8; 5] = [0x00, 0x00, 0x5e, 0x00, 0x01];
/// The first five bytes of an IPv6 virtual router's MAC.
pub const VMAC_PREFIX_V6: [u8; 5] = [0x00, 0x00, 0x5e, 0x00, 0x02];

/// A key of `havip_vmacs`: a port and a virtual MAC it may send from. A
/// MAC whose last byte (the VRID) is 0, which no virtual router has, stands
/// for every VRID of its family: a port bound to a VIP with no VRID given.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct VirtualMac {
    pub port_id: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

impl VirtualMac {
    /// Port `port_id` may send from the virtual MAC of `vrid` (0: any) of
    /// the family of IPv6 (`v6`) or IPv4.
    pub fn new(port_id: u32, v6: bool, vrid: u8) -> Self {
        let p = if v6 { VMAC_PREFIX_V6 } else { VMAC_PREFIX_V4 };
        Self {
            port_id,
            mac: [p[0], p[1], p[2], p[3], p[4], vrid],
            _pad: [0; 2],
        }
    }

    /// The same key with the VRID taken out: "any VRID of this family".
    #[inline(always)]
    pub fn any_vrid(&self) -> Self {
        let mut k = *self;
        k.mac[5] = 0;
        k
    }
}

/// Whether `mac` is a VRRP virtual MAC (either family, a VRID not 0).
#[inline(always)]
pub fn is_virtual_mac(mac: &[u8; 6]) -> bool {
    let [a, b, c, d, e, vrid] = *mac;
    a == 0 && b == 0 && c == 0x5e && d == 0 && (e == 1 || e == 2) && vrid != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_macs_are_told_by_prefix_and_a_vrid() {
        assert!(is_virtual_mac(&[0, 0, 0x5e, 0, 1, 111]));
        assert!(is_virtual_mac(&[0, 0, 0x5e, 0, 2, 1]));
        assert!(!is_virtual_mac(&[0, 0, 0x5e, 0, 1, 0]), "VRID 0");
        assert!(!is_virtual_mac(&[0, 0, 0x5e, 0, 3, 1]), "not VRRP's");
        assert!(!is_virtual_mac(&[2, 0, 0x5e, 0, 1, 1]));
        let k = VirtualMac::new(11, true, 7);
        assert_eq!(k.mac, [0, 0, 0x5e, 0, 2, 7]);
        assert_eq!(k.any_vrid(), VirtualMac::new(11, true, 0));
    }
}
